"""Publication refuses while a reporting table's latest blocking check is failing."""

import datetime as dt

import duckdb

from usage_pipeline.publish import failing_reporting_checks
from usage_pipeline.warehouse import create_warehouse_tables


def record(conn: duckdb.DuckDBPyConnection, asset: str, passed: bool, minute: int, severity: str = "ERROR") -> None:
    conn.execute(
        "INSERT INTO quality.check_results VALUES (?, DATE '2026-11-20', ?, 'values_valid', NULL, ?, ?, '{}', '[]', ?)",
        [f"run-{minute}", asset, severity, passed, dt.datetime(2026, 11, 20, 8, minute, tzinfo=dt.UTC)],
    )


def test_only_the_latest_blocking_evaluation_of_a_current_table_counts() -> None:
    with duckdb.connect() as conn:
        create_warehouse_tables(conn)
        record(conn, "reporting/discussions", False, 1)  # failed in the daily run...
        record(conn, "reporting/reuses", False, 2)
        record(conn, "reporting/reuses", True, 3)  # ...fixed by a later run
        record(conn, "reporting/old_table", False, 4)  # a model that no longer exists
        record(conn, "reporting/datasets", False, 5, severity="WARN")
        current = ["reporting/discussions", "reporting/reuses", "reporting/datasets"]
        assert failing_reporting_checks(conn, current) == ["values_valid on reporting/discussions (run run-1)"]
        record(conn, "reporting/discussions", True, 6)
        assert failing_reporting_checks(conn, current) == []
