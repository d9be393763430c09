"""A bad day never changes what BI tools read: blocking checks stop the run, soft ones only warn."""

import hashlib
from pathlib import Path

import duckdb
import pytest

from usage_pipeline import cli
from usage_pipeline.demo.portal_server import PortalServer, World
from usage_pipeline_tests.conftest import followed

BAROMETRE = "5ff5e6e99724cb8fff59a5be"
SIRENE = "5b7ffc618b4c4169d30727e0"


def fingerprint(published: Path) -> dict[str, str]:
    """Content hash of every published file (the DuckDB copy and the Parquet files)."""
    return {
        str(path.relative_to(published)): hashlib.sha256(path.read_bytes()).hexdigest()
        for path in sorted(published.glob("**/*"))
        if path.is_file() and "quality" not in path.parts
    }


def query(data_dir: Path, sql: str, database: str = "published/usage.duckdb") -> list[tuple]:
    with duckdb.connect(str(data_dir / database), read_only=True) as conn:
        return conn.execute(sql).fetchall()


@pytest.fixture
def data_dir(portal: PortalServer, world: World, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    organizations, datasets = followed(world)
    for name, value in {
        "USAGE_PORTAL_URL": portal.url,
        "USAGE_METRICS_API_URL": portal.url,
        "USAGE_ORGANIZATIONS": ",".join(organizations),
        "USAGE_DATASETS": ",".join(datasets),
        "USAGE_DATA_DIR": str(tmp_path / "data"),
        "USAGE_START_DATE": "2026-11-01",
        "USAGE_LINK_CHECKS": "0",
    }.items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("DAGSTER_HOME", str(tmp_path / "dagster_home"))
    return tmp_path / "data"


def test_negative_views_block_the_run_and_keep_the_published_copy(
    data_dir: Path, world: World, capsys: pytest.CaptureFixture
) -> None:
    assert cli.main(["refresh", "--date", "2026-11-20"]) == 0
    before = fingerprint(data_dir / "published")
    assert "usage.duckdb" in before and "parquet/dataset_usage_daily.parquet" in before

    world.entries[BAROMETRE]["dataset"]["metrics"]["views"] = -42
    capsys.readouterr()
    assert cli.main(["refresh", "--date", "2026-11-21"]) == 1
    err = capsys.readouterr().err
    assert "nothing was published" in err
    assert f"check dataset_snapshots_valid on raw/udata_snapshot failed for datasets ['{BAROMETRE}']" in err
    assert "'column': 'views', 'min_value': 0.0" in err and "'views': -42" in err

    assert fingerprint(data_dir / "published") == before
    warehouse = "warehouse.duckdb"
    snapshots = "SELECT count(*) FROM raw.dataset_snapshots WHERE snapshot_date = DATE '2026-11-21'"
    assert query(data_dir, snapshots, warehouse) == [(14,)]  # every other dataset landed
    quarantined = "SELECT dataset_id, failed_checks FROM quarantine.dataset_snapshots"
    assert query(data_dir, quarantined, warehouse) == [(BAROMETRE, ["dataset_snapshots_valid"])]
    # only the table the check is about is held back: the dataset's discussions of the day did land
    discussions = (
        f"SELECT count(*) FROM raw.discussions WHERE snapshot_date = '2026-11-21' AND dataset_id = '{BAROMETRE}'"
    )
    assert query(data_dir, discussions, warehouse) == [(4,)]
    docs = (data_dir / "published" / "quality" / "index.html").read_text(encoding="utf-8")
    assert "dataset_snapshots_valid" in docs

    world.entries[BAROMETRE]["dataset"]["metrics"]["views"] = 9400  # the portal is fixed: run the day again
    assert cli.main(["refresh", "--date", "2026-11-21"]) == 0
    daily = "SELECT views, views_delta FROM reporting.dataset_usage_daily WHERE dataset_id = ? AND date = '2026-11-21'"
    assert query(data_dir, daily.replace("?", f"'{BAROMETRE}'")) == [(9400, 85)]
    failures = query(
        data_dir,
        "SELECT check_name, severity, observed FROM reporting.quality_results "
        f"WHERE NOT passed AND dataset_id = '{BAROMETRE}' ORDER BY severity",
    )
    # the blocking failure, and the counter that went down (a soft warning) in the same rejected run
    assert [(name, severity) for name, severity, _ in failures] == [
        ("dataset_snapshots_valid", "ERROR"),
        ("counters_never_decrease", "WARN"),
    ]
    assert '"views": -42' in failures[0][2]


def test_a_reset_counter_warns_without_blocking(data_dir: Path, world: World) -> None:
    assert cli.main(["refresh", "--date", "2026-11-20"]) == 0
    world.entries[SIRENE]["dataset"]["metrics"]["views"] -= 1000
    assert cli.main(["refresh", "--date", "2026-11-21"]) == 0
    delta = (
        f"SELECT views_delta FROM reporting.dataset_usage_daily WHERE dataset_id = '{SIRENE}' AND date = '2026-11-21'"
    )
    assert query(data_dir, delta) == [(-1000,)]
    warnings = query(
        data_dir,
        "SELECT run_date, check_name, severity FROM reporting.quality_results WHERE dataset_id = "
        f"'{SIRENE}' AND NOT passed AND check_name = 'counters_never_decrease'",
    )
    assert [(str(date), name, severity) for date, name, severity in warnings] == [
        ("2026-11-21", "counters_never_decrease", "WARN")
    ]
