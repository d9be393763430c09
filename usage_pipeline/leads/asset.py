"""raw/reuse_leads: each day, the lead sources search some followed datasets' identifiers, within a request budget
per source (the datasets searched longest ago first, then the most viewed), and what they find is appended.

A source that fails never fails the run: a rate limit stops it until the next run, an error on one dataset is
recorded and the next dataset searched (three in a row stop the source). Datasets not searched are searched on
the next days.
"""

import asyncio
import datetime as dt
from dataclasses import dataclass, field

import dagster as dg
import duckdb
import polars as pl
from dagster_duckdb import DuckDBResource
from pydantic import Field

from usage_pipeline.ingest.assets import RAW_SNAPSHOT_KEY, WAREHOUSE_POOL
from usage_pipeline.ingest.partitions import run_date
from usage_pipeline.leads.github import GitHubSource
from usage_pipeline.leads.hal import HalSource
from usage_pipeline.leads.portal import PortalSource
from usage_pipeline.leads.sources import DatasetIdentifiers, Lead, LeadSource
from usage_pipeline.portal.client import PortalClient, PortalError, RateLimited
from usage_pipeline.warehouse import Column, create_table, polars_schema, registered, table_schema, transaction

LEADS_KEY = dg.AssetKey(["raw", "reuse_leads"])
SOURCES_ANSWERED = "lead_sources_answered"
SIGHTINGS_TABLE = "raw.reuse_lead_sightings"
SEARCHES_TABLE = "raw.reuse_lead_searches"
SOURCES = ("github", "hal", "portal")
BUDGETS = {"github": 30, "hal": 60, "portal": 100}  # requests per run and source (docs/reuse-leads.md)
FAILURES_BEFORE_STOP = 3  # errors in a row after which a source rests until the next run

SIGHTINGS_COLUMNS = {
    "seen_date": Column("DATE", "Run date of the search that found it."),
    "source": Column("VARCHAR", f"Where it was found: {', '.join(SOURCES)}."),
    "dataset_id": Column("VARCHAR", "The followed dataset it cites."),
    "url": Column("VARCHAR", "The work: a repository, a HAL publication page, a reuse's own address."),
    "title": Column("VARCHAR", "Its title (a repository's owner/name)."),
    "author": Column("VARCHAR", "Its owner or authors, public names only."),
    "matched": Column("VARCHAR", "The dataset identifier found (a page, resource or API path, its slug or title)."),
    "excerpt": Column("VARCHAR", "Where it was found, one line, at most 200 characters (raw text)."),
}
SEARCHES_COLUMNS = {
    "searched_date": Column("DATE", "Run date of the search."),
    "source": Column("VARCHAR", f"The source: {', '.join(SOURCES)}."),
    "dataset_id": Column("VARCHAR", "The dataset searched."),
    "requests": Column("INTEGER", "Requests it cost."),
    "leads": Column("INTEGER", "Leads found."),
    "error": Column("VARCHAR", "Why the search failed; null when it succeeded."),
}
TABLES = {
    SIGHTINGS_TABLE: (
        "Every lead found by a lead source, one row per run date, source, dataset and work: reuses nobody declared "
        "on the dataset. Appended by raw/reuse_leads; reporting.reuse_leads sums it up.",
        SIGHTINGS_COLUMNS,
    ),
    SEARCHES_TABLE: (
        "Every search of a dataset by a lead source (one row per run date, source and dataset): what it cost, what "
        "it found, why it failed. The next runs search first the datasets searched longest ago.",
        SEARCHES_COLUMNS,
    ),
}

_FOLLOWED = """
select dataset_id, payload ->> '$.slug' as slug, payload ->> '$.title' as title,
    coalesce(json_extract_string(payload, '$.resources[*].id'), []) as resource_ids,
    coalesce(try_cast(payload ->> '$.metrics.views' as bigint), 0) as views
from raw.dataset_snapshots
qualify row_number() over (partition by dataset_id order by snapshot_date desc) = 1
"""


class LeadFinder(dg.ConfigurableResource):
    """Which lead sources run (USAGE_LEAD_SOURCES) and where they are (USAGE_GITHUB_API_URL, USAGE_HAL_API_URL,
    the portal of USAGE_PORTAL_URL); USAGE_GITHUB_TOKEN authenticates GitHub."""

    sources: list[str] = Field(default_factory=list)
    github_api_url: str = "https://api.github.com"
    github_token: str | None = None
    hal_api_url: str = "https://api.archives-ouvertes.fr"
    portal_url: str = "https://www.data.gouv.fr"
    timeout: float = 20.0

    def lead_sources(self) -> list[LeadSource]:
        built: dict[str, LeadSource] = {"hal": HalSource(self.hal_api_url), "portal": PortalSource(self.portal_url)}
        if self.github_token:
            built["github"] = GitHubSource(self.github_api_url, self.github_token)
        return [built[name] for name in self.sources if name in built]


def followed_datasets(conn: duckdb.DuckDBPyConnection) -> list[tuple[DatasetIdentifiers, int]]:
    """Every dataset of the latest snapshots that has a page, with its views."""
    return [
        (DatasetIdentifiers(dataset_id, slug, title or slug, tuple(resources)), views)
        for dataset_id, slug, title, resources, views in conn.execute(_FOLLOWED).fetchall()
        if slug
    ]


def plan(
    datasets: list[tuple[DatasetIdentifiers, int]],
    last_searched: dict[str, dt.date],
    budget: int,
    requests_per_dataset: int,
    today: dt.date,
) -> list[DatasetIdentifiers]:
    """The datasets one source searches today: not searched today yet, the longest ago (never first), then the
    most viewed, as many as ``budget`` requests allow."""
    waiting = [(dataset, views) for dataset, views in datasets if last_searched.get(dataset.dataset_id) != today]
    waiting.sort(key=lambda pair: (last_searched.get(pair[0].dataset_id, dt.date.min), -pair[1], pair[0].dataset_id))
    return [dataset for dataset, _ in waiting[: budget // requests_per_dataset]]


@dataclass
class SourceRun:
    """What one source did in a run."""

    source: str
    planned: int
    searches: list[dict] = field(default_factory=list)  # rows of raw.reuse_lead_searches
    leads: list[Lead] = field(default_factory=list)
    stopped: str | None = None  # why it stopped before the end of its plan


async def run_source(source: LeadSource, client: PortalClient, datasets: list[DatasetIdentifiers]) -> SourceRun:
    """Search ``datasets`` one after the other (search APIs are rate-limited); never raises."""
    run = SourceRun(source.name, len(datasets))
    failures = 0
    for dataset in datasets:
        try:
            result = await source.search(client, dataset)
        except RateLimited as error:
            until = dt.datetime.fromtimestamp(error.reset, dt.UTC).isoformat() if error.reset else "unknown"
            run.stopped = f"rate limited ({error}), allowed again at {until}"
            break
        except PortalError as error:
            run.searches.append({"dataset_id": dataset.dataset_id, "requests": 1, "leads": 0, "error": str(error)})
            failures += 1
            if failures >= FAILURES_BEFORE_STOP:
                run.stopped = f"{failures} failures in a row, the last: {error}"
                break
            continue
        failures = 0
        run.leads += result.leads
        run.searches.append(
            {"dataset_id": dataset.dataset_id, "requests": result.requests, "leads": len(result.leads), "error": None}
        )
    return run


async def run_sources(plans: list[tuple[LeadSource, list[DatasetIdentifiers]]], timeout: float) -> list[SourceRun]:
    """Every source at once, each on its own client (its own connections and retries)."""

    async def one(source: LeadSource, datasets: list[DatasetIdentifiers]) -> SourceRun:
        async with PortalClient(concurrency=1, timeout=timeout, max_elapsed=timeout) as client:
            return await run_source(source, client, datasets)

    return list(await asyncio.gather(*(one(source, datasets) for source, datasets in plans)))


def write_runs(conn: duckdb.DuckDBPyConnection, day: dt.date, runs: list[SourceRun]) -> None:
    """The day's searches and leads, in one transaction (a dataset searched again that day replaces its rows)."""
    searches = pl.DataFrame(
        [{"searched_date": day, "source": run.source, **row} for run in runs for row in run.searches],
        schema=polars_schema(SEARCHES_COLUMNS),
    )
    sightings = pl.DataFrame(
        [{"seen_date": day, **{name: getattr(lead, name) for name in list(SIGHTINGS_COLUMNS)[1:]}}
         for run in runs for lead in run.leads],
        schema=polars_schema(SIGHTINGS_COLUMNS),
    ).unique(subset=["source", "dataset_id", "url"], keep="first", maintain_order=True)  # fmt: skip
    with transaction(conn), registered(conn, "lead_searches", searches), registered(conn, "lead_sightings", sightings):
        conn.execute(
            f"DELETE FROM {SIGHTINGS_TABLE} AS t USING lead_searches AS s "
            "WHERE t.seen_date = s.searched_date AND t.source = s.source AND t.dataset_id = s.dataset_id"
        )
        conn.execute(
            f"DELETE FROM {SEARCHES_TABLE} AS t USING lead_searches AS s "
            "WHERE t.searched_date = s.searched_date AND t.source = s.source AND t.dataset_id = s.dataset_id"
        )
        conn.execute(f"INSERT INTO {SEARCHES_TABLE} SELECT * FROM lead_searches")
        conn.execute(f"INSERT INTO {SIGHTINGS_TABLE} SELECT * FROM lead_sightings")


@dg.asset(
    key=LEADS_KEY,
    deps=[RAW_SNAPSHOT_KEY],
    description=(
        "Reuses nobody declared: works on GitHub (USAGE_GITHUB_TOKEN), in HAL and among the portal's own reuses "
        "that cite a followed dataset's page, API or resource links (or name it) without being linked to it. A "
        f"request budget per source and run ({', '.join(f'{k} {v}' for k, v in BUDGETS.items())}), the datasets "
        f"searched longest ago first; appended to {SIGHTINGS_TABLE} and {SEARCHES_TABLE}. A failing source is "
        "reported, never a failed run."
    ),
    group_name="raw",
    pool=WAREHOUSE_POOL,
    kinds={"python", "duckdb"},
    metadata={"grain": "seen_date, source, dataset_id, url", "dagster/column_schema": table_schema(SIGHTINGS_COLUMNS)},
    check_specs=[
        dg.AssetCheckSpec(
            SOURCES_ANSWERED, asset=LEADS_KEY, description="every lead source searched its share of the datasets"
        )
    ],
)
def reuse_leads(context: dg.AssetExecutionContext, warehouse: DuckDBResource, lead_finder: LeadFinder):
    """Search today's share of the followed datasets with every configured source."""
    day = run_date(context.run.tags) or dt.date.today()
    sources = lead_finder.lead_sources()
    with warehouse.get_connection() as conn:
        for table, (description, columns) in TABLES.items():
            create_table(conn, table, description, columns)
        datasets = followed_datasets(conn)
        searched = conn.execute(
            f"SELECT source, dataset_id, max(searched_date) FROM {SEARCHES_TABLE} WHERE error IS NULL GROUP BY ALL"
        ).fetchall()
    last = {(source, dataset_id): when for source, dataset_id, when in searched}
    plans = [
        (source, plan(datasets, {d: w for (s, d), w in last.items() if s == source.name}, BUDGETS[source.name],
                      source.requests_per_dataset, day))
        for source in sources
    ]  # fmt: skip
    if not sources:
        context.log.info("no lead source configured (USAGE_LEAD_SOURCES)")
    runs = asyncio.run(run_sources(plans, lead_finder.timeout)) if sources else []
    with warehouse.get_connection() as conn:
        write_runs(conn, day, runs)
    summary, problems = {}, []
    for run in runs:
        requests = sum(row["requests"] for row in run.searches)
        failed = [row for row in run.searches if row["error"]]
        summary[run.source] = {
            "datasets_planned": run.planned, "datasets_searched": len(run.searches) - len(failed),
            "failed": len(failed), "requests": requests, "leads": len(run.leads), "stopped": run.stopped,
        }  # fmt: skip
        line = (
            f"{run.source}: {len(run.searches) - len(failed)}/{run.planned} datasets searched, {requests} requests, "
            f"{len(run.leads)} leads"
        )
        context.log.info(line)
        problems += [f"{run.source}: dataset {row['dataset_id']} not searched: {row['error']}" for row in failed[:5]]
        if run.stopped:
            problems.append(f"{run.source} stopped for this run: {run.stopped}; the rest waits for the next run")
    for problem in problems:
        context.log.warning(problem)
    yield dg.MaterializeResult(
        metadata={"run_date": day.isoformat(), "sources": dg.MetadataValue.json(summary), "datasets": len(datasets)}
    )
    yield dg.AssetCheckResult(
        check_name=SOURCES_ANSWERED,
        passed=not problems,
        severity=dg.AssetCheckSeverity.WARN,
        metadata={"problems": dg.MetadataValue.md("\n".join(f"- {problem}" for problem in problems) or "none")},
    )
