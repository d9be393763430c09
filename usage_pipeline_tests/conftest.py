"""Shared fixtures: a portal world (generated, or the real data.gouv.fr sample) served locally, settings, Dagster.

Two worlds, one shape (`World`, served by `PortalServer`):

* ``generated``: `generate_world` with a fixed seed, always available;
* ``sample``: the real data.gouv.fr sample, a udata fixture file (``{"datasets": [entry, ...]}``) read in place from
  ``$USAGE_SAMPLE_PATH``. It is optional: the tests that need it are marked ``sample`` and skipped when the file
  is absent, or failed when ``USAGE_REQUIRE_SAMPLE=1`` (CI sets it, so that CI never skips them silently).

The `world` fixture (and so `portal`, `settings`, `instance`) runs a test once per world; `fixture_data` is the
sample's JSON, for the tests about the sample itself.
"""

import datetime as dt
import json
import os
from collections.abc import Iterable, Iterator
from pathlib import Path
from zoneinfo import ZoneInfo

import dagster as dg
import pytest

from usage_pipeline import cli
from usage_pipeline.demo.mail_server import MailCatcher
from usage_pipeline.demo.portal_server import PortalServer, World
from usage_pipeline.demo.world import generate_world
from usage_pipeline.insights.digest.delivery import SmtpServer
from usage_pipeline.settings import Settings

SAMPLE_ENV = "USAGE_SAMPLE_PATH"
REQUIRE_SAMPLE_ENV = "USAGE_REQUIRE_SAMPLE"
DEFAULT_SAMPLE = Path(__file__).resolve().parents[2] / "shared" / "fixtures" / "datagouv-sample.json"
SAMPLE_PATH = Path(os.environ.get(SAMPLE_ENV) or DEFAULT_SAMPLE).expanduser()
UDATA_FIXTURE = "https://github.com/opendatateam/udata/blob/master/udata/fixtures/results.json"
START_DATE = dt.date(2026, 11, 1)
PARIS = ZoneInfo("Europe/Paris")  # the default USAGE_TIMEZONE: the days and months of the tables
# The generated world as of the morning of the tests' first refresh date (2026-11-20): nothing in it is later.
GENERATED_TODAY = dt.date(2026, 11, 20)
GENERATED_SEED = 5  # 3 organizations x 5 datasets; every discussion status, reuses, datasets with several resources
GENERATED_ORGANIZATIONS, GENERATED_DATASETS_PER_ORGANIZATION = 3, 5
SAMPLE = "sample"
GENERATED = "generated"
# Parameters of a world fixture: the sample one carries the `sample` marker (skipped or failed without the file).
GENERATED_PARAM = pytest.param(GENERATED, id=GENERATED)
SAMPLE_PARAM = pytest.param(SAMPLE, id=SAMPLE, marks=pytest.mark.sample)
WORLD_PARAMS = (GENERATED_PARAM, SAMPLE_PARAM)
SAMPLE_MISSING = pytest.StashKey[bool]()  # set on a test failed because the sample is required and absent


def sample_missing() -> str | None:
    """Why the sample cannot be read (and how to get one), or None when it is there."""
    if SAMPLE_PATH.is_file():
        return None
    return (
        f"no data.gouv.fr sample at {SAMPLE_PATH}: set {SAMPLE_ENV} to a copy of udata's fixture file "
        f"udata/fixtures/results.json ({UDATA_FIXTURE})"
    )


def sample_required() -> bool:
    return os.environ.get(REQUIRE_SAMPLE_ENV, "").strip().lower() in {"1", "true", "yes", "on"}


def require_sample() -> None:
    """Skip the calling test when the sample is absent; fail it instead when USAGE_REQUIRE_SAMPLE=1."""
    reason = sample_missing()
    if reason is None:
        return
    if sample_required():
        pytest.fail(f"{REQUIRE_SAMPLE_ENV}=1 and {reason}", pytrace=False)
    pytest.skip(reason)


@pytest.hookimpl(tryfirst=True)
def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Mark `sample` every test reading the sample's JSON (before `-m` selects on markers)."""
    for item in items:
        if "fixture_data" in getattr(item, "fixturenames", ()) and not item.get_closest_marker("sample"):
            item.add_marker(pytest.mark.sample)


@pytest.hookimpl(tryfirst=True)
def pytest_runtest_setup(item: pytest.Item) -> None:
    """A `sample` test without the sample is skipped (failed with USAGE_REQUIRE_SAMPLE=1) before its fixtures run."""
    if item.get_closest_marker("sample"):
        item.stash[SAMPLE_MISSING] = sample_required() and sample_missing() is not None
        require_sample()


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo) -> Iterator[None]:
    """Report a test that required the absent sample as failed, not as an error of its setup."""
    report = yield
    if report.when == "setup" and report.failed and item.stash.get(SAMPLE_MISSING, False):
        report.when = "call"
    return report


@pytest.fixture(scope="session")
def fixture_data() -> dict:
    """The real API responses, read in place from $USAGE_SAMPLE_PATH (never copied into the project)."""
    require_sample()
    return json.loads(SAMPLE_PATH.read_text(encoding="utf-8"))


def generated_world() -> World:
    """The generated world of the tests: deterministic, as of the morning of GENERATED_TODAY."""
    return generate_world(
        GENERATED_ORGANIZATIONS, GENERATED_DATASETS_PER_ORGANIZATION, seed=GENERATED_SEED, today=GENERATED_TODAY
    )


def load_world(kind: str) -> World:
    """A fresh world of a kind, ``generated`` or ``sample`` (the latter skips or fails without the file)."""
    if kind == SAMPLE:
        require_sample()
        return World.from_fixture(SAMPLE_PATH)
    assert kind == GENERATED, kind
    return generated_world()


@pytest.fixture(params=WORLD_PARAMS)
def world(request: pytest.FixtureRequest) -> World:
    """A fresh world, free to mutate: the generated one, then the sample."""
    return load_world(request.param)


@pytest.fixture
def portal(world: World) -> Iterator[PortalServer]:
    with PortalServer(world) as server:
        yield server


def followed(world: World) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """Half the world followed through its organizations (by slug and by id), the rest as extra datasets."""
    ids = sorted(world.entries)
    organizations = [world.organization_of(key)["slug"] for key in ids[:4]]
    organizations += [world.organization_of(key)["id"] for key in ids[4:8]]
    return tuple(organizations), tuple(ids[8:])


def world_settings(portal: PortalServer, world: World, data_dir: Path) -> Settings:
    """Settings following the world served by ``portal`` (see `followed`), writing to ``data_dir``."""
    organizations, datasets = followed(world)
    return Settings(
        portal_url=portal.url,
        metrics_api_url=portal.url,
        organizations=organizations,
        datasets=datasets,
        data_dir=data_dir,
        start_date=START_DATE,
        http_max_elapsed=10,
        link_checks=False,  # reuses point to real sites: no traffic leaves this machine
    )


def portal_environment(
    portal_url: str, data_dir: Path, organizations: Iterable[str], datasets: Iterable[str]
) -> dict[str, str]:
    """The environment variables that make the `usage-pipeline` command follow a local portal."""
    return {
        "USAGE_PORTAL_URL": portal_url,
        "USAGE_METRICS_API_URL": portal_url,
        "USAGE_ORGANIZATIONS": ",".join(organizations),
        "USAGE_DATASETS": ",".join(datasets),
        "USAGE_DATA_DIR": str(data_dir),
        "USAGE_START_DATE": START_DATE.isoformat(),
        "USAGE_LINK_CHECKS": "0",
        "USAGE_LEAD_SOURCES": "",  # no lead search outside (test_reuse_leads.py runs them on local servers)
    }


@pytest.fixture
def settings(portal: PortalServer, world: World, tmp_path: Path) -> Settings:
    return world_settings(portal, world, tmp_path / "data")


@pytest.fixture
def instance(settings: Settings, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> dg.DagsterInstance:
    """A persistent Dagster instance in the test's own DAGSTER_HOME, as the CLI builds it."""
    monkeypatch.setenv("DAGSTER_HOME", str(tmp_path / "dagster_home"))
    return cli.dagster_instance(settings)


# What the tests pick in a world, computed from its JSON: no test names a dataset of one world only.


def producers(world: World, dataset_id: str) -> set[str]:
    """Ids of the users who answer for a dataset: the members of its organization."""
    return {member["user"]["id"] for member in world.organization_of(dataset_id).get("members", [])}


def discussion_status(world: World, dataset_id: str, discussion: dict) -> str:
    """closed; answered (the last message is a producer's); else awaiting_producer."""
    if discussion.get("closed"):
        return "closed"
    if discussion["discussion"][-1]["posted_by"]["id"] in producers(world, dataset_id):
        return "answered"
    return "awaiting_producer"


def counters_agree(entry: dict, tolerance: int = 2) -> bool:
    """The discussions counter matches the discussions listed (the sample lists at most 20 of them)."""
    return abs(entry["dataset"]["metrics"].get("discussions", 0) - len(entry["discussions"])) <= tolerance


def pick_dataset(
    world: World,
    *,
    resources: int = 1,
    discussions: int = 0,
    reuses: int = 0,
    awaiting: int = 0,
    agreeing: bool = False,
    besides: Iterable[str] = (),
) -> str:
    """The first dataset, in id order, with at least so many resources, discussions, reuses and discussions
    awaiting an answer (``agreeing``: its discussions counter matches the list), other than ``besides``."""
    excluded = set(besides)
    for key in sorted(world.entries):
        entry = world.entries[key]
        waiting = [d for d in entry["discussions"] if discussion_status(world, key, d) == "awaiting_producer"]
        if (
            key not in excluded
            and key not in world.deleted
            and len(entry["resources"]) >= resources
            and len(entry["discussions"]) >= discussions
            and len(entry["reuses"]) >= reuses
            and len(waiting) >= awaiting
            and (counters_agree(entry) or not agreeing)
        ):
            return key
    raise LookupError(
        f"no dataset with {resources} resources, {discussions} discussions ({awaiting} awaiting), {reuses} reuses "
        f"besides {sorted(excluded)}: the world does not suit the test (GENERATED_SEED in conftest.py?)"
    )


def busy_dataset(world: World) -> str:
    """A dataset with several resources, discussions (its counter in agreement) and a reuse."""
    return pick_dataset(world, resources=2, discussions=2, reuses=1, agreeing=True)


def most_viewed(world: World, besides: Iterable[str] = ()) -> str:
    """The most viewed dataset (ties broken by id), other than ``besides``."""
    excluded = set(besides)
    candidates = [key for key in sorted(world.entries) if key not in excluded]
    return max(candidates, key=lambda key: world.entries[key]["dataset"]["metrics"].get("views", 0))


# For a test whose subject does not depend on the world: run it once, on the generated world.
GENERATED_ONLY = pytest.mark.parametrize("world", [GENERATED_PARAM], indirect=True)


@pytest.fixture
def smtp() -> Iterator[tuple[SmtpServer, MailCatcher]]:
    """An SMTP server on 127.0.0.1 (aiosmtpd), and what it received."""
    with MailCatcher() as mail:
        yield SmtpServer("127.0.0.1", mail.port, False, None, None), mail
