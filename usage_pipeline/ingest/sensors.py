"""Discovery: register the followed datasets as `datasets` partitions."""

import asyncio
from pathlib import Path

import dagster as dg
import duckdb

from usage_pipeline.data_dir import DataDir
from usage_pipeline.ingest.crawl import Discovery, discover
from usage_pipeline.ingest.partitions import datasets_partitions
from usage_pipeline.portal.resource import UdataResource
from usage_pipeline.warehouse import remembered_ids


def published_memory(published_database: Path) -> dict[tuple[str, str], str]:
    """The ids the configured entries resolved to before (reporting.followed_entries of the published copy:
    readable while a run writes the warehouse); empty when nothing is published or the file cannot be read."""
    if not published_database.is_file():
        return {}
    try:
        with duckdb.connect(str(published_database), read_only=True) as conn:
            return remembered_ids(conn, "reporting.followed_entries")
    except duckdb.Error:
        return {}


async def discover_datasets(udata: UdataResource, data_dir: DataDir) -> Discovery:
    """Ids of the configured organizations' datasets, then of the extra datasets, and each entry's state."""
    async with udata.open() as api:
        return await discover(api, udata.organizations, udata.datasets, published_memory(data_dir.published_database))


def new_partitions_request(instance: dg.DagsterInstance, keys: list[str]) -> dg.AddDynamicPartitionsRequest | None:
    """The request adding the keys not registered yet, or None."""
    known = set(instance.get_dynamic_partitions(datasets_partitions.name))
    new = [key for key in keys if key not in known]
    return datasets_partitions.build_add_request(new) if new else None


@dg.sensor(minimum_interval_seconds=3600, default_status=dg.DefaultSensorStatus.RUNNING)
def dataset_discovery_sensor(
    context: dg.SensorEvaluationContext, udata: UdataResource, data_dir: DataDir
) -> dg.SensorResult:
    """Every hour, list the configured organizations' datasets and register the new ones as partitions.

    An entry of the settings that no longer resolves is logged and left out; the others are registered.
    """
    discovery = asyncio.run(discover_datasets(udata, data_dir))
    for entry in discovery.problems:
        context.log.warning(entry.describe())
    request = new_partitions_request(context.instance, discovery.keys)
    if request is None:
        return dg.SensorResult(skip_reason=f"no new dataset among {len(discovery.keys)} followed")
    context.log.info(f"registering {len(request.partition_keys)} new datasets")
    return dg.SensorResult(dynamic_partitions_requests=[request])
