"""Shared fixtures: the real data.gouv.fr sample served by a local portal, settings and a Dagster home."""

import datetime as dt
import json
from collections.abc import Iterator
from pathlib import Path

import dagster as dg
import pytest

from usage_pipeline import cli
from usage_pipeline.demo.portal_server import PortalServer, World
from usage_pipeline.settings import Settings

FIXTURE = Path(__file__).resolve().parents[2] / "shared" / "fixtures" / "datagouv-sample.json"
START_DATE = dt.date(2026, 11, 1)


@pytest.fixture(scope="session")
def fixture_data() -> dict:
    """The real API responses, read straight from ../shared (never copied into the project)."""
    return json.loads(FIXTURE.read_text(encoding="utf-8"))


@pytest.fixture
def world() -> World:
    return World.from_fixture(FIXTURE)


@pytest.fixture
def portal(world: World) -> Iterator[PortalServer]:
    with PortalServer(world) as server:
        yield server


def followed(world: World) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """Half the sample followed through its organizations (by slug and by id), the rest as extra datasets."""
    ids = sorted(world.entries)
    organizations = [world.organization_of(key)["slug"] for key in ids[:4]]
    organizations += [world.organization_of(key)["id"] for key in ids[4:8]]
    return tuple(organizations), tuple(ids[8:])


def sample_settings(portal: PortalServer, world: World, data_dir: Path) -> Settings:
    """Settings following the sample served by ``portal`` (see `followed`), writing to ``data_dir``."""
    organizations, datasets = followed(world)
    return Settings(
        portal_url=portal.url,
        metrics_api_url=portal.url,
        organizations=organizations,
        datasets=datasets,
        data_dir=data_dir,
        start_date=START_DATE,
        http_max_elapsed=10,
        link_checks=False,  # the sample's reuses point to real sites: no traffic leaves this machine
    )


@pytest.fixture
def settings(portal: PortalServer, world: World, tmp_path: Path) -> Settings:
    return sample_settings(portal, world, tmp_path / "data")


@pytest.fixture
def instance(settings: Settings, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> dg.DagsterInstance:
    """A persistent Dagster instance in the test's own DAGSTER_HOME, as the CLI builds it."""
    monkeypatch.setenv("DAGSTER_HOME", str(tmp_path / "dagster_home"))
    return cli.dagster_instance(settings)
