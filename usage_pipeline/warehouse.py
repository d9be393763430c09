"""The working DuckDB warehouse: raw tables and idempotent partition writes.

Only the pipeline writes here (one writing step at a time: see the `usage_warehouse` pool); BI tools read
the published copy instead (publish.py).
"""

from __future__ import annotations

import datetime as dt
import re
import time
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass

import dagster as dg
import duckdb
import polars as pl
from dagster_duckdb import DuckDBResource

LOCK_RETRY_CAP = 30.0  # seconds between two attempts at most
_LOCK_HOLDER = re.compile(r"Conflicting lock is held in (.+?) \(PID (\d+)\)")


def set_time_zone(conn: duckdb.DuckDBPyConnection, zone: str) -> None:
    """Make ``conn`` take days and months of TIMESTAMPTZ values in ``zone`` (an IANA name, checked by Settings).

    Casts to DATE, ``strftime``, ``date_trunc`` and the datetimes handed to Python all follow the session's time
    zone, which DuckDB's ICU extension provides: it is built into the duckdb Python package, so this works offline.
    """
    conn.execute("LOAD icu")
    conn.execute(f"SET TimeZone = '{zone}'")


class WarehouseLocked(RuntimeError):
    """Another process kept the warehouse file locked longer than the wait allowed."""


class Warehouse(DuckDBResource):
    """The warehouse file, opened for writing; waits for another process holding it, at most ``lock_wait`` seconds.

    DuckDB lets one process write a file. When another one holds it (a SQL client left open, a second
    `usage-pipeline refresh`), the connection is retried with exponential backoff (a log line each time, naming
    the holder when DuckDB says) until ``lock_wait`` seconds have passed, then `WarehouseLocked` names the file,
    the holder and what to do.
    """

    lock_wait: float = 600.0
    timezone: str = "UTC"  # days and months of TIMESTAMPTZ values are taken in this zone (USAGE_TIMEZONE)

    @contextmanager
    def get_connection(self) -> Iterator[duckdb.DuckDBPyConnection]:
        conn = self._connect()
        try:
            yield conn
        finally:
            conn.close()

    def _connect(self) -> duckdb.DuckDBPyConnection:
        started, delay = time.monotonic(), 0.5
        while True:
            try:
                conn = duckdb.connect(
                    self.database, config={"custom_user_agent": "usage_pipeline", **self.connection_config}
                )
                set_time_zone(conn, self.timezone)
                return conn
            except duckdb.IOException as error:
                holder = _LOCK_HOLDER.search(str(error))
                if "lock" not in str(error).lower():
                    raise
                waited = time.monotonic() - started
                who = f"{holder.group(1)} (PID {holder.group(2)})" if holder else "another process"
                if waited + delay > self.lock_wait:
                    raise WarehouseLocked(
                        f"{self.database} is locked by {who}: waited {waited:.0f}s (USAGE_WAREHOUSE_LOCK_WAIT="
                        f"{self.lock_wait:g}). Close the SQL client or let the other run finish (BI tools read "
                        "published/usage.duckdb, never the warehouse), then run again."
                    ) from None
                dg.get_dagster_logger().warning(
                    f"{self.database} is locked by {who}; trying again in {delay:.1f}s "
                    f"(waited {waited:.0f}s of {self.lock_wait:g}s)"
                )
                time.sleep(delay)
                delay = min(LOCK_RETRY_CAP, delay * 2)


@dataclass(frozen=True)
class Column:
    """A documented column: its DuckDB type and what it means."""

    type: str
    description: str


def table_schema(columns: dict[str, Column]) -> dg.TableSchema:
    """The columns as Dagster metadata (`dagster/column_schema`): the UI shows their types and descriptions."""
    return dg.TableSchema(
        columns=[
            dg.TableColumn(name, type=column.type, description=column.description) for name, column in columns.items()
        ]
    )


@dataclass(frozen=True)
class RawTable:
    """A raw table: the portal's JSON as returned, one row per object and snapshot date.

    A run replaces, for its date, the rows whose ``key`` it fetched (the dataset id, for most tables).
    """

    name: str
    description: str
    columns: dict[str, Column]
    key: str = "dataset_id"

    @property
    def qualified(self) -> str:
        return f"raw.{self.name}"


_SNAPSHOT = Column("DATE", "The run's logical date: what the portal said when this date was materialized.")
_DATASET = Column("VARCHAR", "data.gouv.fr dataset id (the `datasets` partition key).")
_PAYLOAD = Column("JSON", "The object exactly as the portal returned it (X-Fields masked).")

RAW_TABLES: tuple[RawTable, ...] = (
    RawTable(
        "dataset_snapshots",
        "One row per dataset and snapshot date: the dataset object with its counters and resources, "
        "or the HTTP status of a dataset that answered 404/410.",
        {
            "snapshot_date": _SNAPSHOT,
            "dataset_id": _DATASET,
            "http_status": Column("INTEGER", "200, or 404/410 for a gone dataset."),
            "fetched_at": Column("TIMESTAMP WITH TIME ZONE", "When the pipeline wrote the row."),
            "payload": Column("JSON", "The dataset object as returned (null when gone)."),
        },
    ),
    RawTable(
        "organizations",
        "One row per organization and snapshot date: the organization with its members.",
        {
            "snapshot_date": _SNAPSHOT,
            "organization_id": Column("VARCHAR", "data.gouv.fr organization id."),
            "payload": _PAYLOAD,
        },
        key="organization_id",
    ),
    RawTable(
        "discussions",
        "One row per discussion, dataset and snapshot date: the discussion with all its messages.",
        {
            "snapshot_date": _SNAPSHOT,
            "dataset_id": _DATASET,
            "discussion_id": Column("VARCHAR", "data.gouv.fr discussion id."),
            "payload": _PAYLOAD,
        },
    ),
    RawTable(
        "reuses",
        "One row per reuse, dataset and snapshot date: a reuse referenced on the dataset that day.",
        {
            "snapshot_date": _SNAPSHOT,
            "dataset_id": _DATASET,
            "reuse_id": Column("VARCHAR", "data.gouv.fr reuse id."),
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
            "metric_month": Column("VARCHAR", "The month, YYYY-MM."),
            "payload": _PAYLOAD,
        },
    ),
    RawTable(
        "followed_entries",
        "One row per entry of USAGE_ORGANIZATIONS and USAGE_DATASETS and snapshot date: what the portal said of "
        "it. The id an entry resolved to is remembered: a renamed or deleted slug is then followed by its id.",
        {
            "snapshot_date": _SNAPSHOT,
            "kind": Column("VARCHAR", "organization or dataset."),
            "configured_as": Column("VARCHAR", "The id or slug as written in the setting."),
            "resolved_id": Column("VARCHAR", "The data.gouv.fr id it resolves (or resolved before) to; null if never."),
            "http_status": Column("INTEGER", "What the configured key answered: 200, 404, 410; null without answer."),
            "status": Column(
                "VARCHAR",
                "active; renamed (the key no longer answers, its former id does); gone (404/410); unreachable.",
            ),
            "detail": Column("VARCHAR", "What happened, in words (empty when active)."),
        },
        key="configured_as",
    ),
    RawTable(
        "fetch_failures",
        "One row per part of the portal that did not answer after every retry on a snapshot date: the rows it "
        "would have replaced keep their previous state, and the next run fetches it again.",
        {
            "snapshot_date": _SNAPSHOT,
            "subject": Column("VARCHAR", "The dataset id (or the organization) the part was about."),
            "part": Column("VARCHAR", "organization, listing, dataset, discussions, reuses or metrics."),
            "url": Column("VARCHAR", "The request that failed."),
            "http_status": Column("INTEGER", "Its last HTTP status; null for a timeout or a connection error."),
            "error": Column("VARCHAR", "What the client said when it gave up."),
        },
        key="subject",
    ),
)


QUARANTINE_COLUMNS = {
    "run_id": Column("VARCHAR", "The Dagster run that fetched the rows."),
    "rejected_at": Column("TIMESTAMP WITH TIME ZONE", "When a blocking check rejected them."),
    "failed_checks": Column("VARCHAR[]", "The blocking checks the dataset failed in that run."),
}
CHECK_RESULTS_COLUMNS = {
    "run_id": Column("VARCHAR", "The Dagster run that evaluated the check."),
    "run_date": Column("DATE", "The run's logical date."),
    "asset": Column("VARCHAR", "The checked asset (raw/udata_snapshot, reporting/<table>)."),
    "check_name": Column("VARCHAR", "The check (an expectation suite)."),
    "dataset_id": Column("VARCHAR", "A dataset the check failed on; null on the check's summary row."),
    "severity": Column("VARCHAR", "ERROR (blocking: nothing downstream is built or published) or WARN."),
    "passed": Column("BOOLEAN", "True when every expectation held (on the summary row) or for that dataset."),
    "observed": Column("VARCHAR", "JSON: rows checked and failing count (summary) or the dataset's offending rows."),
    "details": Column("VARCHAR", "The expectations that failed, with their arguments."),
    "evaluated_at": Column("TIMESTAMP WITH TIME ZONE", "When the check ran."),
}


@contextmanager
def transaction(conn: duckdb.DuckDBPyConnection) -> Iterator[None]:
    """Everything the block executes on ``conn`` commits together, or not at all."""
    conn.execute("BEGIN TRANSACTION")
    try:
        yield
    except BaseException:
        conn.execute("ROLLBACK")
        raise
    conn.execute("COMMIT")


@contextmanager
def registered(conn: duckdb.DuckDBPyConnection, name: str, frame: pl.DataFrame) -> Iterator[str]:
    """``frame`` readable as the view ``name`` during the block."""
    conn.register(name, frame.to_arrow())
    try:
        yield name
    finally:
        conn.unregister(name)


def comment_table(conn: duckdb.DuckDBPyConnection, table: str, description: str, columns: dict[str, Column]) -> None:
    """Put a table's and its columns' descriptions in the DuckDB catalog (BI tools show them)."""
    conn.execute(f"COMMENT ON TABLE {table} IS {sql_string(description)}")
    for name, column in columns.items():
        conn.execute(f"COMMENT ON COLUMN {table}.{name} IS {sql_string(column.description)}")


def create_table(conn: duckdb.DuckDBPyConnection, table: str, description: str, columns: dict[str, Column]) -> None:
    """Create ``table`` if missing, with its columns' types, and (re)write its catalog comments."""
    conn.execute(f"CREATE TABLE IF NOT EXISTS {table} ({', '.join(f'{n} {c.type}' for n, c in columns.items())})")
    comment_table(conn, table, description, columns)


_POLARS_TYPES = {"VARCHAR": pl.String, "INTEGER": pl.Int32, "BIGINT": pl.Int64, "DATE": pl.Date}


def polars_schema(columns: dict[str, Column]) -> dict[str, pl.DataType]:
    """The Polars schema of rows bound for a table of ``columns`` (the types Python-written raw tables use)."""
    return {name: _POLARS_TYPES[column.type] for name, column in columns.items()}


def create_warehouse_tables(conn: duckdb.DuckDBPyConnection) -> None:
    """Create the raw, quarantine and quality schemas and tables if missing, with their catalog comments."""
    for schema in ("raw", "quarantine", "quality"):
        conn.execute(f"CREATE SCHEMA IF NOT EXISTS {schema}")
    for table in RAW_TABLES:
        create_table(conn, table.qualified, table.description, table.columns)
        create_table(
            conn,
            f"quarantine.{table.name}",
            f"Rows of raw.{table.name} that a blocking check rejected: kept for inspection, never used by models.",
            table.columns | QUARANTINE_COLUMNS,
        )
    create_table(
        conn,
        "quality.check_results",
        "One row per check evaluation (dataset_id null) and per dataset it failed on.",
        CHECK_RESULTS_COLUMNS,
    )


def sql_string(text: str) -> str:
    """A SQL string literal."""
    return "'" + text.replace("'", "''") + "'"


def incoming(table: RawTable) -> str:
    """The temporary table holding a run's new rows for ``table`` until the checks have passed on them."""
    return f"incoming_{table.name}"


def stage_incoming(conn: duckdb.DuckDBPyConnection, table: RawTable, rows: pl.DataFrame) -> None:
    """Load the run's rows into the temporary table ``incoming(table)``, typed like the raw table."""
    columns = ", ".join(f"{name}::{column.type} AS {name}" for name, column in table.columns.items())
    with registered(conn, "incoming_rows", rows.select(list(table.columns))):
        conn.execute(f"CREATE OR REPLACE TEMP TABLE {incoming(table)} AS SELECT {columns} FROM incoming_rows")


def accept_incoming(
    conn: duckdb.DuckDBPyConnection,
    table: RawTable,
    replaced: dict[dt.date, Sequence[str]],
    rejected: dict[str, list[str]],
    run_id: str,
    kept: Iterable[str] = (),
) -> tuple[int, int]:
    """Replace each date's partitions by the incoming rows, except rejected keys' rows, which go to quarantine.

    ``replaced`` maps a snapshot date to the keys (``table.key`` values) whose rows are replaced; ``rejected``
    maps a dataset to the blocking checks it failed, ``kept`` lists keys whose part of the portal could not be
    fetched: both keep their previous rows. Returns (accepted, quarantined). The caller holds the transaction.
    """
    untouched = set(rejected) | set(kept)
    kept_keys = [k for k in {k for keys in replaced.values() for k in keys} if k not in untouched]
    for snapshot_date, keys in replaced.items():
        conn.execute(
            f"DELETE FROM {table.qualified} WHERE snapshot_date = ? AND {table.key} IN (SELECT unnest(?::VARCHAR[]))",
            [snapshot_date, [k for k in keys if k not in untouched]],
        )
    columns = ", ".join(table.columns)
    source = incoming(table)
    accepted = conn.execute(
        f"INSERT INTO {table.qualified} ({columns}) SELECT {columns} FROM {source} "
        f"WHERE {table.key} IN (SELECT unnest(?::VARCHAR[]))",
        [kept_keys],
    ).fetchone()[0]
    if table.key != "dataset_id" or not rejected:
        return accepted, 0
    checks = pl.DataFrame({"dataset_id": list(rejected), "failed_checks": list(rejected.values())})
    with registered(conn, "rejected_datasets", checks):
        quarantined = conn.execute(
            f"INSERT INTO quarantine.{table.name} SELECT {', '.join(f'incoming.{c}' for c in table.columns)}, "
            f"?, now(), rejected.failed_checks FROM {source} AS incoming JOIN rejected_datasets AS rejected "
            "USING (dataset_id)",
            [run_id],
        ).fetchone()[0]
    return accepted, quarantined


def datasets_with_metrics_history(conn: duckdb.DuckDBPyConnection, before: dt.date) -> set[str]:
    """Datasets whose monthly history was stored by an earlier snapshot: only their recent months are fetched.

    Earlier only, so that materializing a date again never replaces a stored history by recent months.
    """
    query = "SELECT DISTINCT dataset_id FROM raw.metrics_monthly WHERE snapshot_date < ?"
    return {row[0] for row in conn.execute(query, [before]).fetchall()}


def remembered_ids(conn: duckdb.DuckDBPyConnection, table: str = "raw.followed_entries") -> dict[tuple[str, str], str]:
    """The id each configured entry last resolved to, from ``table`` (raw.followed_entries, or its published
    summary reporting.followed_entries); empty when the table does not exist yet."""
    schema, name = table.split(".")
    exists = conn.execute(
        "SELECT count(*) FROM information_schema.tables WHERE table_schema = ? AND table_name = ?", [schema, name]
    ).fetchone()[0]
    if not exists:
        return {}
    rows = conn.execute(
        f"SELECT kind, configured_as, arg_max(resolved_id, snapshot_date) FROM {table} "
        "WHERE resolved_id IS NOT NULL GROUP BY kind, configured_as"
        if schema == "raw"
        else f"SELECT kind, configured_as, resolved_id FROM {table} WHERE resolved_id IS NOT NULL"
    ).fetchall()
    return {(kind, configured): resolved for kind, configured, resolved in rows}
