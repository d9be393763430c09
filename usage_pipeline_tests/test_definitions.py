"""The code location loads; the schedule asks for one run a day; the sensor registers new datasets."""

import datetime as dt
from pathlib import Path
from zoneinfo import ZoneInfo

import dagster as dg
import pytest

from usage_pipeline.definitions import defs
from usage_pipeline.demo.portal_server import World
from usage_pipeline.ingest.partitions import datasets_partitions
from usage_pipeline.ingest.schedules import build_daily_schedule
from usage_pipeline.ingest.sensors import dataset_discovery_sensor
from usage_pipeline.portal.resource import UdataResource
from usage_pipeline.settings import Settings


def test_definitions_load_from_the_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("USAGE_DATA_DIR", str(tmp_path))
    monkeypatch.setenv("USAGE_START_DATE", "2026-10-01")
    definitions = defs()
    keys = {key.to_user_string() for key in definitions.resolve_all_asset_keys()}
    assert {"raw/udata_snapshot", "reporting/discussions", "reporting/dataset_usage_daily", "published/usage"} <= keys
    for key in definitions.resolve_all_asset_keys():
        spec = definitions.resolve_assets_def(key).specs_by_key[key]
        assert spec.description and spec.group_name, key
    raw = definitions.resolve_assets_def(dg.AssetKey(["raw", "udata_snapshot"]))
    assert isinstance(raw.partitions_def, dg.MultiPartitionsDefinition)
    dimensions = {dim.name: dim.partitions_def for dim in raw.partitions_def.partitions_defs}
    assert dimensions["dataset"] == datasets_partitions
    assert dimensions["date"].start.date() == dt.date(2026, 10, 1)
    assert definitions.resolve_job_def("daily_refresh") is not None
    schedule = definitions.resolve_schedule_def("daily_refresh_schedule")
    assert (schedule.cron_schedule, schedule.execution_timezone) == ("30 7 * * *", "Europe/Paris")


def test_schedule_requests_one_run_over_every_dataset_of_the_day() -> None:
    with dg.instance_for_test() as instance:
        context = dg.build_schedule_context(
            instance=instance,
            scheduled_execution_time=dt.datetime(2026, 11, 21, 7, 30, tzinfo=ZoneInfo("Europe/Paris")),
        )
        daily_refresh_schedule = build_daily_schedule("Europe/Paris")
        assert isinstance(daily_refresh_schedule(context), dg.SkipReason)
        instance.add_dynamic_partitions("datasets", ["aaa", "bbb", "ccc"])
        request = daily_refresh_schedule(context)
    assert isinstance(request, dg.RunRequest)
    assert request.run_key == "daily-2026-11-21"
    assert request.tags["dagster/asset_partition_range_start"] == "aaa|2026-11-21"
    assert request.tags["dagster/asset_partition_range_end"] == "ccc|2026-11-21"


def test_sensor_registers_new_datasets_once(settings: Settings, world: World) -> None:
    udata = UdataResource.from_settings(settings)
    resources = {"udata": udata, "data_dir": settings.paths}
    with dg.instance_for_test() as instance:
        context = dg.build_sensor_context(instance=instance, resources=resources)
        result = dataset_discovery_sensor(context)
        (request,) = result.dynamic_partitions_requests
        assert sorted(request.partition_keys) == sorted(world.entries)
        instance.add_dynamic_partitions("datasets", request.partition_keys)
        again = dataset_discovery_sensor(dg.build_sensor_context(instance=instance, resources=resources))
    assert not again.dynamic_partitions_requests
    assert "no new dataset" in again.skip_reason.skip_message
