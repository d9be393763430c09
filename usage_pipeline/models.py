"""The transformation layer in one Dagster step: every table of dbt_like_sql/ and the Python-built ones.

Each `dbt_like_sql/<schema>/<table>.sql` file (a `select` with a documented header) and each `PythonModel`
(a table built by Python code from other tables, such as the discussions' themes) is its own asset, with its
lineage (read from the SQL by sqlglot), description, column schema and checks; all of them are rebuilt by ONE
step, in dependency order, the way dagster-dbt's `@dbt_assets` runs a dbt project. Subsetting works: a job
selecting some tables runs only those. A table whose blocking check fails stops the tables built on it.
"""

import datetime as dt
import graphlib
import re
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import dagster as dg
import duckdb
import sqlglot
from dagster_duckdb import DuckDBResource
from sqlglot import exp

from usage_pipeline.checks.validation import (
    Check,
    Outcome,
    RunScope,
    Validator,
    record_outcomes,
    run_check,
    validator_for,
)
from usage_pipeline.data_dir import DataDir
from usage_pipeline.ingest.assets import RAW_SNAPSHOT_KEY, RAW_TABLE_ASSETS, WAREHOUSE_POOL
from usage_pipeline.ingest.partitions import run_date
from usage_pipeline.python_tables import PYTHON_TABLE_ASSETS
from usage_pipeline.warehouse import Column, comment_table, table_schema, transaction

SQL_DIR = Path(__file__).resolve().parent.parent / "dbt_like_sql"
QUALITY_RESULTS = "quality.check_results"
TRANSFORM_STEP = "transform"
_COLUMN_LINE = re.compile(r"^\s{2,}(\w+)\s+([A-Z][A-Z0-9_ ()\[\],]*?):\s*(.+)$")


class ModelError(ValueError):
    """A SQL model file is malformed; the message names the file."""


@dataclass(frozen=True)
class DocumentedTable:
    """What every model says of its table: where it lives, what a row is, its columns, the tables it reads."""

    schema: str
    name: str
    description: str
    grain: tuple[str, ...]
    columns: dict[str, Column]
    reads: frozenset[str]

    @property
    def table(self) -> str:
        return f"{self.schema}.{self.name}"

    @property
    def asset_key(self) -> dg.AssetKey:
        return dg.AssetKey([self.schema, self.name])

    def upstream_tables(self) -> set[str]:
        return set(self.reads)


@dataclass(frozen=True)
class SqlModel(DocumentedTable):
    """One `select` that becomes one table, documented by its header comment (``reads``: parsed from it once)."""

    path: Path
    sql: str

    @property
    def source(self) -> str:
        root = SQL_DIR.parent
        return str(self.path.relative_to(root) if self.path.is_relative_to(root) else self.path)


@dataclass(frozen=True)
class PythonModel(DocumentedTable):
    """A table built by Python from other tables of the warehouse (``reads``), documented like a SQL model.

    ``build`` creates or replaces the table inside the caller's transaction; it may read files of the data folder.
    """

    build: Callable[[duckdb.DuckDBPyConnection, DataDir], None] = field(compare=False)
    source: str = ""  # the module that builds it


Model = SqlModel | PythonModel


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
        tree = sqlglot.parse_one(sql, read="duckdb")
    except sqlglot.errors.ParseError as error:
        raise ModelError(f"{path}: not valid SQL: {error}") from None
    return SqlModel(
        schema=path.parent.name,
        name=path.stem,
        description=" ".join(description),
        grain=grain,
        columns=columns,
        reads=tables_read(tree),
        path=path,
        sql=sql,
    )


def tables_read(tree: exp.Expression) -> frozenset[str]:
    """The tables a parsed select reads (its CTE names excluded)."""
    ctes = {cte.alias_or_name for cte in tree.find_all(exp.CTE)}
    return frozenset(
        f"{table.db}.{table.name}" if table.db else table.name
        for table in tree.find_all(exp.Table)
        if table.name not in ctes or table.db
    )


def load_models(sql_dir: Path = SQL_DIR, python_models: tuple[PythonModel, ...] = ()) -> list[Model]:
    """Every model under ``sql_dir`` and the ``python_models``, each checked to read only raw tables or other
    models."""
    models: list[Model] = [*(parse_model(path) for path in sorted(sql_dir.glob("*/*.sql"))), *python_models]
    known = {model.table for model in models} | set(RAW_TABLE_ASSETS) | set(PYTHON_TABLE_ASSETS) | {QUALITY_RESULTS}
    for model in models:
        unknown = model.upstream_tables() - known
        if unknown:
            raise ModelError(f"{model.source}: reads {sorted(unknown)}, which no raw table or model provides")
    return models


def dependency_order(models: list[Model]) -> list[Model]:
    """``models`` so that each comes after the models whose tables it reads (and quality_results after every
    checked table); ties in name order, so that runs are reproducible."""
    by_key = {model.asset_key: model for model in models}
    by_table = producers(models)
    sorter = graphlib.TopologicalSorter(
        {
            model.asset_key: sorted(
                {key for table in model.upstream_tables() for key in by_table[table] if key in by_key}
                - {model.asset_key},
                key=lambda key: key.to_user_string(),
            )
            for model in sorted(models, key=lambda model: model.table)
        }
    )
    return [by_key[key] for key in sorter.static_order()]


def materialize_model(conn: duckdb.DuckDBPyConnection, model: Model, data_dir: DataDir) -> int:
    """(Re)build the model's table in one transaction, documented in the catalog; returns its row count."""
    with transaction(conn):
        conn.execute(f"CREATE SCHEMA IF NOT EXISTS {model.schema}")
        if isinstance(model, SqlModel):
            conn.execute(f"CREATE OR REPLACE TABLE {model.table} AS {model.sql}")
        else:
            model.build(conn, data_dir)
        actual = [row[0] for row in conn.execute(f"DESCRIBE {model.table}").fetchall()]
        if actual != list(model.columns):
            raise ModelError(
                f"{model.source}: the table has columns {actual} but its header documents {list(model.columns)}"
            )
        comment_model(conn, model, model.table)
        return conn.execute(f"SELECT count(*) FROM {model.table}").fetchone()[0]


def comment_model(conn: duckdb.DuckDBPyConnection, model: Model, table: str) -> None:
    """The model header's descriptions in the catalog, on ``table`` (the model's or a published copy)."""
    comment_table(conn, table, model.description, model.columns)


def producers(models: list[Model]) -> dict[str, set[dg.AssetKey]]:
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


def model_spec(model: Model, by_table: dict[str, set[dg.AssetKey]]) -> dg.AssetSpec:
    """The asset of one table: its lineage, description, grain, column schema and where it is defined."""
    deps = {key for table in model.upstream_tables() for key in by_table[table]} - {model.asset_key}
    return dg.AssetSpec(
        key=model.asset_key,
        deps=sorted(deps, key=lambda key: key.to_user_string()),
        description=model.description,
        group_name=model.schema,
        kinds={"duckdb", "sql" if isinstance(model, SqlModel) else "python"},
        metadata={
            "grain": ", ".join(model.grain),
            "defined_in": model.source,
            "dagster/column_schema": table_schema(model.columns),
        },
        skippable=True,
    )


def build_transform_asset(models: list[Model], checks: Callable[[Model], list[Check]]) -> dg.AssetsDefinition:
    """The one step that rebuilds every selected model in dependency order and runs their checks."""
    by_table = producers(models)
    ordered = dependency_order(models)
    checks_of = {model.table: checks(model) for model in ordered}

    @dg.multi_asset(
        name=TRANSFORM_STEP,
        specs=[model_spec(model, by_table) for model in ordered],
        check_specs=[
            dg.AssetCheckSpec(check.name, asset=model.asset_key, blocking=check.blocking, description=check.description)
            for model in ordered
            for check in checks_of[model.table]
        ],
        can_subset=True,
        pool=WAREHOUSE_POOL,
        description="Rebuilds the staging and reporting tables (dbt_like_sql/ and Python-built) in one step.",
    )
    def transform(
        context: dg.AssetExecutionContext, warehouse: DuckDBResource, data_dir: DataDir
    ) -> Iterator[dg.MaterializeResult | dg.AssetCheckResult]:
        scope = RunScope(context.run_id, run_date(context.run.tags) or dt.date.today())
        validator = validator_for(context.run_id)
        selected = [model for model in ordered if model.asset_key in context.selected_asset_keys]
        stopped: dict[str, str] = {}  # table -> the failed blocking check that stops it (its own or upstream)
        timings = {"models": 0.0, "checks": 0.0}
        with warehouse.get_connection() as conn:
            for model in selected:
                cause = next((stopped[t] for t in sorted(model.upstream_tables()) if t in stopped), None)
                if cause:
                    stopped[model.table] = cause
                    context.log.warning(f"{model.table} not rebuilt: {cause}")
                    continue
                started = time.perf_counter()
                rows = materialize_model(conn, model, data_dir)
                timings["models"] += time.perf_counter() - started
                outcomes = _check(conn, validator, context, model, checks_of[model.table], scope, timings)
                context.log.info(f"{model.table}: {rows} rows")
                yield dg.MaterializeResult(asset_key=model.asset_key, metadata={"dagster/row_count": rows})
                for outcome in outcomes:
                    yield outcome.result(model.asset_key)
                failed = [o.check.name for o in outcomes if not o.passed and o.check.blocking]
                if failed:
                    stopped[model.table] = f"blocking check {', '.join(failed)} failed on {model.table}"
        if stopped:
            validator.build_data_docs(data_dir.quality_docs)  # publication will not happen this run
        context.log.info(
            f"{len(selected) - len(stopped)} of {len(selected)} tables rebuilt in {timings['models']:.2f}s, "
            f"their checks in {timings['checks']:.2f}s"
        )

    return transform


def _check(
    conn: duckdb.DuckDBPyConnection,
    validator: Validator,
    context: dg.AssetExecutionContext,
    model: Model,
    checks: list[Check],
    scope: RunScope,
    timings: dict[str, float],
) -> list[Outcome]:
    """Run the selected checks of a model just rebuilt, record them, log what failed."""
    selected = context.selected_asset_check_keys
    started = time.perf_counter()
    wanted = [check for check in checks if dg.AssetCheckKey(model.asset_key, check.name) in selected]
    outcomes = [run_check(conn, validator, check, model.asset_key.to_user_string(), scope) for check in wanted]
    record_outcomes(conn, outcomes, scope)
    timings["checks"] += time.perf_counter() - started
    for outcome in outcomes:
        if not outcome.passed:
            context.log.warning(outcome.summary())
    return outcomes
