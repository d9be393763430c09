"""The small CSV files a producer writes in $USAGE_DATA_DIR (events, theme corrections): reading them, and loading
one whole into its raw table at each run."""

import csv
import io
from collections.abc import Sequence
from pathlib import Path

import dagster as dg
import duckdb
import polars as pl

from usage_pipeline.warehouse import Column, comment_table, registered, transaction


class ProducerFileError(ValueError):
    """A producer's file cannot be read; the message names the file, rows and columns."""


def read_rows(path: Path, required: Sequence[str]) -> list[tuple[int, dict[str, str]]]:
    """The rows of a UTF-8 CSV file (`,` or `;`), each with its row number (the header is row 1).

    Column names are matched in lower case and values stripped; a file that is not UTF-8 or lacks a ``required``
    column raises `ProducerFileError`.
    """
    try:
        text = path.read_text(encoding="utf-8-sig")
    except UnicodeDecodeError as error:
        raise ProducerFileError(
            f"{path}: not UTF-8 text ({error.reason} at byte {error.start}): save it as UTF-8"
        ) from None
    dialect = csv.Sniffer().sniff(text.splitlines()[0] if text else ",", delimiters=",;")
    reader = csv.DictReader(io.StringIO(text), dialect=dialect)
    header = [name.strip().lower() for name in reader.fieldnames or []]
    missing = [name for name in required if name not in header]
    if missing:
        raise ProducerFileError(f"{path}: missing column(s) {missing}; the header must hold {list(required)}")
    return [
        (number, {key.strip().lower(): (value or "").strip() for key, value in raw.items() if key})
        for number, raw in enumerate(reader, start=2)
    ]


def create_table(conn: duckdb.DuckDBPyConnection, table: str, description: str, columns: dict[str, Column]) -> None:
    """The raw table a producer's file is loaded into, created if missing and documented in the catalog."""
    conn.execute(f"CREATE TABLE IF NOT EXISTS {table} ({', '.join(f'{n} {c.type}' for n, c in columns.items())})")
    comment_table(conn, table, description, columns)


def replace_rows(conn: duckdb.DuckDBPyConnection, table: str, frame: pl.DataFrame) -> None:
    """The table's rows replaced by the frame's, in one transaction (a file is read whole at each run)."""
    with transaction(conn), registered(conn, "producer_file_rows", frame):
        conn.execute(f"DELETE FROM {table}")
        conn.execute(f"INSERT INTO {table} SELECT * FROM producer_file_rows")


def unreadable_file_results(
    check_name: str, error: ProducerFileError
) -> list[dg.MaterializeResult | dg.AssetCheckResult]:
    """What an asset reports when its file cannot be read: the error, and its file check failed (a warning)."""
    metadata = {"error": dg.MetadataValue.text(str(error))}
    return [
        dg.MaterializeResult(metadata=metadata),
        dg.AssetCheckResult(
            check_name=check_name, passed=False, severity=dg.AssetCheckSeverity.WARN, metadata=metadata
        ),
    ]
