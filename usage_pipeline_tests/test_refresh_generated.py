"""End to end on a generated world: `refresh` for two consecutive dates, whatever the data.gouv.fr sample.

The scenario of test_refresh.py (which runs on the sample) on the generated world of conftest.py, with what a
producer adds around it: its own Opendatasoft and CKAN portals (some datasets are harvested from them), the
reuses' sites served locally (one is gone), an events.csv and a reuser survey. Between the two days the portal
changes: one dataset's views and downloads grow, a reuse appears on one dataset and one leaves another, a
dataset is deleted (410), a producer answers a discussion, another discussion is removed, a question is asked.
Every expectation is computed from the world's JSON; the datasets playing a part are picked by what they hold.
"""

import copy
import csv
import datetime as dt
import io
from collections.abc import Iterator
from dataclasses import dataclass, replace

import dagster as dg
import duckdb
import polars as pl
import pytest

from usage_pipeline import cli
from usage_pipeline.demo.ckan_server import CkanServer, generate_ckan_world
from usage_pipeline.demo.ods_server import DEMO_ANALYTICS_KEY, OdsServer, generate_ods_world
from usage_pipeline.demo.portal_server import PortalServer, World
from usage_pipeline.demo.producer_files import SURVEY_COLUMNS, SURVEY_FILE, write_events, write_survey
from usage_pipeline.demo.run import (
    CKAN_DOMAIN,
    ODS_DOMAIN,
    ODS_KEY_VARIABLE,
    harvest_from_own_portals,
    write_portals_yaml,
)
from usage_pipeline.demo.world import add_news
from usage_pipeline.insights import theme_model
from usage_pipeline.insights.themes import THEMES
from usage_pipeline.settings import Settings
from usage_pipeline.surveys.responses import SALT_ENV
from usage_pipeline_tests.conftest import (
    PARIS,
    discussion_status,
    generated_world,
    most_viewed,
    pick_dataset,
    producers,
    world_settings,
)

DAY_1 = dt.date(2026, 11, 20)
DAY_2 = dt.date(2026, 11, 21)
ANSWERED_AT = "2026-11-21T08:00:00.000000+00:00"
PORTAL_NAMES = {ODS_DOMAIN: "metropole", CKAN_DOMAIN: "region"}  # as usage_pipeline.demo.run names them


@dataclass
class Roles:
    """The datasets and discussions that change between the two days."""

    growing: str  # views +100, downloads +7 (on its first resource)
    reuse_removed_from: str  # its first reuse is no longer listed on it
    reuse_removed: str
    deleted: str  # answers 410 on day 2
    answered: str  # a discussion awaiting the producer, answered on day 2
    answered_on: str
    discussion_removed: str  # an open discussion deleted by moderation
    discussion_removed_from: str
    new_reuse: str = ""  # add_news: a reuse on the most viewed dataset, a question on the next one
    new_reuse_on: str = ""
    new_discussion: str = ""


def pick_roles(world: World) -> Roles:
    growing = most_viewed(world)
    assert len(world.entries[growing]["resources"]) >= 2
    reuse_removed_from = pick_dataset(world, reuses=1, besides=[growing])
    answered_on = pick_dataset(world, awaiting=1, besides=[growing, reuse_removed_from])
    removed_from = pick_dataset(world, awaiting=1, besides=[growing, reuse_removed_from, answered_on])
    popular = sorted(world.entries, key=lambda key: -world.entries[key]["dataset"]["metrics"]["views"])[:4]
    quiet = [  # no discussion or reuse, not harvested, in no event or survey: its deletion changes nothing else
        key
        for key in sorted(world.entries)
        if not world.entries[key]["discussions"]
        and not world.entries[key]["reuses"]
        and not world.entries[key]["dataset"].get("harvest")
        and key not in popular
    ]

    def awaiting(dataset_id: str) -> str:
        entry = world.entries[dataset_id]
        return next(
            d["id"] for d in entry["discussions"] if discussion_status(world, dataset_id, d) == "awaiting_producer"
        )

    return Roles(
        growing=growing,
        reuse_removed_from=reuse_removed_from,
        reuse_removed=world.entries[reuse_removed_from]["reuses"][0]["id"],
        deleted=quiet[0],
        answered=awaiting(answered_on),
        answered_on=answered_on,
        discussion_removed=awaiting(removed_from),
        discussion_removed_from=removed_from,
    )


def host_reuse_sites(world: World, portal_url: str) -> None:
    """Point the reuses not hosted yet at sites the local portal serves: no check leaves this machine.

    Under two host names, every other reuse (the checks of one host are a second apart); the fourth one is gone.
    """
    hosts = (portal_url, portal_url.replace("127.0.0.1", "localhost"))
    reuses = sorted({reuse["id"]: reuse for entry in world.entries.values() for reuse in entry["reuses"]}.items())
    for index, (reuse_id, reuse) in enumerate(reuses):
        if not reuse["url"].startswith(hosts):
            reuse["url"] = f"{hosts[index % 2]}/reuse-sites/{'gone/' if index == 3 else ''}{reuse_id}"


def add_to_month(world: World, dataset_id: str, month: str, visits: int, downloads: int) -> None:
    """The metrics API's figures of the month grow with the day's activity."""
    organization_id = world.entries[dataset_id]["organization_id"]
    rows = [
        row
        for row in world.metrics_rows
        if (row["dataset_id"], row["organization_id"], row["metric_month"]) == (dataset_id, organization_id, month)
    ]
    if not rows:
        rows = [
            {"__id": max(row["__id"] for row in world.metrics_rows) + 1, "dataset_id": dataset_id,
             "organization_id": organization_id, "metric_month": month, "monthly_visit": None,
             "monthly_download_resource": None}
        ]  # fmt: skip
        world.metrics_rows += rows
    rows[0]["monthly_visit"] = (rows[0]["monthly_visit"] or 0) + visits
    rows[0]["monthly_download_resource"] = (rows[0]["monthly_download_resource"] or 0) + downloads


def day_two_changes(world: World, roles: Roles, portal_url: str) -> None:
    """One day of activity on the portal (the world's lock held)."""
    growing = world.entries[roles.growing]
    growing["dataset"]["metrics"]["views"] += 100
    growing["dataset"]["metrics"]["resources_downloads"] += 7
    growing["resources"][0]["metrics"]["views"] += 7
    add_to_month(world, roles.growing, f"{DAY_2:%Y-%m}", 100, 7)

    source = world.entries[roles.reuse_removed_from]
    source["reuses"] = [reuse for reuse in source["reuses"] if reuse["id"] != roles.reuse_removed]
    source["dataset"]["metrics"]["reuses"] -= 1

    world.deleted.add(roles.deleted)

    discussion = next(d for d in world.entries[roles.answered_on]["discussions"] if d["id"] == roles.answered)
    member = world.organization_of(roles.answered_on)["members"][0]["user"]
    author = {key: value for key, value in member.items() if key not in ("email", "last_login_at")}
    discussion["discussion"].append(
        {"content": "Merci, c'est corrigé.", "posted_by": author, "posted_on": ANSWERED_AT, "spam": {}}
    )

    moderated = world.entries[roles.discussion_removed_from]
    moderated["discussions"] = [d for d in moderated["discussions"] if d["id"] != roles.discussion_removed]
    moderated["dataset"]["metrics"]["discussions"] -= 1

    world.today = DAY_2
    roles.new_reuse, roles.new_discussion = add_news(world, seed=1)
    (roles.new_reuse_on,) = [
        key for key, entry in world.entries.items() if any(r["id"] == roles.new_reuse for r in entry["reuses"])
    ]
    host_reuse_sites(world, portal_url)


@dataclass
class TwoDays:
    """The generated world refreshed for DAY_1, changed, then refreshed for DAY_2."""

    day_1: World  # the portal as the first refresh saw it
    world: World  # as the second one saw it
    roles: Roles
    settings: Settings
    instance: dg.DagsterInstance
    outcome: cli.RefreshOutcome
    gone_reuse_url: str
    corrected: dict[str, str]  # discussion id -> the theme theme_corrections.csv gives it before day 2


def correct_a_theme(settings: Settings) -> dict[str, str]:
    """theme_corrections.csv giving the first discussion another theme than day 1's, plus two bad rows."""
    discussion_id, theme = published(
        settings, "SELECT discussion_id, theme FROM reporting.discussions ORDER BY discussion_id LIMIT 1"
    ).row(0)
    other = next(candidate for candidate in THEMES if candidate != theme)
    settings.paths.theme_corrections_file.write_text(
        f"discussion_id,theme\n{discussion_id},{other}\n{discussion_id},weather\nno-such-discussion,other\n",
        encoding="utf-8",
    )
    return {discussion_id: other}


@pytest.fixture(scope="module")
def two_days(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TwoDays]:
    """Built once for the module: the tests below only read what the two refreshes published."""
    root = tmp_path_factory.mktemp("generated_two_days")
    world = generated_world()
    ods = generate_ods_world(4, 30, seed=2, today=DAY_2, public_domain=ODS_DOMAIN)
    ckan = generate_ckan_world(2, seed=2, today=DAY_2)
    harvest_from_own_portals(world, ods, ckan)
    roles = pick_roles(world)
    with (
        PortalServer(world) as portal,
        OdsServer(ods) as ods_server,
        CkanServer(ckan) as ckan_server,
        pytest.MonkeyPatch.context() as env,
    ):
        env.setenv("DAGSTER_HOME", str(root / "dagster_home"))
        env.setenv(ODS_KEY_VARIABLE, DEMO_ANALYTICS_KEY)
        env.setenv(SALT_ENV, "a-test-salt")
        host_reuse_sites(world, portal.url)
        (gone_url,) = {r["url"] for e in world.entries.values() for r in e["reuses"] if "/gone/" in r["url"]}
        settings = replace(world_settings(portal, world, root / "data"), link_checks=True)
        write_portals_yaml(settings.paths, ods_server.url, ckan_server.url)
        write_events(settings.paths, world, DAY_1)
        write_survey(settings.paths, world, DAY_1, seed=3)
        instance = cli.dagster_instance(settings)
        cli.refresh(settings, DAY_1, instance)
        day_1 = copy.deepcopy(world)
        corrected = correct_a_theme(settings)
        with world.lock:
            day_two_changes(world, roles, portal.url)
            for tracking in ckan.tracking.values():
                tracking["total"] += 3  # three page views on the CKAN portal
        outcome = cli.refresh(settings, DAY_2, instance)
        yield TwoDays(day_1, world, roles, settings, instance, outcome, gone_url, corrected)


def published(settings: Settings, sql: str) -> pl.DataFrame:
    with duckdb.connect(str(settings.paths.published_database), read_only=True) as conn:
        return conn.execute(sql).pl()


def reporting_tables(settings: Settings) -> list[str]:
    tables = published(settings, "SELECT table_name FROM information_schema.tables WHERE table_schema = 'reporting'")
    return sorted(tables["table_name"])


def when(text: str) -> dt.datetime:
    return dt.datetime.fromisoformat(text)


def threads(two_days: TwoDays) -> list[dict]:
    """Every discussion the refreshes saw (as last seen: a removed one as on day 1), from the JSON alone."""
    seen = {}
    for world in (two_days.day_1, two_days.world):
        for dataset_id, entry in world.entries.items():
            for discussion in entry["discussions"]:
                seen[discussion["id"]] = (world, dataset_id, discussion)
    result = []
    for world, dataset_id, discussion in seen.values():
        members = producers(world, dataset_id)
        messages = discussion["discussion"]
        answers = [when(m["posted_on"]) for m in messages[1:] if m["posted_by"]["id"] in members]
        asked = [when(m["posted_on"]) for m in messages if m["posted_by"]["id"] not in members]
        result.append(
            {
                "id": discussion["id"],
                "dataset_id": dataset_id,
                "organization_id": world.entries[dataset_id]["organization_id"],
                "status": discussion_status(world, dataset_id, discussion),
                "created": when(discussion["created"]),
                "closed": when(discussion["closed"]) if discussion["closed"] else None,
                "first_answer": min(answers) if answers else None,
                "last_reuser_message": max(asked, default=None),
                "removed": world is two_days.day_1,
            }
        )
    return result


def test_the_world_has_what_the_scenario_needs(two_days: TwoDays) -> None:
    roles, world = two_days.roles, two_days.world
    played = [roles.growing, roles.reuse_removed_from, roles.deleted, roles.answered_on, roles.discussion_removed_from]
    assert len(set(played)) == len(played)
    assert roles.new_reuse_on == roles.growing  # add_news puts it on the most viewed dataset
    assert {thread["status"] for thread in threads(two_days)} == {"closed", "answered", "awaiting_producer"}
    assert any(entry["dataset"].get("harvest") for entry in world.entries.values())
    assert all(
        day <= DAY_1 for day in (when(e["dataset"]["created_at_internal"]).date() for e in world.entries.values())
    )


def test_counters_and_deltas(two_days: TwoDays) -> None:
    roles, day_1, world = two_days.roles, two_days.day_1, two_days.world
    daily = published(two_days.settings, "SELECT * FROM reporting.dataset_usage_daily ORDER BY dataset_id, date")
    first = daily.filter(pl.col("date") == DAY_1)
    assert sorted(first["dataset_id"]) == sorted(day_1.entries)
    for row in first.iter_rows(named=True):
        metrics = day_1.entries[row["dataset_id"]]["dataset"]["metrics"]
        assert (row["views"], row["downloads"]) == (metrics["views"], metrics["resources_downloads"])
        assert (row["followers"], row["reuses"]) == (metrics["followers"], metrics["reuses"])
        assert row["views_delta"] is None and row["downloads_delta"] is None
    second = {row["dataset_id"]: row for row in daily.filter(pl.col("date") == DAY_2).iter_rows(named=True)}
    assert set(second) == set(world.entries) - {roles.deleted}
    for key, row in second.items():
        before, after = day_1.entries[key]["dataset"]["metrics"], world.entries[key]["dataset"]["metrics"]
        assert (row["views"], row["reuses"], row["discussions"]) == (
            after["views"], after["reuses"], after["discussions"]
        ), key  # fmt: skip
        assert row["views_delta"] == after["views"] - before["views"], key
        assert row["downloads_delta"] == after["resources_downloads"] - before["resources_downloads"], key
    assert (second[roles.growing]["views_delta"], second[roles.growing]["downloads_delta"]) == (100, 7)
    assert {row["views_delta"] for key, row in second.items() if key != roles.growing} == {0}


def test_resource_downloads(two_days: TwoDays) -> None:
    rows = published(two_days.settings, "SELECT * FROM reporting.resource_downloads_daily")
    for day, world in ((DAY_1, two_days.day_1), (DAY_2, two_days.world)):
        of_day = rows.filter(pl.col("date") == day)
        expected = {
            (resource["id"], key): resource["metrics"]["views"]
            for key, entry in world.entries.items()
            if key not in world.deleted
            for resource in entry["resources"]
        }
        keys = zip(of_day["resource_id"], of_day["dataset_id"], strict=True)
        assert dict(zip(keys, of_day["downloads"], strict=True)) == expected
    first = two_days.world.entries[two_days.roles.growing]["resources"][0]["id"]
    deltas = rows.filter((pl.col("date") == DAY_2) & (pl.col("downloads_delta") != 0))
    assert deltas.select("resource_id", "downloads_delta").rows() == [(first, 7)]


def test_discussion_statuses(two_days: TwoDays) -> None:
    rows = published(
        two_days.settings, "SELECT discussion_id, status, first_response_at, removed_date FROM reporting.discussions"
    )
    got = {row["discussion_id"]: row for row in rows.iter_rows(named=True)}
    expected = {thread["id"]: thread for thread in threads(two_days)}
    assert set(got) == set(expected)
    assert {key: row["status"] for key, row in got.items()} == {key: t["status"] for key, t in expected.items()}
    assert {key: row["first_response_at"] for key, row in got.items()} == {
        key: t["first_answer"] for key, t in expected.items()
    }
    roles = two_days.roles
    (before,) = [d for d in two_days.day_1.entries[roles.answered_on]["discussions"] if d["id"] == roles.answered]
    assert discussion_status(two_days.day_1, roles.answered_on, before) == "awaiting_producer"
    assert got[roles.answered]["status"] == "answered"
    assert got[roles.answered]["first_response_at"] == when(ANSWERED_AT)
    assert got[roles.new_discussion]["status"] == "awaiting_producer"


def test_a_removed_discussion_leaves_the_backlog(two_days: TwoDays) -> None:
    removed = published(
        two_days.settings,
        "SELECT discussion_id, removed_date FROM reporting.discussions WHERE removed_date IS NOT NULL",
    )
    assert removed.rows() == [(two_days.roles.discussion_removed, DAY_2)]
    awaiting = published(two_days.settings, "SELECT discussion_id FROM reporting.discussions_awaiting_answer")
    assert two_days.roles.discussion_removed not in awaiting["discussion_id"].to_list()


def test_backlog_lists_awaiting_discussions_oldest_first(two_days: TwoDays) -> None:
    rows = published(
        two_days.settings,
        "SELECT discussion_id, dataset_id, waiting_since, waiting_days, url, theme "
        "FROM reporting.discussions_awaiting_answer",
    )
    awaiting = sorted(
        (t for t in threads(two_days) if t["status"] == "awaiting_producer" and not t["removed"]),
        key=lambda t: (t["last_reuser_message"], t["id"]),
    )
    assert rows["discussion_id"].to_list() == [t["id"] for t in awaiting]
    assert two_days.roles.answered not in rows["discussion_id"].to_list()
    for row, thread in zip(rows.iter_rows(named=True), awaiting, strict=True):
        assert row["dataset_id"] == thread["dataset_id"]
        assert row["waiting_since"] == thread["last_reuser_message"]
        assert row["waiting_days"] == (DAY_2 - thread["last_reuser_message"].astimezone(PARIS).date()).days
        assert "discussion_id=" + row["discussion_id"] in row["url"]
        assert row["theme"] in {"accessibility", "freshness", "reliability", "usability", "other"}
    assert rows.row(-1, named=True)["discussion_id"] == two_days.roles.new_discussion  # asked this morning
    assert rows.row(-1, named=True)["waiting_days"] == 0


def test_response_times_per_dataset_and_month(two_days: TwoDays) -> None:
    all_threads = threads(two_days)
    rows = published(two_days.settings, "SELECT * FROM reporting.response_times")
    got = {(row["dataset_id"], row["month"]): row for row in rows.iter_rows(named=True)}
    months: dict[tuple[str, str], list[dict]] = {}
    for thread in all_threads:
        months.setdefault((thread["dataset_id"], f"{thread['created'].astimezone(PARIS):%Y-%m}"), []).append(thread)
    assert {key for key, row in got.items() if row["discussions_opened"]} == set(months)
    for key, opened in months.items():
        days = sorted((t["first_answer"] - t["created"]).total_seconds() / 86400 for t in opened if t["first_answer"])
        row = got[key]
        assert row["organization_id"] == opened[0]["organization_id"], key
        assert (row["discussions_opened"], row["answered"]) == (len(opened), len(days)), key
        if days:
            median = (days[(len(days) - 1) // 2] + days[len(days) // 2]) / 2
            assert row["median_days_to_first_answer"] == pytest.approx(median, abs=1e-4), key
            capped = sum(min(d, 30) for d in days) / len(days)
            assert row["mean_days_to_first_answer_capped"] == pytest.approx(capped, abs=1e-4), key
        else:
            assert row["median_days_to_first_answer"] is None, key
        within = sum(d <= 7 for d in days) / len(opened)
        assert row["answered_within_7_days_share"] == pytest.approx(within, abs=1e-4), key
    for (dataset_id, month), row in got.items():  # every month since the dataset's first discussion
        start = dt.datetime.strptime(month, "%Y-%m")
        end = (start + dt.timedelta(days=32)).replace(day=1, tzinfo=PARIS)  # midnight in Paris
        backlog = sum(
            t["dataset_id"] == dataset_id
            and t["created"] < end
            and (t["closed"] is None or t["closed"] >= end)
            and (t["first_answer"] is None or t["first_answer"] >= end)
            for t in all_threads
        )
        assert row["open_backlog_at_month_end"] == backlog, (dataset_id, month)
    assert max(got)[1] <= f"{DAY_2:%Y-%m}" and any(month == f"{DAY_2:%Y-%m}" for _, month in got)


def test_reuses_first_seen_and_removed(two_days: TwoDays) -> None:
    roles, world = two_days.roles, two_days.world
    rows = published(two_days.settings, "SELECT * FROM reporting.reuses")
    by_key = {(row["reuse_id"], row["dataset_id"]): row for row in rows.iter_rows(named=True)}
    on_day_1 = {(r["id"], key) for key, e in two_days.day_1.entries.items() for r in e["reuses"]}
    new = (roles.new_reuse, roles.new_reuse_on)
    assert set(by_key) == on_day_1 | {new}
    assert by_key[new]["first_seen_date"] == DAY_2
    assert {row["first_seen_date"] for key, row in by_key.items() if key != new} == {DAY_1}
    removed = (roles.reuse_removed, roles.reuse_removed_from)
    assert (by_key[removed]["last_seen_date"], by_key[removed]["removed_date"]) == (DAY_1, DAY_2)
    assert [key for key, row in by_key.items() if row["removed_date"] is not None] == [removed]
    listed = {(r["id"], key): r for key, e in world.entries.items() for r in e["reuses"]}
    for key, reuse in listed.items():
        row = by_key[key]
        assert (row["title"], row["type"], row["topic"], row["url"]) == (
            reuse["title"], reuse["type"], reuse["topic"], reuse["url"]
        ), key  # fmt: skip
        assert (row["views"], row["followers"]) == (reuse["metrics"]["views"], reuse["metrics"]["followers"]), key
        assert row["created_at"] == when(reuse["created_at"]), key
        organization, owner = reuse.get("organization"), reuse.get("owner")
        if organization:
            assert (row["owner_type"], row["owner_id"], row["owner_name"]) == (
                "organization", organization["id"], organization["name"]
            ), key  # fmt: skip
        else:
            name = f"{owner['first_name']} {owner['last_name']}"
            assert (row["owner_type"], row["owner_id"], row["owner_name"]) == ("user", owner["id"], name), key
    new_reuses = published(two_days.settings, "SELECT reuse_id, dataset_id, in_last_7_days FROM reporting.new_reuses")
    assert new_reuses.rows() == [(*new, True)]  # day-1 reuses are the baseline


def test_reuse_links_are_checked(two_days: TwoDays) -> None:
    checks = published(two_days.settings, "SELECT url, checked_at, http_status, ok FROM reporting.reuse_health")
    urls = {r["url"] for world in (two_days.day_1, two_days.world) for e in world.entries.values() for r in e["reuses"]}
    assert set(checks["url"]) == urls and two_days.gone_reuse_url in urls
    for row in checks.iter_rows(named=True):
        assert row["ok"] == (row["url"] != two_days.gone_reuse_url), row
        assert row["http_status"] == (404 if row["url"] == two_days.gone_reuse_url else 200), row
    reuses = published(two_days.settings, "SELECT url, link_ok, link_broken FROM reporting.reuses")
    assert {(url, ok) for url, ok, _ in reuses.rows()} == {
        (url, url != two_days.gone_reuse_url) for url in reuses["url"]
    }
    assert not any(reuses["link_broken"])  # two failed checks: not yet broken (three in a row)


def test_gone_dataset_recorded(two_days: TwoDays) -> None:
    deleted = two_days.roles.deleted
    datasets = published(two_days.settings, "SELECT dataset_id, status, gone_since, title FROM reporting.datasets")
    assert sorted(datasets["dataset_id"]) == sorted(two_days.world.entries)
    gone = datasets.filter(pl.col("status") == "gone")
    assert gone["dataset_id"].to_list() == [deleted]
    assert gone["gone_since"].item() == DAY_2
    assert gone["title"].item() == two_days.day_1.entries[deleted]["dataset"]["title"]  # from its last live snapshot
    assert two_days.outcome.gone == [deleted]


def test_monthly_metrics(two_days: TwoDays) -> None:
    monthly = published(
        two_days.settings, "SELECT dataset_id, month, visits, downloads FROM reporting.dataset_usage_monthly"
    )
    expected: dict[tuple[str, str], list[int]] = {}
    for row in two_days.world.metrics_rows:  # organizations summed, a null counts as 0
        sums = expected.setdefault((row["dataset_id"], row["metric_month"]), [0, 0])
        sums[0] += row["monthly_visit"] or 0
        sums[1] += row["monthly_download_resource"] or 0
    assert {(key, month): [visits, downloads] for key, month, visits, downloads in monthly.rows()} == expected
    growing = two_days.roles.growing
    this_month = monthly.filter((pl.col("dataset_id") == growing) & (pl.col("month") == f"{DAY_2:%Y-%m}"))
    before = [
        row
        for row in two_days.day_1.metrics_rows
        if row["dataset_id"] == growing and row["metric_month"] == f"{DAY_2:%Y-%m}"
    ]
    assert this_month.select("visits", "downloads").row(0) == (
        sum(row["monthly_visit"] or 0 for row in before) + 100,
        sum(row["monthly_download_resource"] or 0 for row in before) + 7,
    )


def test_rerun_changes_nothing_and_reader_is_not_blocked(two_days: TwoDays) -> None:
    settings = two_days.settings
    tables = reporting_tables(settings)
    tables.remove("quality_results")  # the history of check evaluations: a rerun adds its own
    before = {table: published(settings, f"SELECT * FROM reporting.{table} ORDER BY ALL") for table in tables}
    with duckdb.connect(str(settings.paths.warehouse), read_only=True) as warehouse:
        raw_before = warehouse.execute("SELECT count(*) FROM raw.discussions").fetchone()
    reader = duckdb.connect(str(settings.paths.published_database), read_only=True)
    try:
        seen = reader.execute("SELECT count(*) FROM reporting.dataset_usage_daily").fetchone()
        cli.refresh(settings, DAY_2, two_days.instance)  # the reader keeps the file open all along
        assert reader.execute("SELECT count(*) FROM reporting.dataset_usage_daily").fetchone() == seen
    finally:
        reader.close()
    for table, frame in before.items():
        after = published(settings, f"SELECT * FROM reporting.{table} ORDER BY ALL")
        assert after.equals(frame), table
    with duckdb.connect(str(settings.paths.warehouse), read_only=True) as warehouse:
        assert warehouse.execute("SELECT count(*) FROM raw.discussions").fetchone() == raw_before
    assert not list(settings.paths.published.glob("**/*.tmp"))
    parquet = pl.read_parquet(settings.paths.parquet_dir / "dataset_usage_daily.parquet")
    assert parquet.height == before["dataset_usage_daily"].height


def test_every_published_table_has_rows(two_days: TwoDays) -> None:
    settings = two_days.settings
    tables = reporting_tables(settings)
    assert {"datasets", "discussions", "reuses", "survey_summary", "combined_usage", "reuse_health"} <= set(tables)
    empty = [table for table in tables if published(settings, f"SELECT count(*) FROM reporting.{table}").item() == 0]
    assert empty == ["reuse_leads"]  # no lead source here: test_reuse_leads.py and the demo fill it
    for table in tables:
        assert (settings.paths.parquet_dir / f"{table}.parquet").exists(), table


def test_the_summary(two_days: TwoDays, capsys: pytest.CaptureFixture) -> None:
    cli.print_summary(two_days.outcome, two_days.settings)
    out = capsys.readouterr().out
    datasets = len(two_days.world.entries)
    assert f"refresh {DAY_2}: {datasets} datasets (0 new)" in out
    assert f"gone (404/410): {two_days.roles.deleted}" in out
    discussions = published(two_days.settings, "SELECT count(*) FROM reporting.discussions").item()
    assert discussions == len(threads(two_days)) and f"reporting.discussions: {discussions} rows" in out


def test_themes_by_the_classifier_and_by_the_producers_correction(two_days: TwoDays) -> None:
    settings = two_days.settings
    rows = published(
        settings,
        "SELECT discussion_id, theme, theme_confidence, theme_source, theme_needs_review FROM reporting.discussions",
    )
    ((corrected_id, theme),) = two_days.corrected.items()
    corrected = rows.filter(pl.col("discussion_id") == corrected_id).row(0)
    assert corrected == (corrected_id, theme, None, "correction", False)
    others = rows.filter(pl.col("discussion_id") != corrected_id)
    assert set(others["theme_source"]) == {"model"} and others["theme_confidence"].is_between(0.2, 1.0).all()
    threshold = theme_model.load_shipped_model().confidence_threshold
    assert (others["theme_needs_review"] == (others["theme_confidence"] < threshold)).all()
    with duckdb.connect(str(settings.paths.warehouse), read_only=True) as conn:
        applied = conn.execute("SELECT * FROM raw.theme_corrections").fetchall()
    assert applied == [(corrected_id, theme, 2)]  # rows 3 (unknown theme) and 4 (unknown discussion) left out
    (problems,) = [p for p in two_days.outcome.producer_file_problems if p.startswith("theme_corrections_valid")]
    assert "row 3: theme 'weather' is not one of" in problems
    assert "row 4: discussion 'no-such-discussion' is not a known discussion" in problems


def test_weekly_digest_for_each_organization(two_days: TwoDays) -> None:
    world, reports = two_days.world, two_days.settings.paths.reports_dir
    slugs = {organization["slug"] for organization in world.organizations.values()}  # W47 holds both days
    assert {path.name for path in reports.glob("*-W47.html")} == {f"{slug}-2026-W47.html" for slug in slugs}
    assert {path.name for path in reports.glob("*.email.html")} == {f"{slug}-2026-W47.email.html" for slug in slugs}
    awaiting = published(two_days.settings, "SELECT dataset_id, url FROM reporting.discussions_awaiting_answer")
    for organization_id, organization in world.organizations.items():
        digest = (reports / f"{organization['slug']}-2026-W47.md").read_text(encoding="utf-8")
        own = {key for key, entry in world.entries.items() if entry["organization_id"] == organization_id}
        urls = [url for key, url in awaiting.rows() if key in own]
        assert all(url in digest for url in urls), organization["slug"]
        others = [url for key, url in awaiting.rows() if key not in own]
        assert not any(url in digest for url in others), organization["slug"]
    growing = world.entries[two_days.roles.growing]
    digest = (reports / f"{world.organization_of(two_days.roles.growing)['slug']}-2026-W47.md").read_text("utf-8")
    assert growing["dataset"]["title"] in digest


def test_own_portals_and_twins(two_days: TwoDays) -> None:
    twins = published(
        two_days.settings, "SELECT dataset_id, portal, portal_dataset_id, method FROM reporting.dataset_twins"
    )
    expected = set()
    for key, entry in two_days.world.entries.items():
        harvest = entry["dataset"].get("harvest")
        if harvest:  # an Opendatasoft explore page, or a CKAN package id
            twin_id = harvest["remote_id"].rstrip("/").rsplit("/", 1)[-1]
            expected.add((key, PORTAL_NAMES[harvest["domain"]], twin_id, "harvest_metadata"))
    assert expected and set(twins.rows()) == expected
    usage = published(
        two_days.settings, "SELECT portal, portal_dataset_id, date, views FROM reporting.own_portal_usage_daily"
    )
    ckan = usage.filter(pl.col("portal") == "region")
    harvested_from_ckan = {twin_id for _, portal, twin_id, _ in expected if portal == "region"}
    assert set(ckan.select("portal_dataset_id", "date", "views").rows()) == {
        (twin_id, DAY_2, 3) for twin_id in harvested_from_ckan
    }  # CKAN page views gained since the day-1 snapshot
    assert usage.filter(pl.col("portal") == "metropole").height > 0
    combined = published(two_days.settings, "SELECT DISTINCT dataset_id FROM reporting.combined_usage")
    assert set(combined["dataset_id"]) <= {key for key, *_ in expected} and combined.height > 0


def survey_rows(two_days: TwoDays) -> list[dict]:
    """The survey file as written, each answer's dataset resolved by id or page URL."""
    text = (two_days.settings.paths.surveys_dir / SURVEY_FILE).read_text(encoding="utf-8")
    by_slug = {entry["dataset"]["slug"]: key for key, entry in two_days.day_1.entries.items()}
    headers = {header: field for field, header in SURVEY_COLUMNS.items()}
    rows = []
    for raw in csv.DictReader(io.StringIO(text), delimiter=";"):
        row = {headers[header]: value for header, value in raw.items()}
        reference = row["dataset"]
        row["dataset_id"] = by_slug[reference.rstrip("/").rsplit("/", 1)[-1]] if "/" in reference else reference
        rows.append(row)
    return rows


def test_survey_results(two_days: TwoDays) -> None:
    answers = survey_rows(two_days)
    responses = published(
        two_days.settings, "SELECT dataset_id, satisfaction, needs, respondent_hash FROM reporting.survey_responses"
    )
    assert sorted(responses.select("dataset_id", "satisfaction", "needs").rows()) == sorted(
        (row["dataset_id"], int(row["satisfaction"]), row["needs"]) for row in answers
    )
    assert responses["respondent_hash"].n_unique() == len({row["email"].lower() for row in answers})
    summary = published(two_days.settings, "SELECT * FROM reporting.survey_summary")
    expected = {}
    for row in answers:
        expected.setdefault(row["dataset_id"], []).append(int(row["satisfaction"]))
    assert sorted(summary["dataset_id"]) == sorted(expected)
    for row in summary.iter_rows(named=True):
        ratings = expected[row["dataset_id"]]
        assert (row["responses"], row["respondents"]) == (len(ratings), len(ratings))
        assert row["mean_satisfaction"] == pytest.approx(round(sum(ratings) / len(ratings), 2))
        assert row["satisfied_share"] == pytest.approx(round(sum(r >= 4 for r in ratings) / len(ratings), 4))
        assert row["dataset_title"] == two_days.world.entries[row["dataset_id"]]["dataset"]["title"]
    for table in reporting_tables(two_days.settings):  # no e-mail address is published, only salted hashes
        frame = published(two_days.settings, f"SELECT * FROM reporting.{table}")
        texts = frame.select(pl.col(pl.String).str.contains("exemple.fr", literal=True).any())
        assert not any(texts.row(0)), table
    assert b"@exemple.fr" not in two_days.settings.paths.published_database.read_bytes()


def test_event_impact(two_days: TwoDays) -> None:
    day_1, world = two_days.day_1, two_days.world
    event_day = DAY_1 - dt.timedelta(days=1)
    (line,) = two_days.settings.paths.events_file.read_text(encoding="utf-8").splitlines()[1:]
    event_datasets = line.rsplit(",", 1)[1].split()  # date,title,kind,datasets (separated by spaces)
    impact = published(two_days.settings, "SELECT * FROM reporting.event_impact ORDER BY dataset_id")
    assert impact["dataset_id"].to_list() == sorted(event_datasets)
    window = (event_day - dt.timedelta(days=14), event_day + dt.timedelta(days=14))
    for row in impact.iter_rows(named=True):
        key = row["dataset_id"]
        assert (row["event_date"], row["kind"]) == (event_day, "workshop")
        before, after = day_1.entries[key]["dataset"]["metrics"], world.entries[key]["dataset"]["metrics"]
        # DAY_1 is the first snapshot (no delta): only DAY_2's, after the event, is observed
        assert (row["views_after"], row["downloads_after"], row["days_observed_after"]) == (
            after["views"] - before["views"], after["resources_downloads"] - before["resources_downloads"], 1
        )  # fmt: skip
        assert (row["views_before"], row["days_observed_before"]) == (None, 0)
        opened = [t["created"].astimezone(PARIS).date() for t in threads(two_days) if t["dataset_id"] == key]
        assert row["discussions_after"] == sum(event_day <= day < window[1] for day in opened)
        assert row["discussions_before"] == sum(window[0] <= day < event_day for day in opened)
        reuses = {r["id"]: r for w in (day_1, world) for r in w.entries[key]["reuses"]}
        published_on = [when(reuse["created_at"]).astimezone(PARIS).date() for reuse in reuses.values()]
        assert row["reuses_after"] == sum(event_day <= day < window[1] for day in published_on)
        assert row["reuses_before"] == sum(window[0] <= day < event_day for day in published_on)
    growing = impact.filter(pl.col("dataset_id") == two_days.roles.growing).row(0, named=True)
    assert growing["views_after"] == 100 and growing["reuses_after"] >= 1  # the day-2 reuse, after the event
