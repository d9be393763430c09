"""dbt_like_sql/<schema>/<table>.sql -> one Dagster asset per table; dependencies parsed from the SQL."""

import datetime as dt
import re
from dataclasses import dataclass
from pathlib import Path

import dagster as dg
import duckdb
import sqlglot
from dagster_duckdb import DuckDBResource
from sqlglot import exp

from usage_pipeline.checks.validation import Check, RunScope, record_outcomes, run_check, validator_for
from usage_pipeline.data_dir import DataDir
from usage_pipeline.ingest.assets import RAW_SNAPSHOT_KEY, RAW_TABLE_ASSETS, WAREHOUSE_POOL
from usage_pipeline.ingest.partitions import run_date
from usage_pipeline.python_tables import PYTHON_TABLE_ASSETS
from usage_pipeline.warehouse import Column, comment_table, table_schema, transaction

SQL_DIR = Path(__file__).resolve().parent.parent / "dbt_like_sql"
QUALITY_RESULTS = "quality.check_results"
_COLUMN_LINE = re.compile(r"^\s{2,}(\w+)\s+([A-Z][A-Z0-9_ ()\[\],]*?):\s*(.+)$")


class ModelError(ValueError):
    """A SQL model file is malformed; the message names the file."""


@dataclass(frozen=True)
class SqlModel:
    """One `select` that becomes one table, documented by its header comment."""

    path: Path
    schema: str
    name: str
    description: str
    grain: tuple[str, ...]
    columns: dict[str, Column]
    sql: str

    @property
    def table(self) -> str:
        return f"{self.schema}.{self.name}"

    @property
    def asset_key(self) -> dg.AssetKey:
        return dg.AssetKey([self.schema, self.name])

    def upstream_tables(self) -> set[str]:
        """Tables the select reads, found by parsing it (CTE names excluded)."""
        tree = sqlglot.parse_one(self.sql, read="duckdb")
        ctes = {cte.alias_or_name for cte in tree.find_all(exp.CTE)}
        return {
            f"{table.db}.{table.name}" if table.db else table.name
            for table in tree.find_all(exp.Table)
            if table.name not in ctes or table.db
        }


def parse_model(path: Path) -> SqlModel:
    """Read a model file: `-- schema.table`, description, `-- grain: a, b`, `-- columns:`, `--   name TYPE: text`."""
    text = path.read_text(encoding="utf-8")
    header = [line[2:].rstrip() for line in text.splitlines() if line.startswith("--")]
    sql = "\n".join(line for line in text.splitlines() if not line.startswith("--")).strip().rstrip(";")
    expected = f"{path.parent.name}.{path.stem}"
    if not header or header[0].strip() != expected:
        raise ModelError(f"{path}: the first line must be the comment `-- {expected}`")
    description, grain, columns, in_columns = [], (), {}, False
    for line in header[1:]:
        if line.strip().startswith("grain:"):
            grain = tuple(part.strip() for part in line.split(":", 1)[1].split(",") if part.strip())
        elif line.strip() == "columns:":
            in_columns = True
        elif in_columns and (match := _COLUMN_LINE.match(line)):
            columns[match.group(1)] = Column(match.group(2).strip(), match.group(3).strip())
        elif not in_columns:
            description.append(line.strip())
        else:
            raise ModelError(f"{path}: cannot read the column line {line!r} (expected `--   name TYPE: description`)")
    if not grain or not columns:
        raise ModelError(f"{path}: the header needs a `-- grain: ...` line and a `-- columns:` list")
    try:
        sqlglot.parse_one(sql, read="duckdb")
    except sqlglot.errors.ParseError as error:
        raise ModelError(f"{path}: not valid SQL: {error}") from None
    return SqlModel(path, path.parent.name, path.stem, " ".join(description), grain, columns, sql)


def load_models(sql_dir: Path = SQL_DIR) -> list[SqlModel]:
    """Every model under ``sql_dir``, each checked to read only raw tables or other models."""
    models = [parse_model(path) for path in sorted(sql_dir.glob("*/*.sql"))]
    known = {model.table for model in models} | set(RAW_TABLE_ASSETS) | set(PYTHON_TABLE_ASSETS) | {QUALITY_RESULTS}
    for model in models:
        unknown = model.upstream_tables() - known
        if unknown:
            raise ModelError(f"{model.path}: reads {sorted(unknown)}, which no raw table or model provides")
    return models


def materialize_model(conn: duckdb.DuckDBPyConnection, model: SqlModel) -> int:
    """(Re)build the model's table in one transaction, documented in the catalog; returns its row count."""
    with transaction(conn):
        conn.execute(f"CREATE SCHEMA IF NOT EXISTS {model.schema}")
        conn.execute(f"CREATE OR REPLACE TABLE {model.table} AS {model.sql}")
        actual = [row[0] for row in conn.execute(f"DESCRIBE {model.table}").fetchall()]
        if actual != list(model.columns):
            raise ModelError(
                f"{model.path}: the select returns columns {actual} but the header documents {list(model.columns)}"
            )
        comment_model(conn, model, model.table)
        return conn.execute(f"SELECT count(*) FROM {model.table}").fetchone()[0]


def comment_model(conn: duckdb.DuckDBPyConnection, model: SqlModel, table: str) -> None:
    """The model header's descriptions in the catalog, on ``table`` (the model's or a published copy)."""
    comment_table(conn, table, model.description, model.columns)


def producers(models: list[SqlModel]) -> dict[str, set[dg.AssetKey]]:
    """The assets that write each table a model may read.

    quality.check_results is written by the checks of the raw asset and of every reporting model that does
    not read it itself.
    """
    checked = {model.asset_key for model in models if model.schema == "reporting"}
    readers = {model.asset_key for model in models if QUALITY_RESULTS in model.upstream_tables()}
    return (
        {table: {key} for table, key in (RAW_TABLE_ASSETS | PYTHON_TABLE_ASSETS).items()}
        | {model.table: {model.asset_key} for model in models}
        | {QUALITY_RESULTS: {RAW_SNAPSHOT_KEY} | (checked - readers)}
    )


def build_model_asset(model: SqlModel, all_models: list[SqlModel], checks: list[Check]) -> dg.AssetsDefinition:
    """The asset that rebuilds one model table from its upstream tables, then runs its checks."""
    by_table = producers(all_models)
    deps = sorted(
        {key for table in model.upstream_tables() for key in by_table[table]}, key=lambda key: key.to_user_string()
    )

    @dg.asset(
        key=model.asset_key,
        deps=deps,
        description=model.description,
        group_name=model.schema,
        pool=WAREHOUSE_POOL,
        kinds={"duckdb", "sql"},
        metadata={
            "grain": ", ".join(model.grain),
            "sql_file": str(model.path.relative_to(SQL_DIR.parent)),
            "dagster/column_schema": table_schema(model.columns),
        },
        check_specs=[
            dg.AssetCheckSpec(check.name, asset=model.asset_key, blocking=check.blocking, description=check.description)
            for check in checks
        ],
    )
    def _model(context: dg.AssetExecutionContext, warehouse: DuckDBResource, data_dir: DataDir):
        scope = RunScope(context.run_id, run_date(context.run.tags) or dt.date.today())
        validator = validator_for(context.run_id)
        with warehouse.get_connection() as conn:
            rows = materialize_model(conn, model)
            outcomes = [run_check(conn, validator, check, model.asset_key.to_user_string(), scope) for check in checks]
            record_outcomes(conn, outcomes, scope)
        context.log.info(f"{model.table}: {rows} rows")
        for outcome in outcomes:
            if not outcome.passed:
                context.log.warning(outcome.summary())
        if not all(outcome.passed for outcome in outcomes):
            validator.build_data_docs(data_dir.quality_docs)  # publication may not happen this run
        yield dg.MaterializeResult(metadata={"dagster/row_count": rows})
        for outcome in outcomes:
            yield outcome.result(model.asset_key)

    return _model
