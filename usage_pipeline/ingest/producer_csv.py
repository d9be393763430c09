"""The small CSV files a producer writes in $USAGE_DATA_DIR (events, theme corrections): reading them, and loading
one whole into its raw table at each run."""

import csv
import dataclasses
import io
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import dagster as dg
import duckdb
import polars as pl
from dagster_duckdb import DuckDBResource

from usage_pipeline.data_dir import DataDir
from usage_pipeline.ingest.assets import RAW_SNAPSHOT_KEY, WAREHOUSE_POOL
from usage_pipeline.warehouse import Column, create_table, polars_schema, registered, table_schema, transaction


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


def replace_rows(conn: duckdb.DuckDBPyConnection, table: str, frame: pl.DataFrame) -> None:
    """The table's rows replaced by the frame's, in one transaction (a file is read whole at each run)."""
    with transaction(conn), registered(conn, "producer_file_rows", frame):
        conn.execute(f"DELETE FROM {table}")
        conn.execute(f"INSERT INTO {table} SELECT * FROM producer_file_rows")


@dataclasses.dataclass(frozen=True)
class ProducerFile:
    """A producer's CSV file loaded whole into its raw table at each run, validated row by row."""

    key: dg.AssetKey  # the asset that loads it
    path_of: Callable[[DataDir], Path]  # where the file is in the data folder
    table: str
    description: str
    columns: dict[str, Column]
    check_name: str  # the file's warning check
    noun: str  # what its rows are, for the logs ("theme corrections")
    known_sql: str  # the ids its rows may name (first column)
    # (path, known ids) -> the valid rows (dataclasses, fields in column order) and a problem per row left out
    parse: Callable[[Path, set[str]], tuple[Sequence[Any], list[str]]]


def build_file_asset(spec: ProducerFile, check_description: str) -> dg.AssetsDefinition:
    """The raw asset that loads ``spec``'s file at each run, after the day's snapshot, with its warning check."""

    @dg.asset(
        key=spec.key,
        deps=[RAW_SNAPSHOT_KEY],
        description=spec.description,
        group_name="raw",
        pool=WAREHOUSE_POOL,
        kinds={"python", "duckdb", "csv"},
        check_specs=[dg.AssetCheckSpec(spec.check_name, asset=spec.key, description=check_description)],
        metadata={"dagster/column_schema": table_schema(spec.columns)},
    )
    def load(context: dg.AssetExecutionContext, warehouse: DuckDBResource, data_dir: DataDir):
        with warehouse.get_connection() as conn:
            yield from load_file(context, conn, spec, spec.path_of(data_dir))

    return load


def load_file(
    context: dg.AssetExecutionContext, conn: duckdb.DuckDBPyConnection, spec: ProducerFile, path: Path
) -> Iterator[dg.MaterializeResult | dg.AssetCheckResult]:
    """Replace the table's rows by the file's valid ones (none without the file) and report the rows left out
    (a warning check); an unreadable file keeps the previous rows."""
    create_table(conn, spec.table, spec.description, spec.columns)
    known = {row[0] for row in conn.execute(spec.known_sql).fetchall()}
    try:
        rows, problems = spec.parse(path, known) if path.exists() else ([], [])
    except ProducerFileError as error:
        context.log.warning(f"{error}; the previous {spec.noun} are kept")
        yield from unreadable_file_results(spec.check_name, error)
        return
    frame = pl.DataFrame([dataclasses.astuple(row) for row in rows], schema=polars_schema(spec.columns), orient="row")
    replace_rows(conn, spec.table, frame)
    for problem in problems:
        context.log.warning(problem)
    context.log.info(f"{len(rows)} {spec.noun} from {path}")
    yield dg.MaterializeResult(metadata={"dagster/row_count": len(rows)})
    yield dg.AssetCheckResult(
        check_name=spec.check_name,
        passed=not problems,
        severity=dg.AssetCheckSeverity.WARN,
        metadata={"problems": dg.MetadataValue.md("\n".join(f"- {problem}" for problem in problems) or "none")},
    )


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
