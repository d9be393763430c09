"""Looking at the published copy from a terminal: its tables, and a table's rows (read-only, never the warehouse)."""

import shutil
from dataclasses import dataclass
from pathlib import Path

import duckdb

from usage_pipeline.publish import PUBLISHED_SCHEMA

COLUMN_WIDTH = 40  # characters of a value shown before it is cut


class BrowseError(LookupError):
    """Nothing published yet, or a table that is not there; the message says what exists."""


@dataclass(frozen=True)
class PublishedTable:
    name: str
    rows: int
    description: str


def _connect(database: Path) -> duckdb.DuckDBPyConnection:
    if not database.is_file():
        raise BrowseError(f"nothing published yet: {database} does not exist (run `usage-pipeline refresh` first)")
    return duckdb.connect(str(database), read_only=True)


def published_tables(database: Path) -> list[PublishedTable]:
    """The reporting tables of ``database``, with their row counts and catalog descriptions."""
    with _connect(database) as conn:
        rows = conn.execute(
            "SELECT table_name, estimated_size, coalesce(comment, '') FROM duckdb_tables() "
            "WHERE schema_name = ? ORDER BY table_name",
            [PUBLISHED_SCHEMA],
        ).fetchall()
        return [
            PublishedTable(name, conn.execute(f"SELECT count(*) FROM {PUBLISHED_SCHEMA}.{name}").fetchone()[0], text)
            for name, _, text in rows
        ]


def print_tables(database: Path) -> None:
    """One line per table: name, rows, description."""
    tables = published_tables(database)
    width = max((len(table.name) for table in tables), default=0)
    print(f"{len(tables)} tables in {database} (schema {PUBLISHED_SCHEMA}):")
    for table in tables:
        print(f"  {table.name:<{width}}  {table.rows:>7} rows  {table.description}")


def print_table(database: Path, name: str, limit: int) -> None:
    """The first ``limit`` rows of a reporting table, as a text table as wide as the terminal."""
    table = name.removeprefix(f"{PUBLISHED_SCHEMA}.")
    known = {published.name: published for published in published_tables(database)}
    if table not in known:
        raise BrowseError(f"no table {name!r} in {database}; the tables are: {', '.join(sorted(known))}")
    print(f"{PUBLISHED_SCHEMA}.{table}: {known[table].description}")
    with _connect(database) as conn:
        conn.sql(f"FROM {PUBLISHED_SCHEMA}.{table} LIMIT {int(limit)}").show(
            max_width=shutil.get_terminal_size((160, 40)).columns, max_rows=limit, max_col_width=COLUMN_WIDTH
        )
    if known[table].rows > limit:
        print(f"({limit} of {known[table].rows} rows; --limit shows more)")
