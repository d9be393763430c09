"""Survey rows -> typed, pseudonymized responses on followed datasets, or every fault of the file at once.

Per field (blank = empty or spaces only):

* ``dataset``: a dataset id (24 hex digits), a slug, or a portal URL ``http(s)://<host>[/<lang>]/datasets/<id or
  slug>[/...]`` (also ``/api/1/datasets/...``), resolved against the followed datasets known in the warehouse.
  Required; an unknown dataset rejects the file.
* ``submitted_at``: required; ISO 8601 or French ``dd/mm/yyyy[ hh:mm[:ss]]`` (see ``parse_timestamp``).
* ``satisfaction``: an integer from 1 to 5 (``4``, ``4.0`` or ``4,0`` in text; an integral number in XLSX);
  blank = no answer (null).
* ``needs``: free text, its theme by the discussions' classifier (``insights.theme_verdicts``); blank = null theme
  and evidence.
* ``reuse_type``, ``respondent_organization``: free text.
* ``email``: HMAC-SHA256 of the trimmed, lower-cased address keyed by the salt; the address itself is dropped.

E-mail addresses found in free text are replaced by ``[e-mail]``. Fully blank rows are skipped.
"""

import datetime as dt
import hashlib
import hmac
import re
from collections.abc import Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING
from urllib.parse import unquote, urlsplit
from zoneinfo import ZoneInfo

from usage_pipeline.insights.theme_verdicts import verdicts
from usage_pipeline.surveys.config import FileSpec, normalize_header
from usage_pipeline.surveys.reading import (
    EMAIL,
    MAX_HEADER_SHOWN,
    Problem,
    Sheet,
    SurveyFileError,
    column_letter,
    shown,
)

if TYPE_CHECKING:
    from usage_pipeline.insights.theme_model import ThemeModel

SALT_ENV = "USAGE_PSEUDONYM_SALT"
LOCAL_TIMEZONE = ZoneInfo("Europe/Paris")  # of times written without offset
DATE_FORMS = "ISO 8601 like 2026-11-20 or 2026-11-20T14:03:05+01:00, or dd/mm/yyyy[ hh:mm[:ss]]"
_FRENCH_DATE = re.compile(r"(\d{1,2})/(\d{1,2})/(\d{4})(?:[ T]+(\d{1,2})[:hH](\d{2})(?::(\d{2}))?)?")
_ISO_DATE = re.compile(r"\d{4}-\d{2}-\d{2}")
_INTEGER = re.compile(r"\+?(\d+)(?:[.,]0+)?")
_SLUG = re.compile(r"[\w.~-]+")
_LANGUAGE = re.compile(r"[a-z]{2}(?:-[a-z]{2})?")


@dataclass(frozen=True)
class KnownDatasets:
    """The followed datasets: ids and slugs (current and former) to their id."""

    ids: dict[str, str]  # lower-cased id -> id
    slugs: dict[str, str]  # lower-cased slug -> id
    source: str  # the table read

    @classmethod
    def of(cls, pairs: Iterable[tuple[str, str | None]], source: str) -> "KnownDatasets":
        """From (dataset_id, slug) rows."""
        ids: dict[str, str] = {}
        slugs: dict[str, str] = {}
        for dataset_id, slug in pairs:
            ids[dataset_id.lower()] = dataset_id
            if slug:
                slugs[slug.lower()] = dataset_id
        return cls(ids, slugs, source)

    def resolve(self, reference: str) -> str | None:
        """The dataset id of an id, slug or portal URL; None when it is no followed dataset."""
        key = dataset_key(reference)
        if key is None:
            return None
        key = key.lower()
        return self.ids.get(key) or self.slugs.get(key)


def dataset_key(reference: str) -> str | None:
    """The id or slug a dataset reference names: itself, or the segment after /datasets/ in a portal URL."""
    text = reference.strip()
    if re.match(r"https?://", text, re.IGNORECASE):
        parts = [unquote(part) for part in urlsplit(text).path.split("/") if part]
        if parts and _LANGUAGE.fullmatch(parts[0].lower()):
            parts = parts[1:]
        if parts[:2] == ["api", "1"]:
            parts = parts[2:]
        return parts[1] if len(parts) >= 2 and parts[0] == "datasets" else None
    return text if _SLUG.fullmatch(text) else None


def parse_timestamp(value: object) -> dt.datetime | None:
    """A submission time in UTC, or None when it does not parse.

    Accepted: datetime and date cells (XLSX); text in ISO 8601 extended form (``2026-11-20``,
    ``2026-11-20 14:03``, ``2026-11-20T14:03:05.250+01:00``, ``...Z``) or the French ``dd/mm/yyyy``,
    ``dd/mm/yyyy hh:mm``, ``dd/mm/yyyy hh:mm:ss`` (``14h03`` too). Without offset, Europe/Paris time.
    """
    if isinstance(value, dt.datetime):
        moment = value
    elif isinstance(value, dt.date):
        moment = dt.datetime.combine(value, dt.time())
    elif isinstance(value, str):
        text = value.strip()
        french = _FRENCH_DATE.fullmatch(text)
        try:
            if french:
                day, month, year, hour, minute, second = (int(part or 0) for part in french.groups())
                moment = dt.datetime(year, month, day, hour, minute, second)
            elif _ISO_DATE.match(text):
                moment = dt.datetime.fromisoformat(text)
            else:
                return None
        except ValueError:
            return None
    else:
        return None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=LOCAL_TIMEZONE)
    return moment.astimezone(dt.UTC)


def parse_satisfaction(value: object) -> int | None:
    """An integer from 1 to 5, or None when it is not one."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        number = value
    elif isinstance(value, float) and value.is_integer():
        number = int(value)
    elif isinstance(value, str) and (match := _INTEGER.fullmatch(value.strip())):
        number = int(match.group(1))
    else:
        return None
    return number if 1 <= number <= 5 else None


def pseudonym(email: str, salt: str) -> str:
    """HMAC-SHA256 (hex) of the trimmed, lower-cased address keyed by ``salt``."""
    return hmac.new(salt.encode("utf-8"), email.strip().lower().encode("utf-8"), hashlib.sha256).hexdigest()


def _text(value: object) -> str | None:
    """A cell as trimmed text; None when blank."""
    if value is None:
        return None
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    elif isinstance(value, dt.datetime | dt.date | dt.time):
        value = value.isoformat()
    text = str(value).strip()
    return text or None


def _free_text(value: object) -> str | None:
    text = _text(value)
    return EMAIL.sub("[e-mail]", text) if text else None


def locate_columns(file: str, sheet: Sheet, spec: FileSpec) -> dict[str, int]:
    """The column index of each mapped field; a missing or ambiguous header rejects the file."""
    positions: dict[str, list[int]] = {}
    for index, header in enumerate(sheet.header):
        positions.setdefault(normalize_header(header), []).append(index)
    found: dict[str, int] = {}
    problems: list[Problem] = []
    for name, header in spec.columns.items():
        indexes = positions.get(normalize_header(header), [])
        if len(indexes) == 1:
            found[name] = indexes[0]
            continue
        if indexes:
            letters = ", ".join(column_letter(index) for index in indexes)
            problems.append(Problem(f"appears in several columns ({letters})", header, None, name, [(1, None)]))
        else:
            problems.append(Problem("not found in the header", header, None, name, [(1, None)]))
    if problems:
        headers = ", ".join(shown(cell, MAX_HEADER_SHOWN) for cell in sheet.header if cell) or "nothing"
        raise SurveyFileError(file, problems, f"The header (row 1) has {headers}")
    return found


def parse_responses(
    file: str, sheet: Sheet, spec: FileSpec, known: KnownDatasets, salt: str | None, classifier: "ThemeModel | None"
) -> list[dict[str, object]]:
    """The file's responses (one dict per answer row), or SurveyFileError listing every fault. The needs are
    classified like discussions (`theme_verdicts.verdicts`: ``classifier``, or the lexicon when it is None)."""
    if "email" in spec.columns and not salt:
        what = (
            f"maps `email` but {SALT_ENV} is not set: addresses are only stored as salted hashes; set it to a long "
            "random secret (keep it stable: it links a respondent's answers) and materialize again"
        )
        raise SurveyFileError(file, [Problem(what, spec.columns["email"], None, "email")])
    columns = locate_columns(file, sheet, spec)
    problems: dict[tuple[str, str], Problem] = {}

    def fault(name: str, what: str, row: int, value: object) -> None:
        index = columns[name]
        problem = problems.setdefault((name, what), Problem(what, sheet.header[index], column_letter(index), name))
        problem.cells.append((row, shown(value)))

    responses = []
    for row, cells in sheet.rows:
        if all(_text(cell) is None for cell in cells):
            continue
        value = {name: cells[index] if index < len(cells) else None for name, index in columns.items()}
        reference = _text(value["dataset"])
        dataset_id = known.resolve(reference) if reference else None
        if reference is None:
            fault("dataset", "no dataset", row, "")
        elif dataset_id is None:
            fault("dataset", f"not a followed dataset (id, slug or URL; known from {known.source})", row, reference)
        submitted_at = parse_timestamp(value["submitted_at"])
        if _text(value["submitted_at"]) is None:
            fault("submitted_at", "no date", row, "")
        elif submitted_at is None:
            fault("submitted_at", f"not a date ({DATE_FORMS})", row, _text(value["submitted_at"]))
        satisfaction = None
        if _text(value["satisfaction"]) is not None:
            satisfaction = parse_satisfaction(value["satisfaction"])
            if satisfaction is None:
                fault("satisfaction", "not an integer from 1 to 5", row, value["satisfaction"])
        needs = _free_text(value["needs"])
        email = _text(value.get("email"))
        responses.append(
            {
                "row_number": row,
                "dataset_id": dataset_id,
                "submitted_at": submitted_at,
                "satisfaction": satisfaction,
                "needs": needs,
                "needs_theme": None,  # set below, for the whole file at once
                "needs_evidence": None,
                "reuse_type": _free_text(value.get("reuse_type")),
                "respondent_organization": _free_text(value.get("respondent_organization")),
                "respondent_hash": pseudonym(email, salt) if email and salt else None,
            }
        )
    if problems:
        raise SurveyFileError(file, list(problems.values()))
    answered = [response for response in responses if response["needs"]]
    for response, verdict in zip(answered, verdicts([("", [r["needs"]]) for r in answered], classifier), strict=True):
        response["needs_theme"], response["needs_evidence"] = verdict.theme, list(verdict.evidence)
    return responses
