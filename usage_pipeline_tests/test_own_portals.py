"""End to end: data.gouv.fr and the producer's own Opendatasoft and CKAN portals, side by side.

One scenario per world (generated, then the sample), shared by the tests. The sample has a dataset harvested from
opendata.caissedesdepots.fr (Opendatasoft) and one from trouver.datasud.fr (CKAN); the generated world gets two
datasets harvested the same way. Day 1 runs with an expired Opendatasoft key, day 2 with a valid one.
"""

import copy
import datetime as dt
from collections.abc import Iterator
from dataclasses import dataclass

import duckdb
import pytest

from usage_pipeline import cli
from usage_pipeline.demo.ckan_server import CkanServer, CkanWorld, generate_ckan_world
from usage_pipeline.demo.ods_server import DEMO_ANALYTICS_KEY, DEMO_EXPIRED_KEY, OdsServer, OdsWorld, generate_ods_world
from usage_pipeline.demo.portal_server import PortalServer, World
from usage_pipeline.settings import Settings
from usage_pipeline_tests.conftest import WORLD_PARAMS, load_world, world_settings

DAY_1, DAY_2 = dt.date(2026, 11, 20), dt.date(2026, 11, 21)
ODS_DOMAIN, CKAN_DOMAIN = "opendata.caissedesdepots.fr", "trouver.datasud.fr"
ODS_ID = "bailleurs_sociaux_region"
CKAN_ID = "0c5ad935-272e-4d9e-b0db-cdcb1a5309b8"
CKAN_NAME = "lignes-dautocars-urbains-et-interurbains-de-la-dlva"
ODS_PAGE = f"https://{ODS_DOMAIN}/explore/dataset/{ODS_ID}/"


def harvested_from(world: World, domain: str) -> list[str]:
    """The datasets data.gouv.fr harvested from a portal, by their harvest metadata."""
    return sorted(
        key for key, entry in world.entries.items() if (entry["dataset"].get("harvest") or {}).get("domain") == domain
    )


def harvest_like_the_sample(world: World) -> tuple[str, str]:
    """The dataset harvested from the Opendatasoft portal and the one from the CKAN portal.

    A world without such datasets (the generated one) gets two, recorded as data.gouv.fr's harvesters do
    (the sample's shapes: DCAT remote_id/remote_url/uri of the explore page; CKAN package id and page).
    """
    if not harvested_from(world, ODS_DOMAIN):
        ods_dataset, ckan_dataset = sorted(world.entries)[:2]
        world.entries[ods_dataset]["dataset"]["harvest"] = {
            "backend": "DCAT", "domain": ODS_DOMAIN, "remote_id": ODS_PAGE, "remote_url": ODS_PAGE, "uri": ODS_PAGE,
        }  # fmt: skip
        world.entries[ckan_dataset]["dataset"]["harvest"] = {
            "backend": "CKAN", "domain": CKAN_DOMAIN, "remote_id": CKAN_ID,
            "remote_url": f"https://{CKAN_DOMAIN}/dataset/{CKAN_NAME}",
        }  # fmt: skip
    (ods_dataset,) = harvested_from(world, ODS_DOMAIN)
    (ckan_dataset,) = harvested_from(world, CKAN_DOMAIN)
    return ods_dataset, ckan_dataset


def own_portal_worlds() -> tuple[OdsWorld, CkanWorld]:
    """A local Opendatasoft portal holding the CDC twin, a local CKAN portal holding the DataSud twin."""
    ods = generate_ods_world(3, 10, seed=1, today=DAY_2, public_domain=ODS_DOMAIN)
    ods.add_dataset(ODS_ID, "Logements sociaux et bailleurs par région", counters={"download_count": 300})
    ods.record_calls(ODS_ID, DAY_1, "dataset_records", 7, referer=ODS_PAGE)
    ods.record_calls(ODS_ID, DAY_1, "download_dataset", 4)
    ods.record_calls(ODS_ID, DAY_1, "download_dataset", 6, bot=True)
    ods.record_calls(ODS_ID, DAY_1, "dataset_records", 2)
    ckan = generate_ckan_world(2, seed=1, today=DAY_2)
    twin = copy.deepcopy(ckan.datasets[0]) | {
        "id": CKAN_ID,
        "name": CKAN_NAME,
        "title": "Lignes d'autocars urbains et interurbains de la DLVA",
    }
    ckan.datasets.append(twin)
    ckan.tracking[CKAN_ID] = {"total": 120, "recent": 12}
    return ods, ckan


def set_month(world: World, dataset_id: str, month: str, visits: int, downloads: int) -> None:
    """The metrics API's row of a dataset for a month: these figures only."""
    world.metrics_rows[:] = [
        row for row in world.metrics_rows if (row["dataset_id"], row["metric_month"]) != (dataset_id, month)
    ]
    world.metrics_rows.append(
        {"__id": max((row["__id"] for row in world.metrics_rows), default=0) + 1, "dataset_id": dataset_id,
         "organization_id": world.entries[dataset_id]["organization_id"], "metric_month": month,
         "monthly_visit": visits, "monthly_download_resource": downloads}
    )  # fmt: skip


def write_portals(settings: Settings, ods_url: str, ckan_url: str) -> None:
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    (settings.data_dir / "portals.yaml").write_text(
        f"portals:\n  - name: cdc\n    kind: ods\n    url: {ods_url}\n    domain: {ODS_DOMAIN}\n"
        f"    api_key_env: CDC_ODS_KEY\n  - name: datasud\n    kind: ckan\n    url: {ckan_url}\n"
        f"    domain: {CKAN_DOMAIN}\n",
        encoding="utf-8",
    )


def query(settings: Settings, sql: str) -> list[tuple]:
    with duckdb.connect(str(settings.paths.published_database), read_only=True) as conn:
        return conn.execute(sql).fetchall()


@dataclass
class TwoDays:
    settings: Settings
    cdc_dataset: str
    datasud_dataset: str
    day_1_status: list[tuple]
    day_1_datasud_twins: list[tuple]
    day_1_published: bytes


@pytest.fixture(scope="module", params=WORLD_PARAMS)
def two_days(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[TwoDays]:
    world = load_world(request.param)
    cdc_dataset, datasud_dataset = harvest_like_the_sample(world)
    set_month(world, cdc_dataset, "2026-11", 30, 11)
    ods, ckan = own_portal_worlds()
    root = tmp_path_factory.mktemp(f"own_portals_{request.param}")
    with (
        PortalServer(world) as portal,
        OdsServer(ods) as ods_server,
        CkanServer(ckan) as ckan_server,
        pytest.MonkeyPatch.context() as env,
    ):
        env.setenv("DAGSTER_HOME", str(root / "dagster_home"))
        settings = world_settings(portal, world, root / "data")
        instance = cli.dagster_instance(settings)
        write_portals(settings, ods_server.url, ckan_server.url)
        env.setenv("CDC_ODS_KEY", DEMO_EXPIRED_KEY)
        cli.refresh(settings, DAY_1, instance)  # data.gouv.fr and the CKAN portal are still published
        with duckdb.connect(str(settings.paths.warehouse), read_only=True) as conn:
            status = conn.execute("SELECT portal, part, ok, detail FROM raw.own_portal_status ORDER BY ALL").fetchall()
        days = TwoDays(
            settings=settings,
            cdc_dataset=cdc_dataset,
            datasud_dataset=datasud_dataset,
            day_1_status=status,
            day_1_datasud_twins=query(
                settings, "SELECT dataset_id FROM reporting.dataset_twins WHERE portal = 'datasud'"
            ),
            day_1_published=settings.paths.published_database.read_bytes(),
        )
        env.setenv("CDC_ODS_KEY", DEMO_ANALYTICS_KEY)  # the key is renewed
        ckan.tracking[CKAN_ID] = {"total": 125, "recent": 15}  # 5 more page views on day 2
        cli.refresh(settings, DAY_2, instance)
        yield days


def test_an_expired_key_warns_and_the_run_goes_on(two_days: TwoDays) -> None:
    failed = [row for row in two_days.day_1_status if not row[2]]
    assert [(portal, part) for portal, part, _, _ in failed] == [("cdc", "catalog")]
    assert "was refused (expired or revoked?)" in failed[0][3]
    assert DEMO_EXPIRED_KEY not in str(two_days.day_1_status)
    assert two_days.day_1_datasud_twins == [(two_days.datasud_dataset,)]
    assert DEMO_EXPIRED_KEY.encode() not in two_days.day_1_published


def test_own_portals_next_to_data_gouv_fr(two_days: TwoDays) -> None:
    settings, cdc_dataset = two_days.settings, two_days.cdc_dataset
    twins = query(settings, "SELECT dataset_id, portal, portal_dataset_id, method FROM reporting.dataset_twins")
    assert sorted(twins) == sorted(
        [
            (cdc_dataset, "cdc", ODS_ID, "harvest_metadata"),
            (two_days.datasud_dataset, "datasud", CKAN_ID, "harvest_metadata"),
        ]
    )
    ods_day = query(
        settings,
        "SELECT dataset_id, views, downloads, api_calls, bot_calls, human_calls FROM reporting.own_portal_usage_daily "
        f"WHERE portal = 'cdc' AND portal_dataset_id = '{ODS_ID}' AND date = DATE '{DAY_1}'",
    )
    # day 1's calls, read on day 2 with the renewed key: 7 page views, 4 + 6 downloads, 2 API calls, 6 by bots
    assert ods_day == [(cdc_dataset, 7, 10, 2, 6, 13)]
    ckan_days = query(
        settings,
        "SELECT date, views, downloads, bot_calls FROM reporting.own_portal_usage_daily "
        f"WHERE portal = 'datasud' AND portal_dataset_id = '{CKAN_ID}'",
    )
    assert ckan_days == [(DAY_2, 5, None, None)]  # CKAN: views gained since the previous snapshot, no bot flag
    combined = query(settings, f"SELECT * FROM reporting.combined_usage WHERE dataset_id = '{cdc_dataset}'")
    assert combined == [(cdc_dataset, "2026-11", 30, 11, 7, 10, 2, round(6 / 19, 4))]
    comments = query(
        settings,
        "SELECT comment FROM duckdb_tables() WHERE table_name IN ('combined_usage', 'own_portal_usage_daily')",
    )
    assert all("counted on both sides" in comment for (comment,) in comments)
    assert DEMO_EXPIRED_KEY.encode() not in settings.paths.published_database.read_bytes()
