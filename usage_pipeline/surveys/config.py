"""surveys.yaml: which files of the surveys folder hold survey answers, and which column holds which field.

```yaml
files:
  - pattern: "enquete-*.csv"          # glob relative to the surveys folder ("**" reaches sub-folders)
    encoding: cp1252                  # optional, CSV only: utf-8 (default) or cp1252 (see reading.py)
    columns:                          # canonical field: the file's column header
      dataset: "Quel jeu de données utilisez-vous ?"
      submitted_at: "Date de soumission"
      satisfaction: "Note (1 à 5)"
      needs: "Qu'est-ce qui vous manque ?"
      reuse_type: "Type d'usage"                 # optional
      respondent_organization: "Organisation"    # optional
      email: "Courriel"                          # optional
```

A file matching several patterns follows the first. ``surveys.yaml`` itself, hidden files and Office lock files
(``~$...``) never match. Headers are compared trimmed, with runs of spaces as one, Unicode NFC and case-folded.
"""

import unicodedata
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

import yaml

CONFIG_FILE = "surveys.yaml"
# canonical field -> required in a file's mapping
FIELDS: dict[str, bool] = {
    "dataset": True,
    "submitted_at": True,
    "satisfaction": True,
    "needs": True,
    "reuse_type": False,
    "respondent_organization": False,
    "email": False,
}
ENCODINGS = ("utf-8", "cp1252")
_ENTRY_KEYS = ("pattern", "columns", "encoding")


class SurveyConfigError(ValueError):
    """surveys.yaml is missing a key, holds a wrong value or is not YAML."""


@dataclass(frozen=True)
class FileSpec:
    """One entry of surveys.yaml: the files it matches and where each field is."""

    pattern: str
    columns: dict[str, str]  # canonical field -> column header as written in the file
    encoding: str = "utf-8"  # of CSV files: utf-8 or cp1252


@dataclass(frozen=True)
class SurveysConfig:
    """The parsed surveys.yaml."""

    path: Path
    files: tuple[FileSpec, ...]


def normalize_header(header: object) -> str:
    """A header as compared with the mapping: trimmed, single spaces, NFC, case-folded."""
    return " ".join(unicodedata.normalize("NFC", str(header)).split()).casefold()


def load_config(surveys_dir: Path) -> SurveysConfig | None:
    """The surveys.yaml of ``surveys_dir``, or None when there is none."""
    path = surveys_dir / CONFIG_FILE
    if not path.is_file():
        return None
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except UnicodeDecodeError as error:
        raise SurveyConfigError(f"{path}: not UTF-8 text ({error.reason} at byte {error.start})") from None
    except yaml.YAMLError as error:
        raise SurveyConfigError(f"{path}: not valid YAML: {error}") from None
    return parse_config(data, path)


def parse_config(data: object, path: Path) -> SurveysConfig:
    """Validate surveys.yaml's content; errors name the file and the key."""
    if not isinstance(data, dict) or "files" not in data:
        raise SurveyConfigError(f"{path}: expected a mapping with a `files` key (a list of file entries)")
    unknown = sorted(str(key) for key in data if key != "files")
    if unknown:
        raise SurveyConfigError(f"{path}: unknown top-level key(s) {', '.join(unknown)} (only `files` is known)")
    entries = data["files"]
    if entries is None:
        entries = []
    if not isinstance(entries, list):
        raise SurveyConfigError(f"{path}: `files` must be a list of entries with `pattern` and `columns`")
    return SurveysConfig(path, tuple(_parse_entry(entry, f"files[{i}]", path) for i, entry in enumerate(entries)))


def _parse_entry(entry: object, where: str, path: Path) -> FileSpec:
    if not isinstance(entry, dict):
        raise SurveyConfigError(f"{path}: {where}: expected a mapping with `pattern` and `columns`")
    unknown = sorted(str(key) for key in entry if key not in _ENTRY_KEYS)
    if unknown:
        known = ", ".join(_ENTRY_KEYS)
        raise SurveyConfigError(f"{path}: {where}: unknown key(s) {', '.join(unknown)} (known: {known})")
    pattern = entry.get("pattern")
    if not isinstance(pattern, str) or not pattern.strip():
        raise SurveyConfigError(f"{path}: {where}.pattern: missing or not a non-empty string (a glob such as '*.csv')")
    pattern = pattern.strip()
    posix = PurePosixPath(pattern.replace("\\", "/"))
    if posix.is_absolute() or ".." in posix.parts:
        raise SurveyConfigError(f"{path}: {where}.pattern: {pattern!r} must stay inside the surveys folder")
    encoding = entry.get("encoding", "utf-8")
    if not isinstance(encoding, str) or encoding.strip().lower().replace("_", "-") not in ENCODINGS:
        raise SurveyConfigError(f"{path}: {where}.encoding: {encoding!r} is not one of {', '.join(ENCODINGS)}")
    columns = entry.get("columns")
    if not isinstance(columns, dict) or not columns:
        raise SurveyConfigError(f"{path}: {where}.columns: missing or not a mapping of field: column header")
    mapping: dict[str, str] = {}
    for field, header in columns.items():
        if field not in FIELDS:
            raise SurveyConfigError(f"{path}: {where}.columns.{field}: unknown field (known: {', '.join(FIELDS)})")
        if not isinstance(header, str | int | float) or isinstance(header, bool) or not str(header).strip():
            raise SurveyConfigError(f"{path}: {where}.columns.{field}: the column header must be a non-empty string")
        mapping[field] = str(header).strip()
    missing = [field for field, required in FIELDS.items() if required and field not in mapping]
    if missing:
        raise SurveyConfigError(f"{path}: {where}.columns: required field(s) {', '.join(missing)} not mapped")
    return FileSpec(pattern, mapping, encoding.strip().lower().replace("_", "-"))


def matching_files(surveys_dir: Path, config: SurveysConfig) -> dict[str, tuple[Path, FileSpec]]:
    """Survey files by their path relative to ``surveys_dir`` ('/'-separated), sorted, with their entry."""
    found: dict[str, tuple[Path, FileSpec]] = {}
    for spec in config.files:
        for path in surveys_dir.glob(spec.pattern):
            key = path.relative_to(surveys_dir).as_posix()
            hidden = any(part.startswith(".") for part in key.split("/")) or path.name.startswith("~$")
            if hidden or key == CONFIG_FILE or not path.is_file():
                continue
            found.setdefault(key, (path, spec))
    return dict(sorted(found.items()))
