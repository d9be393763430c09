"""Discovery: register the followed datasets as `datasets` partitions."""

import asyncio

import dagster as dg

from usage_pipeline.ingest.crawl import discover
from usage_pipeline.ingest.partitions import datasets_partitions
from usage_pipeline.portal.resource import UdataResource


async def discover_datasets(udata: UdataResource) -> list[str]:
    """Ids of the configured organizations' datasets, then of the extra datasets."""
    async with udata.open() as api:
        return await discover(api, udata.organizations, udata.datasets)


def new_partitions_request(instance: dg.DagsterInstance, keys: list[str]) -> dg.AddDynamicPartitionsRequest | None:
    """The request adding the keys not registered yet, or None."""
    known = set(instance.get_dynamic_partitions(datasets_partitions.name))
    new = [key for key in keys if key not in known]
    return datasets_partitions.build_add_request(new) if new else None


@dg.sensor(minimum_interval_seconds=3600, default_status=dg.DefaultSensorStatus.RUNNING)
def dataset_discovery_sensor(context: dg.SensorEvaluationContext, udata: UdataResource) -> dg.SensorResult:
    """Every hour, list the configured organizations' datasets and register the new ones as partitions."""
    keys = asyncio.run(discover_datasets(udata))
    request = new_partitions_request(context.instance, keys)
    if request is None:
        return dg.SensorResult(skip_reason=f"no new dataset among {len(keys)} followed")
    context.log.info(f"registering {len(request.partition_keys)} new datasets")
    return dg.SensorResult(dynamic_partitions_requests=[request])
