"""Publication for BI: a read-only DuckDB copy and one Parquet file per reporting table, swapped in atomically.

The copy is built in a temporary file beside the published one, then `os.replace`d over it: a BI tool
holding the old file keeps reading the old state, new readers get the new one, nobody waits for anybody.
"""

from contextlib import ExitStack
from pathlib import Path

import dagster as dg
import duckdb
from dagster_duckdb import DuckDBResource

from usage_pipeline.checks.validation import validator_for
from usage_pipeline.data_dir import DataDir
from usage_pipeline.files import remove_leftovers, staged
from usage_pipeline.ingest.assets import WAREHOUSE_POOL
from usage_pipeline.models import Model, comment_model
from usage_pipeline.warehouse import sql_string

PUBLISHED_SCHEMA = "reporting"
PUBLISHED_KEY = dg.AssetKey(["published", "usage"])


def publish(conn: duckdb.DuckDBPyConnection, models: list[Model], published_dir: Path) -> dict[str, int]:
    """Copy the ``models`` tables to ``published_dir``/usage.duckdb and parquet/; returns rows per table.

    Every file is built beside its published version first; they replace the published ones only once all are
    complete (`files.staged`), so a failure leaves the previous publication whole.
    """
    parquet_dir = published_dir / "parquet"
    parquet_dir.mkdir(parents=True, exist_ok=True)
    for folder in (published_dir, parquet_dir, published_dir / "reports"):
        remove_leftovers(folder)  # of a publication killed mid-way
    rows: dict[str, int] = {}
    with ExitStack() as files:
        database = files.enter_context(staged(published_dir / "usage.duckdb"))
        conn.execute(f"ATTACH {sql_string(str(database))} AS publication")
        try:
            conn.execute(f"CREATE SCHEMA publication.{PUBLISHED_SCHEMA}")
            for model in models:
                target = f"publication.{PUBLISHED_SCHEMA}.{model.name}"
                conn.execute(f"CREATE TABLE {target} AS SELECT * FROM {model.table}")
                comment_model(conn, model, target)
                rows[model.name] = conn.execute(f"SELECT count(*) FROM {target}").fetchone()[0]
                parquet = files.enter_context(staged(parquet_dir / f"{model.name}.parquet"))
                conn.execute(f"COPY {model.table} TO {sql_string(str(parquet))} (FORMAT parquet)")
            conn.execute("CHECKPOINT publication")
        finally:
            conn.execute("DETACH publication")
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


def build_publish_asset(models: list[Model]) -> dg.AssetsDefinition:
    """The asset publishing every reporting model for BI tools."""
    reporting = [model for model in models if model.schema == PUBLISHED_SCHEMA]

    @dg.asset(
        key=PUBLISHED_KEY,
        deps=[model.asset_key for model in reporting],
        group_name="published",
        pool=WAREHOUSE_POOL,
        kinds={"duckdb", "parquet"},
        description=(
            "The reporting tables for BI tools: $USAGE_DATA_DIR/published/usage.duckdb (schema reporting, tables and "
            "columns described in the catalog) and published/parquet/<table>.parquet, replaced atomically; the Data "
            "Docs of the run's quality checks in published/quality/."
        ),
    )
    def published_usage(
        context: dg.AssetExecutionContext, warehouse: DuckDBResource, data_dir: DataDir
    ) -> dg.MaterializeResult:
        with warehouse.get_connection() as conn:
            failing = failing_reporting_checks(conn, [model.asset_key.to_user_string() for model in reporting])
            if failing:
                raise PublicationRefused(
                    "nothing published: the latest evaluation of these blocking checks failed: " + "; ".join(failing)
                )
            rows = publish(conn, reporting, data_dir.published)
        validator_for(context.run_id).build_data_docs(data_dir.quality_docs)
        context.log.info(f"published {len(rows)} tables to {data_dir.published}")
        return dg.MaterializeResult(
            metadata={"rows": dg.MetadataValue.json(rows), "path": dg.MetadataValue.path(str(data_dir.published))}
        )

    return published_usage
