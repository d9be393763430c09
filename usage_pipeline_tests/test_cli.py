"""The `usage-pipeline` command: exit codes and messages a data engineer can act on (on the generated world, and on
the sample where the world matters)."""

from pathlib import Path

import pytest

from usage_pipeline import cli
from usage_pipeline.demo.portal_server import PortalServer, World
from usage_pipeline_tests.conftest import GENERATED_ONLY, followed, portal_environment


@pytest.fixture
def environment(portal: PortalServer, world: World, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    data_dir = tmp_path / "data"
    environment = portal_environment(portal.url, data_dir, *followed(world)) | {"USAGE_HTTP_MAX_ELAPSED": "2"}
    for name, value in environment.items():
        monkeypatch.setenv(name, value)
    monkeypatch.delenv("DAGSTER_HOME", raising=False)
    return data_dir


def test_refresh_prints_a_summary(environment: Path, world: World, capsys: pytest.CaptureFixture) -> None:
    assert cli.main(["refresh", "--date", "2026-11-20"]) == 0
    out = capsys.readouterr().out
    datasets = len(world.entries)  # `followed` follows every dataset of the world
    assert f"refresh 2026-11-20: {datasets} datasets ({datasets} new)" in out
    discussions = sum(len(entry["discussions"]) for entry in world.entries.values())
    assert f"reporting.discussions: {discussions} rows" in out
    assert (environment / "dagster_home" / "dagster.yaml").exists()
    assert (environment / "published" / "parquet" / "reuses.parquet").exists()


@GENERATED_ONLY  # the world plays no part
def test_unknown_organization_exits_non_zero(
    environment: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture
) -> None:
    monkeypatch.setenv("USAGE_ORGANIZATIONS", "no-such-organization")
    assert cli.main(["refresh", "--strict", "--date", "2026-11-20"]) == 1
    err = capsys.readouterr().err
    assert "USAGE_ORGANIZATIONS names 'no-such-organization'" in err and "answers 404" in err


@GENERATED_ONLY  # the world plays no part
def test_date_outside_the_partitions(environment: Path, capsys: pytest.CaptureFixture) -> None:
    assert cli.main(["refresh", "--date", "2026-10-01"]) == 1
    assert "USAGE_START_DATE" in capsys.readouterr().err


@GENERATED_ONLY  # the world plays no part
def test_unreachable_portal_gives_up_naming_the_url(
    environment: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture
) -> None:
    monkeypatch.setenv("USAGE_PORTAL_URL", "http://127.0.0.1:9")  # discard port: connection refused
    assert cli.main(["refresh", "--date", "2026-11-20"]) == 1
    err = capsys.readouterr().err
    assert "gave up on http://127.0.0.1:9/api/1/organizations/" in err


@GENERATED_ONLY  # what is asserted holds for any world; the generated one has 24 months of history to fetch
def test_backfill_fetches_history_and_reports_missing_days(environment: Path, capsys: pytest.CaptureFixture) -> None:
    assert cli.main(["backfill", "--start", "2026-11-01", "--end", "2026-11-10"]) == 0
    out = capsys.readouterr().out
    assert "whole monthly history fetched again" in out
    assert "0 dates of the range, 10 dates have none" in out


@GENERATED_ONLY  # the world plays no part
def test_bad_setting_is_named(
    environment: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture
) -> None:
    monkeypatch.setenv("USAGE_HTTP_CONCURRENCY", "lots")
    assert cli.main(["refresh"]) == 1
    assert "USAGE_HTTP_CONCURRENCY='lots' is not a number" in capsys.readouterr().err
