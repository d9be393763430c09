"""The working DuckDB warehouse: raw tables and idempotent partition writes.

Only the pipeline writes here (one writing step at a time: see the `usage_warehouse` pool); BI tools read
the published copy instead (publish.py).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass

import duckdb
import polars as pl


@dataclass(frozen=True)
class RawTable:
    """A raw table: the portal's JSON as returned, one row per object and snapshot date."""

    name: str
    description: str
    columns: dict[str, tuple[str, str]]  # column -> (DuckDB type, description)

    @property
    def qualified(self) -> str:
        return f"raw.{self.name}"


_SNAPSHOT = ("DATE", "The run's logical date: what the portal said when this date was materialized.")
_DATASET = ("VARCHAR", "data.gouv.fr dataset id (the `datasets` partition key).")
_PAYLOAD = ("JSON", "The object exactly as the portal returned it (X-Fields masked).")

RAW_TABLES: tuple[RawTable, ...] = (
    RawTable(
        "dataset_snapshots",
        "One row per dataset and snapshot date: the dataset object with its counters and resources, "
        "or the HTTP status of a dataset that answered 404/410.",
        {
            "snapshot_date": _SNAPSHOT,
            "dataset_id": _DATASET,
            "http_status": ("INTEGER", "200, or 404/410 for a gone dataset."),
            "fetched_at": ("TIMESTAMP WITH TIME ZONE", "When the pipeline wrote the row."),
            "payload": ("JSON", "The dataset object as returned (null when gone)."),
        },
    ),
    RawTable(
        "organizations",
        "One row per organization and snapshot date: the organization with its members.",
        {
            "snapshot_date": _SNAPSHOT,
            "organization_id": ("VARCHAR", "data.gouv.fr organization id."),
            "payload": _PAYLOAD,
        },
    ),
    RawTable(
        "discussions",
        "One row per discussion, dataset and snapshot date: the discussion with all its messages.",
        {
            "snapshot_date": _SNAPSHOT,
            "dataset_id": _DATASET,
            "discussion_id": ("VARCHAR", "data.gouv.fr discussion id."),
            "payload": _PAYLOAD,
        },
    ),
    RawTable(
        "reuses",
        "One row per reuse, dataset and snapshot date: a reuse referenced on the dataset that day.",
        {
            "snapshot_date": _SNAPSHOT,
            "dataset_id": _DATASET,
            "reuse_id": ("VARCHAR", "data.gouv.fr reuse id."),
            "payload": _PAYLOAD,
        },
    ),
    RawTable(
        "metrics_monthly",
        "One row per metrics API row fetched on a snapshot date (model `datasets`: monthly visits and "
        "downloads; a dataset that changed organization has two rows for a month).",
        {
            "snapshot_date": _SNAPSHOT,
            "dataset_id": _DATASET,
            "metric_month": ("VARCHAR", "The month, YYYY-MM."),
            "payload": _PAYLOAD,
        },
    ),
)


def create_raw_tables(conn: duckdb.DuckDBPyConnection) -> None:
    """Create the raw schema and tables if they do not exist, with their catalog comments."""
    conn.execute("CREATE SCHEMA IF NOT EXISTS raw")
    for table in RAW_TABLES:
        columns = ", ".join(f"{name} {kind}" for name, (kind, _) in table.columns.items())
        conn.execute(f"CREATE TABLE IF NOT EXISTS {table.qualified} ({columns})")
        conn.execute(f"COMMENT ON TABLE {table.qualified} IS {sql_string(table.description)}")
        for name, (_, description) in table.columns.items():
            conn.execute(f"COMMENT ON COLUMN {table.qualified}.{name} IS {sql_string(description)}")


def sql_string(text: str) -> str:
    """A SQL string literal."""
    return "'" + text.replace("'", "''") + "'"


def replace_partitions(
    conn: duckdb.DuckDBPyConnection,
    table: RawTable,
    snapshot_date: dt.date,
    key_column: str,
    keys: Sequence[str],
    rows: pl.DataFrame,
) -> int:
    """Delete the rows of (``keys``, ``snapshot_date``) then insert ``rows``; the caller holds the transaction."""
    conn.execute(
        f"DELETE FROM {table.qualified} WHERE snapshot_date = ? AND {key_column} IN (SELECT unnest(?::VARCHAR[]))",
        [snapshot_date, list(keys)],
    )
    if rows.is_empty():
        return 0
    columns = list(table.columns)
    conn.register("incoming_rows", rows.select(columns).to_arrow())
    try:
        conn.execute(f"INSERT INTO {table.qualified} ({', '.join(columns)}) SELECT * FROM incoming_rows")
    finally:
        conn.unregister("incoming_rows")
    return rows.height


def datasets_with_metrics_history(conn: duckdb.DuckDBPyConnection, before: dt.date) -> set[str]:
    """Datasets whose monthly history was stored by an earlier snapshot: only their recent months are fetched.

    Earlier only, so that materializing a date again never replaces a stored history by recent months.
    """
    query = "SELECT DISTINCT dataset_id FROM raw.metrics_monthly WHERE snapshot_date < ?"
    return {row[0] for row in conn.execute(query, [before]).fetchall()}
