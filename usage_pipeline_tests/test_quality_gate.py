"""A bad day never changes what BI tools read: blocking checks stop the run, soft ones only warn.

One scenario per world (generated, then the sample), shared by the tests: day 1 is refreshed; on day 2 the portal
gives negative views for one dataset (the run is blocked), then it is fixed while another dataset's views counter
is reset (the run goes through with a warning).
"""

import contextlib
import hashlib
import io
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import duckdb
import pytest

from usage_pipeline import cli
from usage_pipeline.demo.portal_server import PortalServer, World
from usage_pipeline_tests.conftest import (
    WORLD_PARAMS,
    busy_dataset,
    followed,
    load_world,
    most_viewed,
    portal_environment,
)

DAY_1, DAY_2 = "2026-11-20", "2026-11-21"
WAREHOUSE = "warehouse.duckdb"


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


def refresh(date: str) -> tuple[int, str]:
    """`usage-pipeline refresh --date`: its exit code and what it wrote to stderr."""
    err = io.StringIO()
    with contextlib.redirect_stderr(err):
        code = cli.main(["refresh", "--date", date])
    return code, err.getvalue()


@dataclass
class Gate:
    """What the scenario saw: each run's exit code, and the files and tables right after the blocked run."""

    world: World
    data_dir: Path
    target: str  # negative views in the blocked run, fixed in the next one
    other: str  # its views counter reset in the run that went through
    day_1_views: dict[str, int]
    exits: list[int]
    blocked_err: str
    published_after_day_1: dict[str, str]
    published_after_block: dict[str, str]
    landed_after_block: list[tuple]
    quarantined_after_block: list[tuple]
    target_discussions_after_block: list[tuple]
    quality_docs_after_block: str


@pytest.fixture(scope="module", params=WORLD_PARAMS)
def gate(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Gate]:
    world = load_world(request.param)
    target = busy_dataset(world)
    other = most_viewed(world, besides=[target])
    root = tmp_path_factory.mktemp(f"gate_{request.param}")
    data_dir = root / "data"
    organizations, datasets = followed(world)
    with PortalServer(world) as portal, pytest.MonkeyPatch.context() as env:
        environment = portal_environment(portal.url, data_dir, organizations, datasets)
        for name, value in (environment | {"DAGSTER_HOME": str(root / "dagster_home")}).items():
            env.setenv(name, value)
        day_1_views = {key: entry["dataset"]["metrics"]["views"] for key, entry in world.entries.items()}
        exits = [refresh(DAY_1)[0]]
        published_after_day_1 = fingerprint(data_dir / "published")

        world.entries[target]["dataset"]["metrics"]["views"] = -42
        code, blocked_err = refresh(DAY_2)
        exits.append(code)
        snapshots = f"SELECT dataset_id FROM raw.dataset_snapshots WHERE snapshot_date = DATE '{DAY_2}'"
        discussions = f"SELECT discussion_id FROM raw.discussions WHERE snapshot_date = '{DAY_2}' AND dataset_id = "
        gate = Gate(
            world=world,
            data_dir=data_dir,
            target=target,
            other=other,
            day_1_views=day_1_views,
            exits=exits,
            blocked_err=blocked_err,
            published_after_day_1=published_after_day_1,
            published_after_block=fingerprint(data_dir / "published"),
            landed_after_block=query(data_dir, snapshots, WAREHOUSE),
            quarantined_after_block=query(
                data_dir, "SELECT dataset_id, failed_checks FROM quarantine.dataset_snapshots", WAREHOUSE
            ),
            target_discussions_after_block=query(data_dir, f"{discussions}'{target}'", WAREHOUSE),
            quality_docs_after_block=(data_dir / "published" / "quality" / "index.html").read_text(encoding="utf-8"),
        )

        world.entries[target]["dataset"]["metrics"]["views"] = day_1_views[target] + 85  # the portal is fixed
        world.entries[other]["dataset"]["metrics"]["views"] -= 1000  # and resets a counter
        exits.append(refresh(DAY_2)[0])
        yield gate


def test_negative_views_block_the_run_and_keep_the_published_copy(gate: Gate) -> None:
    target, world = gate.target, gate.world
    assert gate.exits == [0, 1, 0]
    before = gate.published_after_day_1
    assert "usage.duckdb" in before and "parquet/dataset_usage_daily.parquet" in before

    err = gate.blocked_err
    assert "nothing was published" in err
    assert f"check dataset_snapshots_valid on raw/udata_snapshot failed for datasets ['{target}']" in err
    assert "'column': 'views', 'min_value': 0.0" in err and "'views': -42" in err
    assert gate.published_after_block == before
    assert sorted(key for (key,) in gate.landed_after_block) == sorted(set(world.entries) - {target})
    assert gate.quarantined_after_block == [(target, ["dataset_snapshots_valid"])]
    # only the table the check is about is held back: the dataset's discussions of the day did land
    landed = sorted(key for (key,) in gate.target_discussions_after_block)
    assert landed == sorted(discussion["id"] for discussion in world.entries[target]["discussions"])
    assert landed  # the target has discussions: the assertion above means something
    assert "dataset_snapshots_valid" in gate.quality_docs_after_block

    # the portal was fixed and the day run again
    daily = (
        "SELECT views, views_delta FROM reporting.dataset_usage_daily "
        f"WHERE dataset_id = '{target}' AND date = '{DAY_2}'"
    )
    assert query(gate.data_dir, daily) == [(gate.day_1_views[target] + 85, 85)]
    failures = query(
        gate.data_dir,
        "SELECT check_name, severity, observed FROM reporting.quality_results "
        f"WHERE NOT passed AND dataset_id = '{target}' ORDER BY severity",
    )
    # the blocking failure, and the counter that went down (a soft warning) in the same rejected run
    assert [(name, severity) for name, severity, _ in failures] == [
        ("dataset_snapshots_valid", "ERROR"),
        ("counters_never_decrease", "WARN"),
    ]
    assert '"views": -42' in failures[0][2]


def test_a_reset_counter_warns_without_blocking(gate: Gate) -> None:
    other = gate.other
    assert gate.exits[-1] == 0
    delta = f"SELECT views_delta FROM reporting.dataset_usage_daily WHERE dataset_id = '{other}' AND date = '{DAY_2}'"
    assert query(gate.data_dir, delta) == [(-1000,)]
    warnings = query(
        gate.data_dir,
        "SELECT run_date, check_name, severity FROM reporting.quality_results WHERE dataset_id = "
        f"'{other}' AND NOT passed AND check_name = 'counters_never_decrease'",
    )
    assert [(str(date), name, severity) for date, name, severity in warnings] == [
        (DAY_2, "counters_never_decrease", "WARN")
    ]
