"""The Opendatasoft client against the local ODS server: counters, aggregated monitoring, keys and reuses."""

import asyncio
import datetime as dt
import logging
from collections import Counter
from collections.abc import Awaitable, Callable, Iterator
from typing import Any, TypeVar

import pytest

from usage_pipeline.demo.ods_server import (
    BROWSE_ANALYTICS,
    DEMO_ANALYTICS_KEY,
    OdsServer,
    OdsWorld,
    generate_ods_world,
)
from usage_pipeline.own_portals.ods import DOWNLOAD_APIS, DailyUsage, MonitoringSkipped, OdsPortal, OwnPortalError
from usage_pipeline.portal.client import PortalClient

T = TypeVar("T")
NAME = "ods-test"
DOMAIN = "data.exemple.fr"
PAGE = f"https://{DOMAIN}/explore/dataset"
ANALYTICS_KEY = "s3cret-analytique-KEY42"
READER_KEY = "s3cret-lecture-KEY43"
EXPIRED_KEY = "s3cret-expiree-KEY44"
RETENTION = dt.date(2026, 11, 3)
D1, D2, D3 = dt.date(2026, 11, 3), dt.date(2026, 11, 4), dt.date(2026, 11, 6)
SINCE, UNTIL = dt.date(2026, 11, 1), dt.date(2026, 11, 5)
AIR, VELO = "qualite-de-l-air", "comptages-velo"
COUNTERS = {"download_count": 1520, "api_call_count": 48210, "reuse_count": 2, "popularity_score": 12.7}


def seeded_world() -> OdsWorld:
    """Four datasets (one restricted, one without counters), monitoring around a retention cut, three reuses."""
    world = OdsWorld(
        public_domain=DOMAIN,
        retention_start=RETENTION,
        keys={ANALYTICS_KEY: frozenset({BROWSE_ANALYTICS}), READER_KEY: frozenset()},
        expired_keys={EXPIRED_KEY},
    )
    world.add_dataset(AIR, "Qualité de l'air", modified="2026-10-30T08:00:00+00:00", counters=COUNTERS,
                      dcat_identifier=f"{PAGE}/{AIR}/")  # fmt: skip
    world.add_dataset(VELO, "Comptages vélo", counters={"download_count": 7, "api_call_count": 99})
    world.add_dataset("budget-interne", "Budget interne", visibility="restricted", counters={"download_count": 1})
    world.add_dataset("sans-compteurs", "Jeu sans compteurs", counters=None)
    calls = world.record_calls
    calls(AIR, dt.date(2026, 11, 2), "download_dataset", 100)  # archived: before the retention start
    calls(AIR, D1, "dataset_lookup", 5, referer=f"{PAGE}/{AIR}/information/")  # view, human
    calls(AIR, D1, "records_index", 3, referer=f"{PAGE}/{AIR}/table/?sort=date")  # view, human
    calls(AIR, D1, "records_index", 7)  # api, human
    calls(AIR, D1, "records_index", 11, bot=True, user_agent="Googlebot/2.1")  # api, bot
    calls(AIR, D1, "records_index", 2, referer="https://blog.example.org/air")  # api: not a portal page
    calls(AIR, D1, "download_dataset_attachment", 6)  # api: attachments are counted apart (docs/opendatasoft.md)
    calls(AIR, D1, "download_dataset", 4, referer=f"{PAGE}/{AIR}/export/")  # download, even from a page
    calls(AIR, D1, "download_dataset_records", 2)  # download
    calls(AIR, D1, "download_dataset_alternative_export", 1, bot=True)  # download, bot
    calls(AIR, D1, "export_dataset", 3)  # download
    calls(AIR, D1, "records_index", 8, in_error=False, api_type="ods_v2.0")  # api, human
    calls(VELO, D1, "records_index", 4, bot=True, referer=f"{PAGE}/{VELO}/map/")  # view, bot
    calls(AIR, D2, "dataset_lookup", 1, referer=f"{PAGE}/{AIR}/")  # view, human
    calls(VELO, D2, "export_dataset", 2)  # download
    calls(VELO, D3, "records_index", 9)  # after `until`
    calls("ods-api-monitoring", D1, "records_index", 5)  # monitoring reads: not a producer dataset
    calls(None, D1, "datasets_index", 4)  # catalog listing: no dataset
    world.reuses = [
        {"id": "r1", "title": "Carte de la pollution", "url": "https://carto.example.org", "thumbnail": None,
         "description": "Carte", "created_at": "2026-05-01T10:00:00+00:00", "dataset": {"id": AIR, "title": "Air"},
         "user": {"first_name": "Léa", "last_name": "Martin", "username": "lea-martin"}},
        {"id": "r2", "title": "Tableau de bord air", "url": "https://tdb.example.org", "thumbnail": None,
         "description": "TDB", "created_at": "2026-09-01T10:00:00+00:00", "dataset": {"id": AIR, "title": "Air"},
         "user": {"first_name": "Hugo", "last_name": "Dubois", "username": "hugo-dubois"}},
        {"id": "r3", "title": "Pistes cyclables", "url": "https://velo.example.org", "thumbnail": None,
         "description": "Vélo", "created_at": "2026-07-01T10:00:00+00:00", "dataset": {"id": VELO, "title": "Vélo"},
         "user": {"first_name": "Inès", "last_name": "Moreau", "username": "ines-moreau"}},
    ]  # fmt: skip
    return world


EXPECTED = {
    (AIR, D1, "view", False): 8,
    (AIR, D1, "api", False): 7 + 2 + 6 + 8,
    (AIR, D1, "api", True): 11,
    (AIR, D1, "download", False): 4 + 2 + 3,
    (AIR, D1, "download", True): 1,
    (VELO, D1, "view", True): 4,
    (AIR, D2, "view", False): 1,
    (VELO, D2, "download", False): 2,
}


@pytest.fixture
def world() -> OdsWorld:
    return seeded_world()


@pytest.fixture
def server(world: OdsWorld) -> Iterator[OdsServer]:
    with OdsServer(world) as running:
        yield running


def run(server: OdsServer, key: str | None, call: Callable[[OdsPortal], Awaitable[T]], domain: str = DOMAIN) -> T:
    """Run `call` on a portal bound to `server` with `key`, through a fresh PortalClient."""

    async def main() -> T:
        async with PortalClient(max_elapsed=2) as client:
            return await call(OdsPortal(client, server.url, key, NAME, public_domain=domain))

    return asyncio.run(main())


def as_dict(rows: list[DailyUsage]) -> dict[tuple[str, dt.date, str, bool], int]:
    return {(row.portal_dataset_id, row.day, row.kind, row.is_bot): row.calls for row in rows}


def test_catalog_with_a_key_has_every_dataset_and_its_counters(server: OdsServer) -> None:
    rows = {row["dataset_id"]: row for row in run(server, ANALYTICS_KEY, lambda portal: portal.catalog())}
    assert set(rows) == {AIR, VELO, "budget-interne", "sans-compteurs"}
    air = rows[AIR]
    assert {key: air[key] for key in COUNTERS} == COUNTERS
    assert air["title"] == air["metas"]["default.title"] == "Qualité de l'air"
    assert air["modified"] == air["metas"]["default.modified"] == "2026-10-30T08:00:00+00:00"
    assert air["dcat_identifier"] == air["explore_url"] == f"{PAGE}/{AIR}/"
    assert rows[VELO]["reuse_count"] is None and rows[VELO]["popularity_score"] is None
    assert all(rows["sans-compteurs"][key] is None for key in COUNTERS)
    catalog_calls = [request for request in server.requests if request.label == "catalog"]
    assert catalog_calls and all(request.params["include_app_metas"] == ["true"] for request in catalog_calls)
    assert all(request.with_key and "apikey" not in request.params for request in server.requests)


def test_catalog_pages_through_more_than_one_hundred_datasets(server: OdsServer, world: OdsWorld) -> None:
    for number in range(230):
        world.add_dataset(f"jeu-{number:03d}", f"Jeu {number}", counters={"download_count": number})
    rows = run(server, None, lambda portal: portal.catalog())
    assert len(rows) == 233  # the restricted dataset is not public
    assert len({row["dataset_id"] for row in rows}) == 233
    assert [request.params["offset"] for request in server.requests] == [["0"], ["100"], ["200"]]


def test_catalog_without_a_key_shows_public_datasets_with_counters(server: OdsServer) -> None:
    rows = {row["dataset_id"]: row for row in run(server, None, lambda portal: portal.catalog())}
    assert set(rows) == {AIR, VELO, "sans-compteurs"}
    assert rows[AIR]["download_count"] == 1520
    assert not any(request.with_key for request in server.requests)


def test_monitoring_is_aggregated_by_the_portal_with_exports_and_group_by(server: OdsServer) -> None:
    rows, first_day = run(server, ANALYTICS_KEY, lambda portal: portal.monitoring(SINCE, UNTIL))
    assert as_dict(rows) == EXPECTED
    assert len(rows) == len(as_dict(rows))  # one row per dataset × day × kind × bot flag
    labels = Counter(request.label for request in server.requests)
    assert labels == Counter({"monitoring_exports": 3})  # never the raw records
    grouped = [request for request in server.requests if "group_by" in request.params]
    assert len(grouped) == 2
    for request in grouped:
        assert request.path == "/api/explore/v2.1/monitoring/datasets/ods-api-monitoring/exports/json"
        assert request.params["group_by"] == ["dataset_id, date_format(timestamp, 'yyyy-MM-dd') as day, bot, api"]
        assert request.params["select"] == ["count(*) as calls"]
        assert request.params["timezone"] == ["UTC"]
        assert request.with_key
    totals: Counter[str] = Counter()
    for row in rows:
        totals[f"{row.kind}/{'bot' if row.is_bot else 'human'}"] += row.calls
    assert totals == {"view/human": 9, "view/bot": 4, "api/human": 23, "api/bot": 11, "download/human": 11,
                      "download/bot": 1}  # fmt: skip
    assert first_day == RETENTION


def test_retention_cut_is_reported_and_archived_days_are_absent(server: OdsServer) -> None:
    rows, first_day = run(server, ANALYTICS_KEY, lambda portal: portal.monitoring(dt.date(2026, 11, 2), D1))
    assert first_day == RETENTION > dt.date(2026, 11, 2)  # the caller records the gap 2026-11-02
    assert {row.day for row in rows} == {D1}
    rows, first_day = run(server, ANALYTICS_KEY, lambda portal: portal.monitoring(D2, D3))
    assert first_day is not None and first_day <= D2  # no gap
    assert as_dict(rows) == {
        (AIR, D2, "view", False): 1,
        (VELO, D2, "download", False): 2,
        (VELO, D3, "api", False): 9,
    }


def test_monitoring_of_an_empty_portal_has_no_first_day(server: OdsServer, world: OdsWorld) -> None:
    world.monitoring.clear()
    assert run(server, ANALYTICS_KEY, lambda portal: portal.monitoring(SINCE, UNTIL)) == ([], None)


@pytest.mark.parametrize("method", ["catalog", "monitoring", "reuses"])
def test_an_expired_key_is_a_clear_error_without_the_key(
    server: OdsServer, method: str, caplog: pytest.LogCaptureFixture
) -> None:
    calls: dict[str, Callable[[OdsPortal], Awaitable[Any]]] = {
        "catalog": lambda portal: portal.catalog(),
        "monitoring": lambda portal: portal.monitoring(SINCE, UNTIL),
        "reuses": lambda portal: portal.reuses([AIR]),
    }
    caplog.set_level(logging.DEBUG)
    with pytest.raises(OwnPortalError) as raised:
        run(server, EXPIRED_KEY, calls[method])
    message = str(raised.value)
    assert f"the API key of portal {NAME} was refused (expired or revoked?)" in message
    assert server.url in message and raised.value.status == 401 and raised.value.portal == NAME
    assert EXPIRED_KEY not in message and EXPIRED_KEY not in raised.value.url
    assert EXPIRED_KEY not in caplog.text
    assert raised.value.__cause__ is None and raised.value.__context__ is not None
    assert EXPIRED_KEY not in str(raised.value.__context__)


@pytest.mark.parametrize("status", [403, 401])
def test_a_key_without_browse_analytics_names_the_permission(server: OdsServer, world: OdsWorld, status: int) -> None:
    world.missing_permission_status = status  # 403, or 401 as some portals answer (docs/opendatasoft.md, "Permission")
    with pytest.raises(OwnPortalError) as raised:
        run(server, READER_KEY, lambda portal: portal.monitoring(SINCE, UNTIL))
    message = str(raised.value)
    assert "'Browse analytics'" in message and "explore_monitoring" in message and NAME in message
    assert "/monitoring/datasets/ods-api-monitoring/exports/json" in message
    assert READER_KEY not in message and raised.value.status == status
    assert {row["dataset_id"] for row in run(server, READER_KEY, lambda portal: portal.catalog())} >= {AIR, VELO}


def test_without_a_key_monitoring_is_skipped_with_a_reason(server: OdsServer) -> None:
    with pytest.raises(MonitoringSkipped) as raised:
        run(server, None, lambda portal: portal.monitoring(SINCE, UNTIL))
    assert raised.value.portal == NAME and "no API key" in raised.value.reason
    assert "Browse analytics" in raised.value.reason
    assert not isinstance(raised.value, OwnPortalError)
    assert server.requests == []  # nothing was asked


def test_reuses_by_dataset_and_none_when_the_feature_is_off(server: OdsServer, world: OdsWorld) -> None:
    found = run(server, None, lambda portal: portal.reuses([AIR, "sans-compteurs"]))
    assert list(found) == [AIR]
    assert [reuse["id"] for reuse in found[AIR]] == ["r2", "r1"]  # newest first
    assert found[AIR][0]["title"] == "Tableau de bord air" and found[AIR][0]["user"]["username"] == "hugo-dubois"
    world.reuses = [dict(world.reuses[2], id=f"v{number}") for number in range(250)]  # type: ignore[index]
    assert len(run(server, None, lambda portal: portal.reuses([VELO]))[VELO]) == 250
    world.reuses = None
    assert run(server, None, lambda portal: portal.reuses([AIR])) == {}


def test_the_key_is_sent_in_a_header_to_the_portal_only(server: OdsServer) -> None:
    with OdsServer(seeded_world()) as other:

        async def main() -> None:
            async with PortalClient(max_elapsed=2) as client:
                portal = OdsPortal(client, server.url, ANALYTICS_KEY, NAME)
                assert ANALYTICS_KEY not in repr(portal)
                await portal.catalog()
                await client.get_json(f"{other.url}/api/explore/v2.1/catalog/datasets")

        asyncio.run(main())
        assert all(request.with_key for request in server.requests)
        assert not any(request.with_key for request in other.requests)


def test_the_demo_world_adds_up() -> None:
    today = dt.date(2026, 11, 20)
    world = generate_ods_world(datasets=8, days=30, seed=7, today=today)
    since, until = today - dt.timedelta(days=40), today - dt.timedelta(days=1)
    with OdsServer(world) as running:
        rows, first_day = run(
            running, DEMO_ANALYTICS_KEY, lambda portal: portal.monitoring(since, until), world.public_domain
        )
        catalog = run(running, DEMO_ANALYTICS_KEY, lambda portal: portal.catalog(), world.public_domain)
    assert first_day == today - dt.timedelta(days=30)
    downloads = sum(1 for row in world.monitoring if row["api"] in DOWNLOAD_APIS)
    bots = sum(1 for row in world.monitoring if row["bot"])
    assert sum(row.calls for row in rows if row.kind == "download") == downloads
    assert sum(row.calls for row in rows if row.is_bot) == bots
    assert sum(row.calls for row in rows) == len(world.monitoring)
    views = sum(1 for row in world.monitoring if row["referer"] and row["api"] not in DOWNLOAD_APIS)
    assert views > 0 and sum(row.calls for row in rows if row.kind == "view") == views
    assert len(catalog) == 8 and all(row["download_count"] is not None for row in catalog)
    assert any(row["visibility"] == "restricted" for row in catalog)
