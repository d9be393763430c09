"""Publication for BI: a read-only DuckDB copy and one Parquet file per reporting table, swapped in atomically.

The copy is built in a temporary file beside the published one, then `os.replace`d over it: a BI tool
holding the old file keeps reading the old state, new readers get the new one, nobody waits for anybody.
"""

import os
import uuid
from pathlib import Path

import dagster as dg
import duckdb
from dagster_duckdb import DuckDBResource

from usage_pipeline.checks.validation import validator_for
from usage_pipeline.ingest.assets import WAREHOUSE_POOL
from usage_pipeline.models import SqlModel, comment_model
from usage_pipeline.warehouse import sql_string

PUBLISHED_SCHEMA = "reporting"
PUBLISHED_KEY = dg.AssetKey(["published", "usage"])
QUALITY_DOCS = "quality"  # Great Expectations Data Docs of the run's validations, under the published folder


def publish(conn: duckdb.DuckDBPyConnection, models: list[SqlModel], published_dir: Path) -> dict[str, int]:
    """Copy the ``models`` tables to ``published_dir``/usage.duckdb and parquet/; returns rows per table."""
    parquet_dir = published_dir / "parquet"
    parquet_dir.mkdir(parents=True, exist_ok=True)
    token = uuid.uuid4().hex[:12]
    database = published_dir / f".usage.duckdb.{token}.tmp"
    staged_parquet: list[tuple[Path, Path]] = []
    rows: dict[str, int] = {}
    try:
        conn.execute(f"ATTACH {sql_string(str(database))} AS publication")
        try:
            conn.execute(f"CREATE SCHEMA publication.{PUBLISHED_SCHEMA}")
            for model in models:
                target = f"publication.{PUBLISHED_SCHEMA}.{model.name}"
                conn.execute(f"CREATE TABLE {target} AS SELECT * FROM {model.table}")
                comment_model(conn, model, target)
                rows[model.name] = conn.execute(f"SELECT count(*) FROM {target}").fetchone()[0]
                parquet = parquet_dir / f".{model.name}.{token}.tmp"
                conn.execute(f"COPY {model.table} TO {sql_string(str(parquet))} (FORMAT parquet)")
                staged_parquet.append((parquet, parquet_dir / f"{model.name}.parquet"))
            conn.execute("CHECKPOINT publication")
        finally:
            conn.execute("DETACH publication")
        os.replace(database, published_dir / "usage.duckdb")
        for staged, final in staged_parquet:
            os.replace(staged, final)
    finally:
        for leftover in [database, *(staged for staged, _ in staged_parquet)]:
            leftover.unlink(missing_ok=True)
    return rows


class PublicationRefused(RuntimeError):
    """A reporting table's latest blocking check failed: the published copy keeps the last good state."""


def failing_reporting_checks(conn: duckdb.DuckDBPyConnection, assets: list[str]) -> list[str]:
    """Blocking checks whose latest evaluation failed on a reporting table.

    Blocking checks stop their own run; this also covers a run that rebuilds only some tables (the survey job)
    while another table still holds what failed in an earlier run.
    """
    rows = conn.execute(
        """
        SELECT asset, check_name, run_id FROM quality.check_results
        WHERE asset IN (SELECT unnest(?::VARCHAR[])) AND severity = 'ERROR' AND dataset_id IS NULL
        QUALIFY row_number() OVER (PARTITION BY asset, check_name ORDER BY evaluated_at DESC) = 1 AND NOT passed
        ORDER BY asset, check_name
        """,
        [assets],
    ).fetchall()
    return [f"{check_name} on {asset} (run {run_id})" for asset, check_name, run_id in rows]


def build_publish_asset(models: list[SqlModel], published_dir: Path) -> dg.AssetsDefinition:
    """The asset publishing every reporting model for BI tools."""
    reporting = [model for model in models if model.schema == PUBLISHED_SCHEMA]

    @dg.asset(
        key=PUBLISHED_KEY,
        deps=[model.asset_key for model in reporting],
        group_name="published",
        pool=WAREHOUSE_POOL,
        kinds={"duckdb", "parquet"},
        description=(
            f"The reporting tables for BI tools: {published_dir}/usage.duckdb (schema reporting, tables and "
            f"columns described in the catalog) and {published_dir}/parquet/<table>.parquet, replaced atomically; "
            f"the Data Docs of the run's quality checks in {published_dir}/{QUALITY_DOCS}/."
        ),
    )
    def published_usage(context: dg.AssetExecutionContext, warehouse: DuckDBResource) -> dg.MaterializeResult:
        with warehouse.get_connection() as conn:
            failing = failing_reporting_checks(conn, [model.asset_key.to_user_string() for model in reporting])
            if failing:
                raise PublicationRefused(
                    "nothing published: the latest evaluation of these blocking checks failed: " + "; ".join(failing)
                )
            rows = publish(conn, reporting, published_dir)
        validator_for(context.run_id).build_data_docs(published_dir / QUALITY_DOCS)
        context.log.info(f"published {len(rows)} tables to {published_dir}")
        return dg.MaterializeResult(
            metadata={"rows": dg.MetadataValue.json(rows), "path": dg.MetadataValue.path(str(published_dir))}
        )

    return published_usage
