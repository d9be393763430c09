"""End to end: `refresh` for two consecutive dates against a local portal serving the real sample.

The sample's own facts (its datasets, discussions, reuses) are asserted here; test_refresh_generated.py runs the
same scenario on a generated world, whatever the sample.
"""

import datetime as dt
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import dagster as dg
import duckdb
import polars as pl
import pytest

from usage_pipeline import cli
from usage_pipeline.demo.portal_server import PortalServer, World
from usage_pipeline.settings import Settings
from usage_pipeline_tests.conftest import PARIS, SAMPLE_PATH, world_settings

pytestmark = pytest.mark.sample

DAY_1 = dt.date(2026, 11, 20)
DAY_2 = dt.date(2026, 11, 21)
GROWING = "5ff5e6e99724cb8fff59a5be"  # barometre-des-resultats-de-laction-publique
DELETED = "65271c20a80b3f04010e71ff"  # marches-publics-de-la-metropole-de-lyon
NEW_REUSE_ON = "5c1bab838b4c415d323a5741"  # defibrillateurs: no reuse in the sample
SIRENE = "5b7ffc618b4c4169d30727e0"
DPE = "5ee2391763c79811ddfbc86a"
ETALAB = "534fff75a3a7292c64a77de4"


def published(settings: Settings, sql: str) -> pl.DataFrame:
    with duckdb.connect(str(settings.paths.published_database), read_only=True) as conn:
        return conn.execute(sql).pl()


def expected_statuses(fixture_data: dict) -> dict[str, tuple[str, str | None]]:
    """Status and first producer answer of every sample discussion, computed from the JSON alone."""
    expected = {}
    for entry in fixture_data["datasets"]:
        members = {member["user"]["id"] for member in entry["organization"].get("members", [])}
        for discussion in entry["discussions"]:
            messages = discussion["discussion"]
            by_producer = [message["posted_by"]["id"] in members for message in messages]
            if discussion["closed"]:
                status = "closed"
            elif by_producer[-1]:
                status = "answered"
            else:
                status = "awaiting_producer"
            answers = [m["posted_on"] for m, producer in zip(messages[1:], by_producer[1:], strict=True) if producer]
            expected[discussion["id"]] = (status, min(answers) if answers else None)
    return expected


def add_metrics(world: World) -> None:
    """Two months for one dataset, one of them split over two organization rows with a null value."""
    org = world.entries[GROWING]["organization_id"]
    world.metrics_rows += [
        {"__id": 1, "dataset_id": GROWING, "organization_id": org, "metric_month": "2026-09",
         "monthly_visit": 40, "monthly_download_resource": None},
        {"__id": 2, "dataset_id": GROWING, "organization_id": "534fff75a3a7292c64a77de4", "metric_month": "2026-09",
         "monthly_visit": 2, "monthly_download_resource": 5},
        {"__id": 3, "dataset_id": GROWING, "organization_id": org, "metric_month": "2026-10",
         "monthly_visit": 55, "monthly_download_resource": 12},
    ]  # fmt: skip


def day_two_changes(world: World) -> None:
    """One day of activity: views grow, a reuse appears, a dataset is deleted, a producer answers."""
    growing = world.entries[GROWING]
    growing["dataset"]["metrics"]["views"] += 100
    growing["dataset"]["metrics"]["resources_downloads"] += 7
    growing["resources"][0]["metrics"]["views"] += 7
    target = world.entries[NEW_REUSE_ON]
    reuse = dict(world.entries[GROWING]["reuses"][0], id="6a0000000000000000000001", title="Carte des défibrillateurs")
    target["reuses"].append(reuse)
    target["dataset"]["metrics"]["reuses"] += 1
    sirene = world.entries[SIRENE]
    removed = sirene["reuses"].pop(0)  # the reuse is no longer listed on Sirene
    sirene["dataset"]["metrics"]["reuses"] -= 1
    world.removed_reuse = removed["id"]
    dpe = world.entries[DPE]
    moderated = next(d for d in dpe["discussions"] if not d["closed"])
    dpe["discussions"].remove(moderated)  # deleted by moderation
    dpe["dataset"]["metrics"]["discussions"] -= 1
    world.removed_discussion = moderated["id"]
    world.deleted.add(DELETED)
    world.metrics_rows.append(
        {"__id": 4, "dataset_id": GROWING, "organization_id": growing["organization_id"], "metric_month": "2026-11",
         "monthly_visit": 9, "monthly_download_resource": 1}
    )  # fmt: skip


def write_survey(folder: Path) -> None:
    """A Framaforms-like export: `;`, UTF-8 with BOM, French dates, datasets by id, slug and URL."""
    folder.mkdir(parents=True)
    (folder / "surveys.yaml").write_text(
        'files:\n  - pattern: "enquete-*.csv"\n    columns:\n'
        '      dataset: "Quel jeu de données utilisez-vous ?"\n      submitted_at: "Date de soumission"\n'
        '      satisfaction: "Note (1 à 5)"\n      needs: "Qu\'est-ce qui vous manque ?"\n'
        '      email: "Courriel"\n',
        encoding="utf-8",
    )
    rows = [
        "Quel jeu de données utilisez-vous ?;Date de soumission;Note (1 à 5);Qu'est-ce qui vous manque ?;Courriel",
        f"{GROWING};20/11/2026 10:15;4;Des mises à jour plus fréquentes;ana@example.org",
        "barometre-des-resultats-de-laction-publique;21/11/2026;2;Le fichier est introuvable, lien mort;bo@example.org",
        f"https://www.data.gouv.fr/fr/datasets/{SIRENE}/;21/11/2026;5;Rien, merci !;ANA@example.org",
    ]
    (folder / "enquete-2026.csv").write_text("\ufeff" + "\n".join(rows) + "\n", encoding="utf-8")


@dataclass
class TwoDays:
    """The sample served locally, refreshed for DAY_1, changed, then refreshed for DAY_2."""

    world: World
    settings: Settings
    instance: dg.DagsterInstance
    answered_discussion: str


@pytest.fixture(scope="module")
def two_days(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TwoDays]:
    """Built once for the module: the tests below only read what the two refreshes published."""
    root = tmp_path_factory.mktemp("two_days")
    world = World.from_fixture(SAMPLE_PATH)
    add_metrics(world)
    with PortalServer(world) as portal, pytest.MonkeyPatch.context() as env:
        env.setenv("DAGSTER_HOME", str(root / "dagster_home"))
        settings = world_settings(portal, world, root / "data")
        instance = cli.dagster_instance(settings)
        cli.refresh(settings, DAY_1, instance)
        with world.lock:
            day_two_changes(world)
            awaiting = next(
                d
                for d in world.entries[GROWING]["discussions"]
                if not d["closed"] and d["discussion"][-1]["posted_by"]["id"] == d["user"]["id"]
            )
            member = world.organization_of(GROWING)["members"][0]["user"]
            awaiting["discussion"].append(
                {"content": "Merci, c'est corrigé.", "posted_on": "2026-11-21T08:00:00+00:00", "posted_by": member}
            )
        env.setenv("USAGE_PSEUDONYM_SALT", "a-test-salt")
        write_survey(settings.data_dir / "surveys")
        (settings.data_dir / "events.csv").write_text(
            f"date,title,kind,datasets\n{DAY_2},Atelier baromètre,workshop,{GROWING}\n", encoding="utf-8"
        )
        cli.refresh(settings, DAY_2, instance)
        yield TwoDays(world, settings, instance, awaiting["id"])


def test_counters_and_deltas(two_days: TwoDays, fixture_data: dict) -> None:
    daily = published(two_days.settings, "SELECT * FROM reporting.dataset_usage_daily ORDER BY dataset_id, date")
    sample = {entry["dataset"]["id"]: entry["dataset"]["metrics"] for entry in fixture_data["datasets"]}
    day_1 = daily.filter(pl.col("date") == DAY_1)
    assert day_1.height == 15
    for row in day_1.iter_rows(named=True):
        assert row["views"] == sample[row["dataset_id"]]["views"]
        assert row["downloads"] == sample[row["dataset_id"]]["resources_downloads"]
        assert row["views_delta"] is None and row["downloads_delta"] is None
    day_2 = {row["dataset_id"]: row for row in daily.filter(pl.col("date") == DAY_2).iter_rows(named=True)}
    assert DELETED not in day_2 and len(day_2) == 14
    assert (day_2[GROWING]["views_delta"], day_2[GROWING]["downloads_delta"]) == (100, 7)
    assert day_2[GROWING]["views"] == sample[GROWING]["views"] + 100
    assert {row["views_delta"] for key, row in day_2.items() if key != GROWING} == {0}
    assert day_2[NEW_REUSE_ON]["reuses"] == 1


def test_resource_downloads(two_days: TwoDays, fixture_data: dict) -> None:
    rows = published(
        two_days.settings, "SELECT * FROM reporting.resource_downloads_daily WHERE date = DATE '2026-11-20'"
    )
    expected = {
        (resource["id"], entry["dataset"]["id"]): resource.get("metrics", {}).get("views", 0)
        for entry in fixture_data["datasets"]
        for resource in entry["resources"]
    }
    assert (
        dict(zip(zip(rows["resource_id"], rows["dataset_id"], strict=True), rows["downloads"], strict=True)) == expected
    )
    first = two_days.world.entries[GROWING]["resources"][0]["id"]
    delta = published(
        two_days.settings,
        "SELECT downloads_delta FROM reporting.resource_downloads_daily "
        f"WHERE resource_id = '{first}' AND date = '{DAY_2}'",
    )
    assert delta.item() == 7


def test_discussion_statuses(two_days: TwoDays, fixture_data: dict) -> None:
    rows = published(two_days.settings, "SELECT discussion_id, status, first_response_at FROM reporting.discussions")
    got = {row["discussion_id"]: (row["status"], row["first_response_at"]) for row in rows.iter_rows(named=True)}
    expected = expected_statuses(fixture_data)
    answered = two_days.answered_discussion
    assert expected[answered][0] == "awaiting_producer"
    assert got.pop(answered)[0] == "answered"
    expected.pop(answered)
    assert {key: status for key, (status, _) in got.items()} == {key: status for key, (status, _) in expected.items()}
    for key, (_, first_response) in expected.items():
        want = dt.datetime.fromisoformat(first_response) if first_response else None
        assert got[key][1] == want, key
    assert {status for status, _ in got.values()} == {"closed", "answered", "awaiting_producer"}


def test_reuses_first_seen(two_days: TwoDays, fixture_data: dict) -> None:
    rows = published(two_days.settings, "SELECT reuse_id, dataset_id, type, first_seen_date FROM reporting.reuses")
    expected = {
        (reuse["id"], entry["dataset"]["id"]) for entry in fixture_data["datasets"] for reuse in entry["reuses"]
    }
    by_key = {(row["reuse_id"], row["dataset_id"]): row for row in rows.iter_rows(named=True)}
    assert set(by_key) == expected | {("6a0000000000000000000001", NEW_REUSE_ON)}
    assert by_key[("6a0000000000000000000001", NEW_REUSE_ON)]["first_seen_date"] == DAY_2
    assert {row["first_seen_date"] for key, row in by_key.items() if key[1] != NEW_REUSE_ON} == {DAY_1}


def test_gone_dataset_recorded(two_days: TwoDays) -> None:
    datasets = published(two_days.settings, "SELECT dataset_id, status, gone_since, title FROM reporting.datasets")
    assert datasets.height == 15
    gone = datasets.filter(pl.col("status") == "gone")
    assert gone["dataset_id"].to_list() == [DELETED]
    assert gone["gone_since"].item() == DAY_2
    assert gone["title"].item() == "Marchés publics de la Métropole de Lyon"  # kept from its last live snapshot


def test_monthly_metrics(two_days: TwoDays) -> None:
    monthly = published(
        two_days.settings,
        f"SELECT month, visits, downloads FROM reporting.dataset_usage_monthly WHERE dataset_id = '{GROWING}'",
    )
    assert sorted(monthly.iter_rows()) == [("2026-09", 42, 5), ("2026-10", 55, 12), ("2026-11", 9, 1)]


def test_catalog_comments(two_days: TwoDays) -> None:
    columns = published(
        two_days.settings,
        "SELECT table_name, column_name, comment FROM duckdb_columns() WHERE schema_name = 'reporting'",
    )
    assert columns.height > 50
    assert columns.filter(pl.col("comment").is_null() | (pl.col("comment") == "")).is_empty()
    tables = published(two_days.settings, "SELECT comment FROM duckdb_tables() WHERE schema_name = 'reporting'")
    assert all(comment and len(comment) > 40 for comment in tables["comment"])


def sample_threads(fixture_data: dict) -> list[dict]:
    """Every sample discussion with its producer answers, computed from the JSON alone."""
    threads = []
    for entry in fixture_data["datasets"]:
        members = {member["user"]["id"] for member in entry["organization"].get("members", [])}
        for discussion in entry["discussions"]:
            messages = discussion["discussion"]
            answers = [
                dt.datetime.fromisoformat(m["posted_on"]) for m in messages[1:] if m["posted_by"]["id"] in members
            ]
            threads.append(
                {
                    "id": discussion["id"],
                    "dataset_id": entry["dataset"]["id"],
                    "organization_id": entry["organization"]["id"],
                    "created": dt.datetime.fromisoformat(discussion["created"]),
                    "closed": dt.datetime.fromisoformat(discussion["closed"]) if discussion["closed"] else None,
                    "first_answer": min(answers) if answers else None,
                    "last_reuser_message": max(
                        (
                            dt.datetime.fromisoformat(m["posted_on"])
                            for m in messages
                            if m["posted_by"]["id"] not in members
                        ),
                        default=None,
                    ),
                }
            )
    return threads


def test_backlog_lists_awaiting_discussions_oldest_first(two_days: TwoDays, fixture_data: dict) -> None:
    rows = published(
        two_days.settings,
        "SELECT discussion_id, waiting_since, waiting_days, url, asker, theme "
        "FROM reporting.discussions_awaiting_answer",
    )
    statuses = expected_statuses(fixture_data)
    statuses.pop(two_days.answered_discussion)  # answered on day 2
    statuses.pop(two_days.world.removed_discussion)  # removed from the portal on day 2
    threads = {thread["id"]: thread for thread in sample_threads(fixture_data)}
    awaiting = sorted(
        (key for key, (status, _) in statuses.items() if status == "awaiting_producer"),
        key=lambda key: (threads[key]["last_reuser_message"], key),
    )
    assert rows["discussion_id"].to_list() == awaiting
    for row in rows.iter_rows(named=True):
        since = threads[row["discussion_id"]]["last_reuser_message"]
        assert row["waiting_since"] == since
        assert row["waiting_days"] == (DAY_2 - since.astimezone(PARIS).date()).days
        assert "discussion_id=" + row["discussion_id"] in row["url"]
        assert row["theme"] in {"accessibility", "freshness", "reliability", "usability", "other"}


def test_response_times_per_dataset_and_month(two_days: TwoDays, fixture_data: dict) -> None:
    threads = sample_threads(fixture_data)
    day_2_answer = dt.datetime(2026, 11, 21, 8, tzinfo=dt.UTC)
    for thread in threads:
        if thread["id"] == two_days.answered_discussion:
            thread["first_answer"] = min(filter(None, [thread["first_answer"], day_2_answer]))
    rows = published(two_days.settings, "SELECT * FROM reporting.response_times WHERE discussions_opened > 0")
    got = {(row["dataset_id"], row["month"]): row for row in rows.iter_rows(named=True)}
    months: dict[tuple[str, str], list[dict]] = {}
    for thread in threads:
        months.setdefault((thread["dataset_id"], f"{thread['created'].astimezone(PARIS):%Y-%m}"), []).append(thread)
    for key, opened in months.items():
        days = sorted((t["first_answer"] - t["created"]).total_seconds() / 86400 for t in opened if t["first_answer"])
        row = got[key]
        assert row["discussions_opened"] == len(opened), key
        assert row["answered"] == len(days), key
        if days:
            median = (days[(len(days) - 1) // 2] + days[len(days) // 2]) / 2
            assert row["median_days_to_first_answer"] == pytest.approx(median, abs=1e-4), key
            capped = sum(min(d, 30) for d in days) / len(days)
            assert row["mean_days_to_first_answer_capped"] == pytest.approx(capped, abs=1e-4), key
        within = sum(d <= 7 for d in days) / len(opened)
        assert row["answered_within_7_days_share"] == pytest.approx(within, abs=1e-4), key
    month_end = dt.datetime(2023, 12, 1, tzinfo=PARIS)
    backlog = published(
        two_days.settings,
        f"SELECT open_backlog_at_month_end FROM reporting.response_times "
        f"WHERE dataset_id = '{GROWING}' AND month = '2023-11'",
    ).item()
    assert backlog == sum(
        t["dataset_id"] == GROWING
        and t["created"] < month_end
        and (t["closed"] is None or t["closed"] >= month_end)
        and (t["first_answer"] is None or t["first_answer"] >= month_end)
        for t in threads
    )


def test_weekly_digest_for_each_organization(two_days: TwoDays, fixture_data: dict) -> None:
    reports = two_days.settings.paths.reports_dir
    slugs = {entry["organization"]["slug"] for entry in fixture_data["datasets"]}  # W47 holds both days
    assert {path.name for path in reports.glob("*-W47.html")} == {f"{slug}-2026-W47.html" for slug in slugs}
    barometre = (reports / "service-d-information-du-gouvernement-2026-W47.md").read_text(encoding="utf-8")
    assert "Baromètre des résultats de l’action publique" in barometre
    awaiting = published(
        two_days.settings,
        f"SELECT url FROM reporting.discussions_awaiting_answer WHERE dataset_id = '{GROWING}'",
    )["url"].to_list()
    assert awaiting and all(url in barometre for url in awaiting)


def test_reuse_history(two_days: TwoDays, fixture_data: dict) -> None:
    rows = published(
        two_days.settings,
        "SELECT reuse_id, dataset_id, topic, owner_type, owner_name, views, removed_date, last_seen_date "
        "FROM reporting.reuses",
    )
    by_key = {(row["reuse_id"], row["dataset_id"]): row for row in rows.iter_rows(named=True)}
    removed = by_key[(two_days.world.removed_reuse, SIRENE)]
    assert (removed["last_seen_date"], removed["removed_date"]) == (DAY_1, DAY_2)
    assert all(row["removed_date"] is None for key, row in by_key.items() if key[0] != two_days.world.removed_reuse)
    sample = {(r["id"], e["dataset"]["id"]): r for e in fixture_data["datasets"] for r in e["reuses"]}
    for key, reuse in sample.items():
        assert by_key[key]["topic"] == reuse["topic"]
        assert by_key[key]["views"] == reuse["metrics"]["views"]
        organization = reuse.get("organization")
        assert by_key[key]["owner_name"] == (organization["name"] if organization else None)
        assert by_key[key]["owner_type"] == ("organization" if organization else None)
    new = published(two_days.settings, "SELECT reuse_id, dataset_id, in_last_7_days FROM reporting.new_reuses")
    assert new.rows() == [("6a0000000000000000000001", NEW_REUSE_ON, True)]  # day-1 reuses are the baseline


def test_reusers_and_interview_candidates(two_days: TwoDays, fixture_data: dict) -> None:
    reusers = published(two_days.settings, "SELECT * FROM reporting.reusers WHERE reuser_id = '" + ETALAB + "'")
    etalab = {
        (r["id"], e["dataset"]["id"])
        for e in fixture_data["datasets"]
        for r in e["reuses"]
        if (r.get("organization") or {}).get("id") == ETALAB
    } | {("6a0000000000000000000001", NEW_REUSE_ON)}  # the reuse added on day 2 is Etalab's
    row = reusers.row(0, named=True)
    assert row["reuses_published"] == len({reuse for reuse, _ in etalab})
    assert row["datasets_reused"] == len({dataset for _, dataset in etalab})
    # Etalab's reuses were all published years ago (the day-2 one is a copy): the score is halved
    assert row["last_activity_at"].year < 2026
    assert row["engagement_score"] == (5 * row["reuses_published"] + 3 * row["datasets_engaged"]) / 2
    candidates = published(two_days.settings, "SELECT dataset_id, rank, why FROM reporting.interview_candidates")
    assert candidates.group_by("dataset_id").len()["len"].max() <= 5
    top = candidates.filter((pl.col("dataset_id") == NEW_REUSE_ON) & (pl.col("rank") == 1))
    assert top["why"].item().startswith("published 1 reuse(s) (")


def test_event_impact(two_days: TwoDays) -> None:
    impact = published(two_days.settings, "SELECT * FROM reporting.event_impact")
    row = impact.row(0, named=True)
    assert impact.height == 1 and row["dataset_id"] == GROWING and row["kind"] == "workshop"
    assert (row["views_after"], row["downloads_after"], row["days_observed_after"]) == (100, 7, 1)
    assert (row["views_before"], row["days_observed_before"]) == (None, 0)  # day 1 has no delta yet


def test_survey_results(two_days: TwoDays) -> None:
    summary = published(two_days.settings, "SELECT * FROM reporting.survey_summary ORDER BY dataset_id")
    assert summary["dataset_id"].to_list() == [SIRENE, GROWING]
    growing = summary.row(1, named=True)
    assert (growing["responses"], growing["respondents"], growing["mean_satisfaction"]) == (2, 2, 3.0)
    assert growing["satisfied_share"] == 0.5
    assert set(growing["top_needs_themes"].split(", ")) == {"freshness (1)", "accessibility (1)"}
    responses = published(two_days.settings, "SELECT respondent_hash, needs FROM reporting.survey_responses")
    hashes = responses["respondent_hash"].to_list()
    assert hashes[0] == hashes[2] != hashes[1]  # the same address, whatever its case
    database = (two_days.settings.paths.published_database).read_bytes()
    assert b"example.org" not in database


def test_a_removed_discussion_leaves_the_backlog(two_days: TwoDays) -> None:
    removed = two_days.world.removed_discussion
    rows = published(
        two_days.settings, f"SELECT removed_date FROM reporting.discussions WHERE discussion_id = '{removed}'"
    )
    assert rows.item() == DAY_2
    others = published(two_days.settings, "SELECT count(*) FROM reporting.discussions WHERE removed_date IS NOT NULL")
    assert others.item() == 1
