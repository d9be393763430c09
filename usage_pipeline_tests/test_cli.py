"""The `usage-pipeline` command: exit codes and messages a data engineer can act on."""

from pathlib import Path

import pytest

from usage_pipeline import cli
from usage_pipeline.demo.portal_server import PortalServer, World
from usage_pipeline_tests.conftest import followed


@pytest.fixture
def environment(portal: PortalServer, world: World, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    organizations, datasets = followed(world)
    data_dir = tmp_path / "data"
    for name, value in {
        "USAGE_PORTAL_URL": portal.url,
        "USAGE_METRICS_API_URL": portal.url,
        "USAGE_ORGANIZATIONS": ",".join(organizations),
        "USAGE_DATASETS": ",".join(datasets),
        "USAGE_DATA_DIR": str(data_dir),
        "USAGE_START_DATE": "2026-11-01",
        "USAGE_LINK_CHECKS": "0",
        "USAGE_HTTP_MAX_ELAPSED": "2",
    }.items():
        monkeypatch.setenv(name, value)
    monkeypatch.delenv("DAGSTER_HOME", raising=False)
    return data_dir


def test_refresh_prints_a_summary(environment: Path, capsys: pytest.CaptureFixture) -> None:
    assert cli.main(["refresh", "--date", "2026-11-20"]) == 0
    out = capsys.readouterr().out
    assert "refresh 2026-11-20: 15 datasets (15 new)" in out
    assert "reporting.discussions: 110 rows" in out
    assert (environment / "dagster_home" / "dagster.yaml").exists()
    assert (environment / "published" / "parquet" / "reuses.parquet").exists()


def test_unknown_organization_exits_non_zero(
    environment: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture
) -> None:
    monkeypatch.setenv("USAGE_ORGANIZATIONS", "no-such-organization")
    assert cli.main(["refresh", "--date", "2026-11-20"]) == 1
    assert "'no-such-organization', which the portal does not know" in capsys.readouterr().err


def test_date_outside_the_partitions(environment: Path, capsys: pytest.CaptureFixture) -> None:
    assert cli.main(["refresh", "--date", "2026-10-01"]) == 1
    assert "USAGE_START_DATE" in capsys.readouterr().err


def test_unreachable_portal_gives_up_naming_the_url(
    environment: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture
) -> None:
    monkeypatch.setenv("USAGE_PORTAL_URL", "http://127.0.0.1:9")  # discard port: connection refused
    assert cli.main(["refresh", "--date", "2026-11-20"]) == 1
    err = capsys.readouterr().err
    assert "gave up on http://127.0.0.1:9/api/1/organizations/" in err


def test_backfill_fetches_history_and_reports_missing_days(environment: Path, capsys: pytest.CaptureFixture) -> None:
    assert cli.main(["backfill", "--start", "2026-11-01", "--end", "2026-11-10"]) == 0
    out = capsys.readouterr().out
    assert "whole monthly history fetched again" in out
    assert "0 dates of the range, 10 dates have none" in out


def test_bad_setting_is_named(
    environment: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture
) -> None:
    monkeypatch.setenv("USAGE_HTTP_CONCURRENCY", "lots")
    assert cli.main(["refresh"]) == 1
    assert "USAGE_HTTP_CONCURRENCY='lots' is not a number" in capsys.readouterr().err
