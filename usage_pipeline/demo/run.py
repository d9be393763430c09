"""`usage-pipeline demo`: a few days of refreshes against a generated portal served on 127.0.0.1.

The generated data.gouv.fr-like portal comes with the producer's own Opendatasoft and CKAN portals (also
generated and served locally): some datasets are harvested from them, so twins and combined usage show.
"""

import datetime as dt
import os
from contextlib import ExitStack
from pathlib import Path

from usage_pipeline import cli
from usage_pipeline.demo.ckan_server import CkanServer, CkanWorld, generate_ckan_world
from usage_pipeline.demo.ods_server import DEMO_ANALYTICS_KEY, OdsServer, OdsWorld, generate_ods_world
from usage_pipeline.demo.portal_server import PortalServer, World
from usage_pipeline.demo.world import advance_day, generate_world
from usage_pipeline.settings import Settings

ODS_DOMAIN = "data.exemple-metropole.fr"
CKAN_DOMAIN = "ckan.exemple-region.fr"
ODS_KEY_VARIABLE = "DEMO_ODS_KEY"


def host_reuse_sites(world: World, base_url: str) -> None:
    """Point the reuses at sites served by the demo portal (one in seven is gone), for the link checks."""
    reuses = sorted({reuse["id"]: reuse for entry in world.entries.values() for reuse in entry["reuses"]}.items())
    for index, (reuse_id, reuse) in enumerate(reuses):
        reuse["url"] = f"{base_url}/reuse-sites/{'gone/' if index % 7 == 3 else ''}{reuse_id}"


def harvest_from_own_portals(world: World, ods: OdsWorld, ckan: CkanWorld) -> None:
    """Make the first datasets harvested copies of own-portal datasets, as data.gouv.fr's harvesters record them."""
    datasets = [entry["dataset"] for entry in world.entries.values()]
    for dataset, ods_id in zip(datasets[:3], list(ods.datasets)[:3], strict=False):
        explore = f"https://{ODS_DOMAIN}/explore/dataset/{ods_id}/"
        dataset["harvest"] = {"backend": "DCAT", "domain": ODS_DOMAIN, "remote_id": explore, "remote_url": explore}
    for dataset, package in zip(datasets[3:5], ckan.datasets[:2], strict=False):
        remote_url = f"https://{CKAN_DOMAIN}/dataset/{package['name']}"
        dataset["harvest"] = {
            "backend": "CKAN",
            "domain": CKAN_DOMAIN,
            "remote_id": package["id"],
            "remote_url": remote_url,
        }


def write_portals_yaml(data_dir: Path, ods_url: str, ckan_url: str) -> None:
    data_dir.mkdir(parents=True, exist_ok=True)
    (data_dir / "portals.yaml").write_text(
        f"# Written by `usage-pipeline demo`: the generated own portals served on 127.0.0.1.\n"
        f"portals:\n  - name: metropole\n    kind: ods\n    url: {ods_url}\n    domain: {ODS_DOMAIN}\n"
        f"    api_key_env: {ODS_KEY_VARIABLE}\n  - name: region\n    kind: ckan\n    url: {ckan_url}\n"
        f"    domain: {CKAN_DOMAIN}\n",
        encoding="utf-8",
    )


def run_demo(data_dir: Path, *, days: int = 3, seed: int = 0) -> None:
    """Generate the portals, refresh once a day for ``days`` days ending today, print where to look."""
    today = dt.date.today()
    first_day = today - dt.timedelta(days=days - 1)
    world = generate_world(2, 8, seed=seed, today=first_day)
    ods = generate_ods_world(6, 60, seed=seed, today=today, public_domain=ODS_DOMAIN)
    ckan = generate_ckan_world(4, seed=seed, today=today)
    harvest_from_own_portals(world, ods, ckan)
    organizations = tuple(organization["slug"] for organization in world.organizations.values())
    with ExitStack() as servers:
        server = servers.enter_context(PortalServer(world))
        ods_server = servers.enter_context(OdsServer(ods))
        ckan_server = servers.enter_context(CkanServer(ckan))
        print(f"demo portal (udata API v1 + metrics API) on {server.url}, organizations: {', '.join(organizations)}")
        print(f"own portals: Opendatasoft on {ods_server.url}, CKAN on {ckan_server.url}")
        host_reuse_sites(world, server.url)
        write_portals_yaml(data_dir, ods_server.url, ckan_server.url)
        os.environ.setdefault(ODS_KEY_VARIABLE, DEMO_ANALYTICS_KEY)
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
                for tracking in ckan.tracking.values():
                    tracking["total"] += 3 + offset  # a few page views a day on the CKAN portal
    published = settings.published_dir.resolve()
    print(
        f"\nDone. The published tables:\n"
        f"  duckdb -readonly {published}/usage.duckdb -c 'FROM reporting.dataset_usage_daily LIMIT 10'\n"
        f"  {published}/parquet/*.parquet\n"
        f"  {published}/reports/*.html (weekly digests), {published}/quality/index.html (quality checks)\n"
        f"The runs and assets in the Dagster UI:\n"
        f"  DAGSTER_HOME={(data_dir / 'dagster_home').resolve()} USAGE_DATA_DIR={data_dir.resolve()} "
        f"USAGE_START_DATE={settings.start_date} dagster dev -w workspace.yaml"
    )
