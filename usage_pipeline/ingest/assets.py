"""The raw layer: one asset, partitioned by dataset and date, that lands the portal's JSON in DuckDB."""

import asyncio
import datetime as dt
from collections import defaultdict
from collections.abc import Callable

import dagster as dg
from dagster_duckdb import DuckDBResource

from usage_pipeline.ingest.crawl import Crawl, crawl
from usage_pipeline.ingest.partitions import DATASET_DIMENSION, DATE_DIMENSION
from usage_pipeline.ingest.records import raw_rows
from usage_pipeline.portal.client import ClientStats
from usage_pipeline.portal.resource import UdataResource
from usage_pipeline.warehouse import (
    RAW_TABLES,
    create_raw_tables,
    datasets_with_metrics_history,
    replace_partitions,
)

RAW_SNAPSHOT_KEY = dg.AssetKey(["raw", "udata_snapshot"])
WAREHOUSE_POOL = "usage_warehouse"  # every asset that writes the DuckDB file: limit it to 1 (single writer)
RAW_TABLE_ASSETS = {table.qualified: RAW_SNAPSHOT_KEY for table in RAW_TABLES}


class SnapshotConfig(dg.Config):
    """Run options of the raw snapshot."""

    metrics_since: str | None = None
    """Fetch the monthly metrics history from this month (YYYY-MM) for every dataset (used by `backfill`)."""


def keys_by_date(partition_keys: list[dg.MultiPartitionKey]) -> dict[dt.date, list[str]]:
    """Group (dataset, date) partition keys by date, datasets in partition order."""
    grouped: dict[dt.date, list[str]] = defaultdict(list)
    for key in partition_keys:
        parts = key.keys_by_dimension
        grouped[dt.date.fromisoformat(parts[DATE_DIMENSION])].append(parts[DATASET_DIMENSION])
    return dict(sorted(grouped.items()))


def write_snapshot(warehouse: DuckDBResource, result: Crawl, snapshot_date: dt.date, keys: list[str]) -> dict[str, int]:
    """Replace the partitions (``keys``, ``snapshot_date``) of every raw table in one transaction."""
    frames = raw_rows(result, snapshot_date, dt.datetime.now(dt.UTC))
    written: dict[str, int] = {}
    with warehouse.get_connection() as conn:
        conn.execute("BEGIN TRANSACTION")
        try:
            for table in RAW_TABLES:
                key_column = "organization_id" if table.name == "organizations" else "dataset_id"
                scope = list(result.organizations) if table.name == "organizations" else keys
                written[table.qualified] = replace_partitions(
                    conn, table, snapshot_date, key_column, scope, frames[table.name]
                )
            conn.execute("COMMIT")
        except BaseException:
            conn.execute("ROLLBACK")
            raise
    return written


def build_raw_snapshot_asset(partitions_def: dg.MultiPartitionsDefinition) -> dg.AssetsDefinition:
    """The raw snapshot asset over the given (dataset, date) partitions."""

    @dg.asset(
        key=RAW_SNAPSHOT_KEY,
        partitions_def=partitions_def,
        backfill_policy=dg.BackfillPolicy.single_run(),
        group_name="raw",
        pool=WAREHOUSE_POOL,
        kinds={"python", "duckdb"},
        description=(
            "What the udata portal and its metrics API say about each followed dataset on the run's logical "
            "date: counters and resources, discussions with all their messages, reuses, monthly visits and "
            "downloads, and the organizations with their members. Lands the JSON as returned in the raw.* "
            "tables; partition (dataset, D) is replaced whole when D is materialized again."
        ),
        metadata={"raw_tables": dg.MetadataValue.json({t.qualified: t.description for t in RAW_TABLES})},
    )
    def raw_udata_snapshot(
        context: dg.AssetExecutionContext,
        config: SnapshotConfig,
        udata: UdataResource,
        warehouse: DuckDBResource,
    ) -> dg.MaterializeResult:
        totals: dict[str, int] = defaultdict(int)
        gone: list[str] = []
        with warehouse.get_connection() as conn:
            create_raw_tables(conn)
        partition_keys = [partitions_def.get_partition_key_from_str(key) for key in context.partition_keys]
        for snapshot_date, keys in keys_by_date(partition_keys).items():
            context.log.info(f"{snapshot_date}: snapshot of {len(keys)} datasets")
            with warehouse.get_connection() as conn:
                with_history = datasets_with_metrics_history(conn, before=snapshot_date)
            result, stats = asyncio.run(_crawl(udata, keys, snapshot_date, with_history, config, context.log.info))
            written = write_snapshot(warehouse, result, snapshot_date, keys)
            context.log.info(
                f"{snapshot_date}: {stats.requests} requests ({stats.retries} retries, "
                f"{stats.bytes_received / 1e6:.1f} MB); rows written {written}"
            )
            for table, count in written.items():
                totals[table] += count
            gone += sorted(result.gone)
        return dg.MaterializeResult(
            metadata={
                "rows_written": dg.MetadataValue.json(dict(totals)),
                "gone_datasets": dg.MetadataValue.json(gone),
            }
        )

    return raw_udata_snapshot


async def _crawl(
    udata: UdataResource,
    keys: list[str],
    snapshot_date: dt.date,
    with_history: set[str],
    config: SnapshotConfig,
    log: Callable[[str], None],
) -> tuple[Crawl, ClientStats]:
    async with udata.open() as api:
        result = await crawl(
            api,
            organizations=udata.organizations,
            dataset_keys=keys,
            run_date=snapshot_date,
            with_metrics_history=with_history,
            metrics_since=config.metrics_since,
            log=log,
        )
        return result, api.client.stats
