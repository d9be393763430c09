"""Ingest the pending survey files into the warehouse: each content once, one transaction per file.

A file is pending when its content (SHA-256 of its bytes) is not the one it had when last ingested: a new file,
a changed one, one whose previous contents were all rejected, or one changed back to an older content. A
pending file that reads well replaces all the file's responses; a malformed one is recorded as rejected and
the file's responses stay as they were. ``force`` ingests every file again (after a change of mapping).
"""

import datetime as dt
import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import duckdb
import polars as pl

from usage_pipeline.surveys.config import FileSpec, SurveysConfig, load_config, matching_files
from usage_pipeline.surveys.reading import SurveyFileError, read_sheet
from usage_pipeline.surveys.responses import KnownDatasets, parse_responses
from usage_pipeline.surveys.tables import (
    SURVEY_FILES_TABLE,
    SURVEY_RESPONSES_COLUMNS,
    SURVEY_RESPONSES_TABLE,
    create_survey_tables,
)
from usage_pipeline.warehouse import registered, transaction

if TYPE_CHECKING:
    from usage_pipeline.insights.theme_model import ThemeModel

# Where the followed datasets' ids and slugs are read: the first table that exists. The raw snapshots come first:
# they hold today's datasets (the daily job ingests surveys after them) and every slug a dataset ever had.
DATASET_SOURCES = {
    "raw.dataset_snapshots": "SELECT DISTINCT dataset_id, payload ->> '$.slug' FROM raw.dataset_snapshots",
    "reporting.datasets": "SELECT DISTINCT dataset_id, slug FROM reporting.datasets",
    "staging.dataset_snapshots": "SELECT DISTINCT dataset_id, slug FROM staging.dataset_snapshots",
}
_RESPONSE_SCHEMA = {
    "file": pl.String,
    "content_hash": pl.String,
    "row_number": pl.Int32,
    "dataset_id": pl.String,
    "submitted_at": pl.Datetime("us", "UTC"),
    "satisfaction": pl.Int32,
    "needs": pl.String,
    "needs_theme": pl.String,
    "needs_evidence": pl.List(pl.String),
    "reuse_type": pl.String,
    "respondent_organization": pl.String,
    "respondent_hash": pl.String,
    "ingested_at": pl.Datetime("us", "UTC"),
}


@dataclass(frozen=True)
class FileOutcome:
    """What happened to one survey file in a run."""

    file: str
    content_hash: str
    status: str  # ingested, rejected or unchanged
    responses: int = 0
    error: str | None = None
    reading: str | None = None  # how it was read: format, encoding, delimiter
    replaced: str | None = None  # the content it replaced, when ingested over an earlier one

    def as_metadata(self) -> dict[str, object]:
        """A JSON-ready summary (hashes shortened)."""
        summary: dict[str, object] = {"status": self.status, "sha256": self.content_hash[:12]}
        if self.status == "ingested":
            summary["responses"] = self.responses
        for key, value in (("read_as", self.reading), ("replaced", self.replaced and self.replaced[:12])):
            if value:
                summary[key] = value
        if self.error:
            summary["error"] = self.error
        return summary


@dataclass(frozen=True)
class SurveyRun:
    """The outcome of one ingestion: the config read (None without surveys.yaml) and each file's outcome."""

    config: SurveysConfig | None
    outcomes: tuple[FileOutcome, ...] = ()

    def count(self, status: str) -> int:
        """Files with ``status``."""
        return sum(outcome.status == status for outcome in self.outcomes)


def content_hash(data: bytes) -> str:
    """SHA-256 of a file's bytes, hex."""
    return hashlib.sha256(data).hexdigest()


def known_datasets(conn: duckdb.DuckDBPyConnection) -> KnownDatasets:
    """The followed datasets of the warehouse, from the first table of `DATASET_SOURCES` that exists."""
    existing = {
        f"{schema}.{name}"
        for schema, name in conn.execute(
            "SELECT table_schema, table_name FROM information_schema.tables WHERE table_catalog = current_database()"
        ).fetchall()
    }
    for source, query in DATASET_SOURCES.items():
        if source in existing:
            rows = conn.execute(f"SELECT * FROM ({query}) AS known(dataset_id, slug) WHERE dataset_id IS NOT NULL")
            return KnownDatasets.of(rows.fetchall(), source)
    return KnownDatasets.of([], f"none yet: neither {' nor '.join(DATASET_SOURCES)} exists, run a refresh first")


def ingested_contents(conn: duckdb.DuckDBPyConnection) -> dict[str, str]:
    """Each file's latest ingested content hash."""
    query = (
        f"SELECT file, arg_max(content_hash, seen_at) FROM {SURVEY_FILES_TABLE} WHERE status = 'ingested' GROUP BY file"
    )
    return dict(conn.execute(query).fetchall())


def _record(
    conn: duckdb.DuckDBPyConnection,
    file: str,
    digest: str,
    status: str,
    responses: int,
    error: str | None,
    at: dt.datetime,
) -> None:
    conn.execute(f"DELETE FROM {SURVEY_FILES_TABLE} WHERE file = ? AND content_hash = ?", [file, digest])
    row = [file, digest, status, responses, error, at]
    conn.execute(f"INSERT INTO {SURVEY_FILES_TABLE} VALUES (?, ?, ?, ?, ?, ?)", row)


def write_responses(
    conn: duckdb.DuckDBPyConnection, file: str, digest: str, responses: list[dict[str, object]], at: dt.datetime
) -> None:
    """Replace the file's responses by ``responses`` and record the content as ingested, in one transaction."""
    rows = [{"file": file, "content_hash": digest, **response, "ingested_at": at} for response in responses]
    frame = pl.DataFrame(rows, schema=_RESPONSE_SCHEMA)
    columns = ", ".join(SURVEY_RESPONSES_COLUMNS)
    with transaction(conn):
        conn.execute(f"DELETE FROM {SURVEY_RESPONSES_TABLE} WHERE file = ?", [file])
        with registered(conn, "survey_rows", frame):
            conn.execute(f"INSERT INTO {SURVEY_RESPONSES_TABLE} ({columns}) SELECT {columns} FROM survey_rows")
        _record(conn, file, digest, "ingested", len(responses), None, at)


def record_rejection(conn: duckdb.DuckDBPyConnection, file: str, digest: str, error: str, at: dt.datetime) -> None:
    """Record the content as rejected (the file's responses are left as they are), in one transaction."""
    with transaction(conn):
        _record(conn, file, digest, "rejected", 0, error, at)


def ingest_file(
    conn: duckdb.DuckDBPyConnection,
    file: str,
    data: bytes,
    spec: FileSpec,
    known: KnownDatasets,
    salt: str | None,
    classifier: "ThemeModel | None",
    previous: str | None = None,
    now: dt.datetime | None = None,
) -> FileOutcome:
    """Read, check and store one file content (needs classified by ``classifier``, or the lexicon when None); a
    malformed one is recorded as rejected."""
    at = now or dt.datetime.now(dt.UTC)
    digest = content_hash(data)
    reading = None
    try:
        sheet = read_sheet(file, data, spec)
        reading = sheet.describe()
        responses = parse_responses(file, sheet, spec, known, salt, classifier)
    except SurveyFileError as error:
        record_rejection(conn, file, digest, str(error), at)
        return FileOutcome(file, digest, "rejected", error=str(error), reading=reading)
    write_responses(conn, file, digest, responses, at)
    replaced = previous if previous != digest else None
    return FileOutcome(file, digest, "ingested", len(responses), reading=reading, replaced=replaced)


def ingest_surveys(
    conn: duckdb.DuckDBPyConnection,
    surveys_dir: Path,
    salt: str | None,
    *,
    classifier: "ThemeModel | None" = None,
    force: bool = False,
    now: dt.datetime | None = None,
) -> SurveyRun:
    """Create the survey tables if missing, then ingest every pending file of ``surveys_dir`` (needs classified by
    ``classifier``, by the lexicon when None).

    Raises SurveyConfigError when surveys.yaml is malformed; a missing folder or surveys.yaml is nothing to do.
    """
    create_survey_tables(conn)
    config = load_config(surveys_dir)
    if config is None:
        return SurveyRun(None)
    ingested = ingested_contents(conn)
    known: KnownDatasets | None = None
    outcomes = []
    for file, (path, spec) in matching_files(surveys_dir, config).items():
        try:
            data = path.read_bytes()
        except OSError as error:  # removed or unreadable since listed: tried again next time
            outcomes.append(FileOutcome(file, "", "rejected", error=f"{file}: cannot be read: {error}"))
            continue
        digest = content_hash(data)
        if not force and ingested.get(file) == digest:
            outcomes.append(FileOutcome(file, digest, "unchanged"))
            continue
        known = known or known_datasets(conn)
        outcomes.append(ingest_file(conn, file, data, spec, known, salt, classifier, ingested.get(file), now))
    return SurveyRun(config, tuple(outcomes))
