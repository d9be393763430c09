"""Reuses nobody declared: the lead sources against local GitHub and HAL servers and the portal, end to end."""

import asyncio
import dataclasses
import datetime as dt
import socket
from collections.abc import Iterator
from pathlib import Path

import duckdb
import pytest

from usage_pipeline import cli
from usage_pipeline.demo.lead_servers import GitHubServer, HalServer, citing_works
from usage_pipeline.demo.portal_server import PortalServer, World
from usage_pipeline.leads.asset import SourceRun, plan, run_source
from usage_pipeline.leads.github import GitHubSource
from usage_pipeline.leads.hal import HalSource
from usage_pipeline.leads.sources import DatasetIdentifiers, LeadSource, excerpt
from usage_pipeline.leads.statuses import parse_statuses
from usage_pipeline.portal.client import PortalClient
from usage_pipeline.settings import Settings, SettingsError
from usage_pipeline_tests.conftest import GENERATED_ONLY, world_settings

TOKEN = "ghp_test-token"
DAY_1, DAY_2 = dt.date(2026, 11, 20), dt.date(2026, 11, 21)
BUDGET = DatasetIdentifiers("5f0a00000000000000000001", "budget-primitif", "Budget primitif", ("r-1", "r-2"))


def search(source: LeadSource, datasets: list[DatasetIdentifiers]) -> SourceRun:
    async def go() -> SourceRun:
        async with PortalClient(concurrency=1, timeout=5, max_elapsed=1) as client:
            return await run_source(source, client, datasets)

    return asyncio.run(go())


def test_github_code_and_repository_search() -> None:
    repositories = [
        {"full_name": "a/carte", "description": "x", "files": {"app.js": "fetch('https://www.data.gouv.fr/fr/datasets/budget-primitif/')"}},
        {"full_name": "b/notebook", "description": "y", "files": {"n.py": "read_csv('https://www.data.gouv.fr/fr/datasets/r/r-2')"}},
        {"full_name": "c/outil", "description": "Outil sur budget-primitif", "readme": ""},
        {"full_name": "d/autre", "description": "rien", "files": {"x.py": "nothing here"}},
    ]  # fmt: skip
    with GitHubServer(repositories, token=TOKEN) as github:
        run = search(GitHubSource(github.url, TOKEN), [BUDGET])
        assert github.counts() == {"code": 2, "repositories": 1}
    assert run.stopped is None and run.searches == [
        {"dataset_id": BUDGET.dataset_id, "requests": 3, "leads": 3, "error": None}
    ]
    leads = {lead.url: lead for lead in run.leads}
    assert sorted(leads) == [
        "https://github.com/a/carte",
        "https://github.com/b/notebook",
        "https://github.com/c/outil",
    ]
    assert leads["https://github.com/a/carte"].matched == "datasets/budget-primitif"
    assert leads["https://github.com/a/carte"].excerpt.startswith(
        "app.js: fetch('https://www.data.gouv.fr/fr/datasets/"
    )
    assert leads["https://github.com/b/notebook"].matched == "datasets/r/r-2"
    assert (leads["https://github.com/c/outil"].author, leads["https://github.com/c/outil"].title) == ("c", "c/outil")


def test_github_rate_limits_stop_the_source_until_the_next_run() -> None:
    other = dataclasses.replace(BUDGET, dataset_id="5f0a00000000000000000002", slug="autre")
    with GitHubServer([], token=TOKEN, remaining=4) as github:  # 4 searches left: the second dataset hits the limit
        run = search(GitHubSource(github.url, TOKEN), [BUDGET, other, BUDGET])
        assert sum(github.counts().values()) == 5, "no search after the 403"
    assert [row["dataset_id"] for row in run.searches] == [BUDGET.dataset_id]  # `other` waits for the next run
    assert run.stopped.startswith("rate limited (") and "answered 403: rate limit reached" in run.stopped
    with GitHubServer([], token=TOKEN) as github:
        github.retry_after = "3600"  # a secondary rate limit: wait an hour, longer than a run may wait
        run = search(GitHubSource(github.url, TOKEN), [BUDGET])
        assert sum(github.counts().values()) == 1
    assert run.searches == [] and "answered 429: retry after 3600s" in run.stopped


def test_a_refused_query_and_an_empty_answer() -> None:
    too_long = dataclasses.replace(BUDGET, slug="x" * 300)  # GitHub refuses queries over 256 characters: 422
    with GitHubServer([], token=TOKEN) as github:
        run = search(GitHubSource(github.url, TOKEN), [too_long, BUDGET])
    assert run.searches[0]["error"].endswith('answered 422: {"message": "Validation Failed", "errors": '
                                              '[{"code": "invalid", "field": "q"}]}')  # fmt: skip
    assert run.searches[1] == {"dataset_id": BUDGET.dataset_id, "requests": 3, "leads": 0, "error": None}
    assert run.leads == [] and run.stopped is None


def test_hal_pages_through_the_publications_citing_a_dataset() -> None:
    documents = [
        {"docid": n, "uri_s": f"https://hal.science/hal-{n:08d}", "title_s": [f"Article {n}"],
         "authFullName_s": ["A B", "C D", "E F", "G H"], "abstract_s": ["… data.gouv.fr/fr/datasets/budget-primitif …"]}
        for n in range(130)
    ]  # fmt: skip
    documents.append({"docid": 999, "uri_s": "https://hal.science/hal-x", "title_s": ["Autre"], "abstract_s": ["rien"]})
    with HalServer(documents) as hal:
        run = search(HalSource(hal.url), [BUDGET])
        assert hal.counts() == {"search": 2}  # 100 rows, then the last 30
    assert len(run.leads) == 130 and run.searches[0]["requests"] == 2
    first = run.leads[0]
    assert (first.url, first.title, first.author) == (
        "https://hal.science/hal-00000000",
        "Article 0",
        "A B, C D, E F et al.",
    )
    assert first.matched == "datasets/budget-primitif"


def test_every_source_unreachable_is_told_not_raised() -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        closed = f"http://127.0.0.1:{probe.getsockname()[1]}"
    datasets = [dataclasses.replace(BUDGET, dataset_id=f"5f0a0000000000000000000{n}") for n in range(5)]
    run = search(HalSource(closed), datasets)
    assert len(run.searches) == 3 and all("connection error" in row["error"] for row in run.searches)
    assert run.stopped.startswith("3 failures in a row")


def test_plan_spends_the_budget_on_the_datasets_searched_longest_ago() -> None:
    datasets = [(dataclasses.replace(BUDGET, dataset_id=key), views) for key, views in (("a", 5), ("b", 50), ("c", 9))]
    today = DAY_2
    assert [d.dataset_id for d in plan(datasets, {}, 6, 3, today)] == ["b", "c"]  # never searched: most viewed first
    searched = {"b": DAY_1, "c": dt.date(2026, 11, 1)}
    assert [d.dataset_id for d in plan(datasets, searched, 6, 3, today)] == ["a", "c"]
    assert [d.dataset_id for d in plan(datasets, {"a": today, "b": today, "c": today}, 30, 1, today)] == []


def test_statuses_file_is_validated_row_by_row(tmp_path: Path) -> None:
    path = tmp_path / "reuse_leads_status.csv"
    path.write_text(
        "url,dataset_id,status\n"
        "https://github.com/a/carte,ds1,invited\n"
        "https://github.com/b/x,ds1,maybe\n"
        "javascript:alert(1),ds1,dismissed\n"
        "https://github.com/c/y,unknown,dismissed\n"
        "https://github.com/a/carte,ds1,Dismissed\n",
        encoding="utf-8",
    )
    statuses, problems = parse_statuses(path, {"ds1"})
    assert [(s.url, s.status, s.source_row) for s in statuses] == [("https://github.com/a/carte", "dismissed", 6)]
    assert problems == [
        f"{path}, row 3: status 'maybe' is not one of invited, dismissed, new",
        f"{path}, row 4: url 'javascript:alert(1)' is not an http(s) address",
        f"{path}, row 5: dataset 'unknown' is not a followed dataset",
        f"{path}, row 6: this lead already has a status in row 2; row 6 wins",
    ]


def test_lead_settings() -> None:
    assert Settings.from_env({}).lead_sources == ("hal", "portal")
    assert Settings.from_env({"USAGE_GITHUB_TOKEN": "t"}).lead_sources == ("github", "hal", "portal")
    assert Settings.from_env({"USAGE_LEAD_SOURCES": ""}).lead_sources == ()
    with pytest.raises(SettingsError, match="USAGE_GITHUB_TOKEN is not set"):
        Settings.from_env({"USAGE_LEAD_SOURCES": "github,hal"})
    with pytest.raises(SettingsError, match=r"USAGE_LEAD_SOURCES names \['gitlab'\]"):
        Settings.from_env({"USAGE_LEAD_SOURCES": "gitlab"})
    assert excerpt("a " * 300, None, 20) == "a a a a a a a a a a …"


@pytest.fixture
def lead_servers(world: World) -> Iterator[tuple[GitHubServer, HalServer]]:
    repositories, documents, unlinked = citing_works(world)
    world.unlinked_reuses.extend(unlinked)
    with GitHubServer(repositories, token=TOKEN) as github, HalServer(documents) as hal:
        yield github, hal


def _leads(settings: Settings) -> list[tuple]:
    with duckdb.connect(str(settings.paths.published_database), read_only=True) as conn:
        return conn.execute(
            "SELECT source, url, dataset_id, status, first_seen_date, last_seen_date FROM reporting.reuse_leads "
            "ORDER BY source, url"
        ).fetchall()


@GENERATED_ONLY
def test_leads_from_every_source_then_declared_and_invited(
    world: World,
    portal: PortalServer,
    lead_servers: tuple[GitHubServer, HalServer],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture,
) -> None:
    github, hal = lead_servers
    monkeypatch.setenv("DAGSTER_HOME", str(tmp_path / "dagster_home"))
    monkeypatch.setenv("USAGE_GITHUB_TOKEN", TOKEN)
    settings = dataclasses.replace(
        world_settings(portal, world, tmp_path / "data"),
        lead_sources=("github", "hal", "portal"), github_token=TOKEN, github_api_url=github.url, hal_api_url=hal.url,
    )  # fmt: skip
    instance = cli.dagster_instance(settings)
    cli.refresh(settings, DAY_1, instance)
    day_1 = _leads(settings)
    assert {row[0] for row in day_1} == {"github", "hal", "portal"}
    assert ("github", "https://github.com/collectif-velo/carte-des-donnees") in {row[:2] for row in day_1}
    assert ("portal", "https://appli.example.org/usagers") in {row[:2] for row in day_1}
    assert ("hal", "https://hal.science/hal-04242424") in {row[:2] for row in day_1}
    assert {row[3] for row in day_1} == {"new"} and {row[4] for row in day_1} == {DAY_1}
    digests = "".join(path.read_text() for path in sorted(settings.paths.reports_dir.glob("*-W47.md")))
    assert digests.count("## Réutilisations à inviter") >= 1  # French by default
    assert "[collectif-velo/carte-des-donnees](https://github.com/collectif-velo/carte-des-donnees) (GitHub)" in digests
    assert f"Pourriez-vous le déclarer comme réutilisation ({portal.url}/admin/reuses/new, le jeu de données" in digests

    # The author declares the repository as a reuse of the dataset; the producer invited the HAL authors.
    carte = next(row for row in day_1 if row[1] == "https://github.com/collectif-velo/carte-des-donnees")
    model = next(reuse for entry in world.entries.values() for reuse in entry["reuses"])
    with world.lock:
        world.entries[carte[2]]["reuses"].append(
            {**model, "id": "6b1e00000000000000000042", "slug": "carte-des-donnees", "title": "Carte",
             "url": "https://github.com/collectif-velo/carte-des-donnees/tree/main"}
        )  # fmt: skip
    hal_lead = next(row for row in day_1 if row[0] == "hal")
    settings.paths.reuse_lead_statuses_file.write_text(
        f"url,dataset_id,status\n{hal_lead[1]},{hal_lead[2]},invited\nhttps://x.org,nope,invited\n", encoding="utf-8"
    )
    capsys.readouterr()
    outcome = cli.refresh(settings, DAY_2, instance)
    cli.print_summary(outcome, settings)
    day_2 = {row[1]: row for row in _leads(settings)}
    assert day_2[carte[1]][3] == "declared"
    assert day_2[hal_lead[1]][3] == "invited" and day_2[hal_lead[1]][4:] == (DAY_1, DAY_2)  # found again
    assert "dataset 'nope' is not a followed dataset" in capsys.readouterr().out
    digests = [path.read_text() for path in sorted(settings.paths.reports_dir.glob("*-W47.md"))]
    invite = "".join(text.split("## Réutilisations à inviter")[1].split("\n---")[0] for text in digests if
                     "## Réutilisations à inviter" in text)  # fmt: skip
    assert "collectif-velo/carte-des-donnees" not in invite and hal_lead[1] not in invite  # declared, invited
    assert "etudiant-data/projet-tutore" in invite  # still new


@GENERATED_ONLY
def test_the_run_stays_green_when_every_lead_source_fails(
    world: World, portal: PortalServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        closed = f"http://127.0.0.1:{probe.getsockname()[1]}"
    monkeypatch.setenv("DAGSTER_HOME", str(tmp_path / "dagster_home"))
    monkeypatch.setenv("USAGE_GITHUB_TOKEN", TOKEN)
    settings = dataclasses.replace(
        world_settings(portal, world, tmp_path / "data"),
        lead_sources=("github", "hal"), github_token=TOKEN, github_api_url=closed, hal_api_url=closed,
        http_timeout=2,
    )  # fmt: skip
    outcome = cli.refresh(settings, DAY_1, cli.dagster_instance(settings))
    assert outcome.tables["reuse_leads"] == 0 and outcome.tables["datasets"] > 0
    told = "\n".join(outcome.producer_file_problems)
    assert "lead_sources_answered" in told and "github stopped for this run: 3 failures in a row" in told
    assert "hal stopped for this run" in told
