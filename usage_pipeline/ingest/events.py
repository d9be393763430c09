"""Community events ($USAGE_DATA_DIR/events.csv): workshops, webinars, hackathons, newsletters..."""

import datetime as dt
import re
from dataclasses import dataclass
from pathlib import Path

import dagster as dg
import polars as pl
from dagster_duckdb import DuckDBResource

from usage_pipeline.data_dir import DataDir
from usage_pipeline.ingest.assets import RAW_SNAPSHOT_KEY, WAREHOUSE_POOL
from usage_pipeline.ingest.producer_csv import (
    ProducerFileError,
    create_table,
    read_rows,
    replace_rows,
    unreadable_file_results,
)
from usage_pipeline.warehouse import Column, table_schema

EVENTS_KEY = dg.AssetKey(["raw", "community_events"])
EVENTS_TABLE = "raw.community_events"
EVENTS_FILE_VALID = "events_file_valid"
REQUIRED_COLUMNS = ("date", "title", "kind", "datasets")
EVENTS_DESCRIPTION = (
    "Community events from $USAGE_DATA_DIR/events.csv, one row per event and dataset it concerns. The file "
    "is read whole at each run; a malformed file is reported (check events_file_valid) and the previous "
    "events are kept."
)
EVENTS_COLUMNS = {
    "event_date": Column("DATE", "When the event took place (or the newsletter went out)."),
    "title": Column("VARCHAR", "The event's title."),
    "kind": Column("VARCHAR", "workshop, webinar, hackathon, newsletter... (lower case, as written in the file)."),
    "dataset_id": Column("VARCHAR", "A followed dataset the event was about."),
    "source_row": Column("INTEGER", "Row of events.csv (the header is row 1)."),
}
_SEPARATORS = re.compile(r"[\s,;|]+")


@dataclass(frozen=True)
class Event:
    event_date: dt.date
    title: str
    kind: str
    dataset_id: str
    source_row: int


def _date(text: str) -> dt.date | None:
    for pattern in ("%Y-%m-%d", "%d/%m/%Y"):
        try:
            return dt.datetime.strptime(text.strip(), pattern).date()
        except ValueError:
            continue
    return None


def parse_events(path: Path, known_datasets: set[str]) -> list[Event]:
    """Read events.csv (UTF-8, `,` or `;`): date (YYYY-MM-DD or DD/MM/YYYY), title, kind, datasets (ids)."""
    rows = read_rows(path, REQUIRED_COLUMNS)
    events, problems = [], []
    for number, row in rows:
        date = _date(row["date"])
        datasets = [key for key in _SEPARATORS.split(row["datasets"]) if key]
        unknown = [key for key in datasets if key not in known_datasets]
        if date is None:
            problems.append(f"row {number}, column date: {row['date']!r} is not a date (YYYY-MM-DD or DD/MM/YYYY)")
        if not row["title"]:
            problems.append(f"row {number}, column title: empty")
        if not datasets:
            problems.append(f"row {number}, column datasets: no dataset id")
        if unknown:
            problems.append(f"row {number}, column datasets: {unknown} are not followed datasets")
        if date and row["title"] and datasets and not unknown:
            kind = row["kind"].lower() or "other"
            events += [Event(date, row["title"], kind, dataset_id, number) for dataset_id in datasets]
    if problems:
        raise ProducerFileError(f"{path}: " + "; ".join(problems))
    return events


@dg.asset(
    key=EVENTS_KEY,
    deps=[RAW_SNAPSHOT_KEY],
    description=EVENTS_DESCRIPTION,
    group_name="raw",
    pool=WAREHOUSE_POOL,
    kinds={"python", "duckdb", "csv"},
    check_specs=[dg.AssetCheckSpec(EVENTS_FILE_VALID, asset=EVENTS_KEY, description="events.csv is well-formed")],
    metadata={"dagster/column_schema": table_schema(EVENTS_COLUMNS)},
)
def community_events(context: dg.AssetExecutionContext, warehouse: DuckDBResource, data_dir: DataDir):
    """Load events.csv whole into raw.community_events; a malformed file keeps the previous events."""
    events_file = data_dir.events_file
    with warehouse.get_connection() as conn:
        create_table(conn, EVENTS_TABLE, EVENTS_DESCRIPTION, EVENTS_COLUMNS)
        known = {row[0] for row in conn.execute("SELECT DISTINCT dataset_id FROM raw.dataset_snapshots").fetchall()}
        try:
            events = parse_events(events_file, known) if events_file.exists() else []
        except ProducerFileError as error:
            context.log.warning(f"{error}; the previous events are kept")
            yield from unreadable_file_results(EVENTS_FILE_VALID, error)
            return
        frame = pl.DataFrame(
            [event.__dict__ for event in events],
            schema={"event_date": pl.Date, "title": pl.String, "kind": pl.String, "dataset_id": pl.String,
                    "source_row": pl.Int32},
            orient="row",
        )  # fmt: skip
        replace_rows(conn, EVENTS_TABLE, frame)
    context.log.info(f"{len(events)} event × dataset rows from {events_file}")
    yield dg.MaterializeResult(metadata={"dagster/row_count": len(events)})
    yield dg.AssetCheckResult(check_name=EVENTS_FILE_VALID, passed=True, severity=dg.AssetCheckSeverity.WARN)
