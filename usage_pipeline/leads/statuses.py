"""The producer's word on each lead ($USAGE_DATA_DIR/reuse_leads_status.csv: url,dataset_id,status)."""

from dataclasses import dataclass
from operator import attrgetter
from pathlib import Path

import dagster as dg

from usage_pipeline.ingest.producer_csv import ProducerFile, build_file_asset, read_rows
from usage_pipeline.insights.digest.formatting import safe_url
from usage_pipeline.warehouse import Column

STATUSES_KEY = dg.AssetKey(["raw", "reuse_lead_statuses"])
STATUSES_TABLE = "raw.reuse_lead_statuses"
STATUSES_VALID = "reuse_lead_statuses_valid"
PRODUCER_STATUSES = ("invited", "dismissed", "new")  # "new" takes a lead back
STATUSES_DESCRIPTION = (
    "What the producer did with each lead, from $USAGE_DATA_DIR/reuse_leads_status.csv (url,dataset_id,status; "
    f"status: {', '.join(PRODUCER_STATUSES)}), read whole at each run and never written by the pipeline. Rows "
    "with an unknown dataset or status or an address that is not http(s) are left out and reported (check "
    "reuse_lead_statuses_valid); an unreadable file keeps the previous statuses."
)
STATUSES_COLUMNS = {
    "url": Column("VARCHAR", "The lead's address, as in reporting.reuse_leads.url."),
    "dataset_id": Column("VARCHAR", "The dataset it cites."),
    "status": Column("VARCHAR", f"What the producer says: {', '.join(PRODUCER_STATUSES)}."),
    "source_row": Column("INTEGER", "Row of reuse_leads_status.csv (the header is row 1)."),
}


@dataclass(frozen=True)
class LeadStatus:
    url: str
    dataset_id: str
    status: str
    source_row: int


def parse_statuses(path: Path, known_datasets: set[str]) -> tuple[list[LeadStatus], list[str]]:
    """The valid rows of ``path`` (a later row for the same lead wins) and a problem per row left out."""
    statuses: dict[tuple[str, str], LeadStatus] = {}
    problems = []
    for number, row in read_rows(path, ("url", "dataset_id", "status")):
        where, status = f"{path}, row {number}", row["status"].lower()
        if status not in PRODUCER_STATUSES:
            problems.append(f"{where}: status {row['status']!r} is not one of {', '.join(PRODUCER_STATUSES)}")
        elif row["dataset_id"] not in known_datasets:
            problems.append(f"{where}: dataset {row['dataset_id']!r} is not a followed dataset")
        elif safe_url(row["url"]) is None:
            problems.append(f"{where}: url {row['url']!r} is not an http(s) address")
        else:
            key = (row["url"], row["dataset_id"])
            if key in statuses:
                problems.append(f"{where}: this lead already has a status in row {statuses[key].source_row}; "
                                f"row {number} wins")  # fmt: skip
            statuses[key] = LeadStatus(row["url"], row["dataset_id"], status, number)
    return list(statuses.values()), problems


STATUSES_FILE = ProducerFile(
    key=STATUSES_KEY,
    path_of=attrgetter("reuse_lead_statuses_file"),
    table=STATUSES_TABLE,
    description=STATUSES_DESCRIPTION,
    columns=STATUSES_COLUMNS,
    check_name=STATUSES_VALID,
    noun="lead statuses",
    known_sql="SELECT DISTINCT dataset_id FROM raw.dataset_snapshots",
    parse=parse_statuses,
)


reuse_lead_statuses = build_file_asset(STATUSES_FILE, "every row of reuse_leads_status.csv was applied")
