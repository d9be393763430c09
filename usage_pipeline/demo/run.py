"""`usage-pipeline demo`: a few days of refreshes against a generated portal served on 127.0.0.1."""

import datetime as dt
from pathlib import Path

from usage_pipeline import cli
from usage_pipeline.demo.portal_server import PortalServer, World
from usage_pipeline.demo.world import advance_day, generate_world
from usage_pipeline.settings import Settings


def host_reuse_sites(world: World, base_url: str) -> None:
    """Point the reuses at sites served by the demo portal (one in seven is gone), for the link checks."""
    reuses = sorted({reuse["id"]: reuse for entry in world.entries.values() for reuse in entry["reuses"]}.items())
    for index, (reuse_id, reuse) in enumerate(reuses):
        reuse["url"] = f"{base_url}/reuse-sites/{'gone/' if index % 7 == 3 else ''}{reuse_id}"


def run_demo(data_dir: Path, *, days: int = 3, seed: int = 0) -> None:
    """Generate a portal, refresh once a day for ``days`` days ending today, print where to look."""
    first_day = dt.date.today() - dt.timedelta(days=days - 1)
    world = generate_world(2, 8, seed=seed, today=first_day)
    organizations = tuple(organization["slug"] for organization in world.organizations.values())
    with PortalServer(world) as server:
        print(f"demo portal (udata API v1 + metrics API) on {server.url}, organizations: {', '.join(organizations)}")
        host_reuse_sites(world, server.url)
        settings = Settings(
            portal_url=server.url,
            metrics_api_url=server.url,
            organizations=organizations,
            data_dir=data_dir,
            start_date=first_day - dt.timedelta(days=7),
        )
        instance = cli.dagster_instance(settings)
        for offset in range(days):
            outcome = cli.refresh(settings, first_day + dt.timedelta(days=offset), instance)
            cli.print_summary(outcome, settings)
            if offset < days - 1:
                advance_day(world, seed=seed + offset)
    published = settings.published_dir.resolve()
    print(
        f"\nDone. The published tables:\n"
        f"  duckdb -readonly {published}/usage.duckdb -c 'FROM reporting.dataset_usage_daily LIMIT 10'\n"
        f"  {published}/parquet/*.parquet\n"
        f"The runs and assets in the Dagster UI:\n"
        f"  DAGSTER_HOME={(data_dir / 'dagster_home').resolve()} USAGE_DATA_DIR={data_dir.resolve()} "
        f"USAGE_START_DATE={settings.start_date} dagster dev -w workspace.yaml"
    )
