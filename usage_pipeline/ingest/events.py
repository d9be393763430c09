"""Community events ($USAGE_DATA_DIR/events.csv): workshops, webinars, hackathons, newsletters..."""

import datetime as dt
import re
from dataclasses import dataclass
from operator import attrgetter
from pathlib import Path

import dagster as dg

from usage_pipeline.ingest.producer_csv import ProducerFile, ProducerFileError, build_file_asset, read_rows
from usage_pipeline.warehouse import Column

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


EVENTS_FILE = ProducerFile(
    key=EVENTS_KEY,
    path_of=attrgetter("events_file"),
    table=EVENTS_TABLE,
    description=EVENTS_DESCRIPTION,
    columns=EVENTS_COLUMNS,
    check_name=EVENTS_FILE_VALID,
    noun="event × dataset rows",
    known_sql="SELECT DISTINCT dataset_id FROM raw.dataset_snapshots",
    parse=lambda path, known: (parse_events(path, known), []),  # a malformed row rejects the whole file
)


community_events = build_file_asset(EVENTS_FILE, "events.csv is well-formed")
