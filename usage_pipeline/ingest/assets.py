"""The raw layer: one asset, partitioned by dataset and date, that lands the portal's JSON in DuckDB."""

import asyncio
import datetime as dt
import time
from collections.abc import Callable, Sequence

import dagster as dg
from dagster_duckdb import DuckDBResource

from usage_pipeline.checks.validation import Check, Outcome, RunScope, record_outcomes, run_check, validator_for
from usage_pipeline.data_dir import DataDir
from usage_pipeline.ingest.crawl import Crawl, crawl
from usage_pipeline.ingest.partitions import DATASET_DIMENSION, DATE_DIMENSION
from usage_pipeline.ingest.records import kept_keys, raw_rows
from usage_pipeline.portal.client import ClientStats
from usage_pipeline.portal.resource import UdataResource
from usage_pipeline.warehouse import (
    RAW_TABLES,
    RawTable,
    accept_incoming,
    create_warehouse_tables,
    datasets_with_metrics_history,
    remembered_ids,
    stage_incoming,
    transaction,
)

RAW_SNAPSHOT_KEY = dg.AssetKey(["raw", "udata_snapshot"])
WAREHOUSE_POOL = "usage_warehouse"  # every asset that writes the DuckDB file: limit it to 1 (single writer)
RAW_TABLE_ASSETS = {table.qualified: RAW_SNAPSHOT_KEY for table in RAW_TABLES}


class SnapshotConfig(dg.Config):
    """Run options of the raw snapshot."""

    full_metrics_history: bool = False
    """Fetch the whole monthly metrics history of every dataset again (used by `backfill`)."""


def run_partitions(partition_keys: list[dg.MultiPartitionKey]) -> tuple[dt.date, list[str]]:
    """The date and the datasets (in partition order) of a run; a run snapshots one date."""
    dates = {key.keys_by_dimension[DATE_DIMENSION] for key in partition_keys}
    if len(dates) != 1:
        raise ValueError(
            f"a run snapshots one date, this one covers {sorted(dates)}: the portal only tells today's counters, "
            "so launch one run per date (the schedule and `refresh` do)"
        )
    return dt.date.fromisoformat(dates.pop()), [key.keys_by_dimension[DATASET_DIMENSION] for key in partition_keys]


def replaced_keys(table: RawTable, result: Crawl, dataset_ids: Sequence[str]) -> list[str]:
    """The keys of ``table`` a run replaces for its date: its datasets, or the organizations and configured
    entries it asked about."""
    if table.key == "organization_id":
        return list(result.organizations)
    if table.key == "configured_as":
        return [entry.configured_as for entry in result.entries]
    if table.key == "subject":
        return [*dataset_ids, *result.organizations, *(entry.configured_as for entry in result.entries)]
    return list(dataset_ids)


def land_snapshot(
    warehouse: DuckDBResource,
    result: Crawl,
    scope: RunScope,
    checks: list[Check],
    log: Callable[[str], None],
    log_info: Callable[[str], None],
) -> tuple[dict[str, tuple[int, int]], list[Outcome]]:
    """Check the run's rows, then replace the partitions in one transaction.

    A dataset failing a blocking check keeps its previous rows in the table that check is about (its new rows
    there go to quarantine.*): bad discussions never cost the day's counters, which cannot be fetched later.
    Returns (accepted, quarantined) rows per raw table and the check outcomes.
    """
    frames = raw_rows(result, scope.run_date, scope.now)
    validator = validator_for(scope.run_id)
    with warehouse.get_connection() as conn, transaction(conn):
        for table in RAW_TABLES:
            stage_incoming(conn, table, frames[table.name])
        started = time.perf_counter()
        outcomes = [run_check(conn, validator, check, RAW_SNAPSHOT_KEY.to_user_string(), scope) for check in checks]
        log_info(f"{len(checks)} checks on {len(scope.dataset_ids)} datasets in {time.perf_counter() - started:.2f}s")
        rejected: dict[str, dict[str, list[str]]] = {table.name: {} for table in RAW_TABLES}
        for outcome in outcomes:
            if not outcome.passed:
                log(outcome.summary())
                if outcome.check.blocking and outcome.check.raw_table:
                    for dataset_id in outcome.failing_datasets:
                        rejected[outcome.check.raw_table].setdefault(dataset_id, []).append(outcome.check.name)
        kept = kept_keys(result)
        written = {
            table.qualified: accept_incoming(
                conn,
                table,
                {scope.run_date: replaced_keys(table, result, scope.dataset_ids)},
                rejected[table.name],
                scope.run_id,
                kept.get(table.name, ()),
            )
            for table in RAW_TABLES
        }
        record_outcomes(conn, outcomes, scope)
    return written, outcomes


def build_raw_snapshot_asset(partitions_def: dg.MultiPartitionsDefinition, checks: list[Check]) -> dg.AssetsDefinition:
    """The raw snapshot asset over the given (dataset, date) partitions, with its in-step checks."""

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
            "tables once the checks have passed on it; partition (dataset, D) is replaced whole when D is "
            "materialized again. A dataset failing a blocking check keeps its previous rows (the new ones go "
            "to quarantine.*) and nothing downstream is rebuilt or published in that run."
        ),
        metadata={"raw_tables": dg.MetadataValue.json({t.qualified: t.description for t in RAW_TABLES})},
        check_specs=[
            dg.AssetCheckSpec(
                check.name, asset=RAW_SNAPSHOT_KEY, blocking=check.blocking, description=check.description
            )
            for check in checks
        ],
    )
    def raw_udata_snapshot(
        context: dg.AssetExecutionContext,
        config: SnapshotConfig,
        udata: UdataResource,
        warehouse: DuckDBResource,
        data_dir: DataDir,
    ):
        snapshot_date, keys = run_partitions(
            [partitions_def.get_partition_key_from_str(key) for key in context.partition_keys]
        )
        context.log.info(f"{snapshot_date}: snapshot of {len(keys)} datasets")
        with warehouse.get_connection() as conn:
            create_warehouse_tables(conn)
            with_history = datasets_with_metrics_history(conn, before=snapshot_date)
            remembered = remembered_ids(conn)
        result, stats = asyncio.run(
            _crawl(udata, keys, snapshot_date, with_history, remembered, config, context.log.info)
        )
        for entry in result.entries:
            if entry.status != "active":
                context.log.warning(entry.describe())
        for failure in result.failures:
            context.log.warning(
                f"not fetched, previous rows kept: {failure.part} of {failure.subject}: {failure.error}"
            )
        context.log.info(
            f"{stats.requests} requests ({stats.retries} retries, {stats.bytes_received / 1e6:.1f} MB received)"
        )
        scope = RunScope(context.run_id, snapshot_date, tuple(keys))
        written, outcomes = land_snapshot(warehouse, result, scope, checks, context.log.warning, context.log.info)
        if not all(outcome.passed for outcome in outcomes):
            validator_for(context.run_id).build_data_docs(data_dir.quality_docs)  # publication may not happen this run
        rejected = sorted({d for o in outcomes if o.check.blocking for d in o.failing_datasets})
        context.log.info(f"rows (accepted, quarantined) per raw table: {written}")
        yield dg.MaterializeResult(
            metadata={
                "rows_written": dg.MetadataValue.json({table: list(counts) for table, counts in written.items()}),
                "gone_datasets": dg.MetadataValue.json(sorted(result.gone)),
                "entries_not_active": dg.MetadataValue.json(
                    [entry.describe() for entry in result.entries if entry.status != "active"]
                ),
                "parts_not_fetched": dg.MetadataValue.json(
                    [
                        f"{failure.part} of {failure.subject}: {failure.url} {failure.http_status}"
                        for failure in result.failures
                    ][:50]
                ),
                "rejected_datasets": dg.MetadataValue.json(rejected),
                "requests": dg.MetadataValue.int(stats.requests),
            }
        )
        for outcome in outcomes:
            yield outcome.result(RAW_SNAPSHOT_KEY)

    return raw_udata_snapshot


async def _crawl(
    udata: UdataResource,
    keys: list[str],
    snapshot_date: dt.date,
    with_history: set[str],
    remembered: dict[tuple[str, str], str],
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
            full_metrics_history=config.full_metrics_history,
            configured_datasets=udata.datasets,
            remembered=remembered,
            log=log,
        )
        return result, api.client.stats
