"""End to end: data.gouv.fr and the producer's own Opendatasoft and CKAN portals, side by side."""

import copy
import datetime as dt
from collections.abc import Iterator
from pathlib import Path

import dagster as dg
import duckdb
import pytest

from usage_pipeline import cli
from usage_pipeline.demo.ckan_server import CkanServer, generate_ckan_world
from usage_pipeline.demo.ods_server import DEMO_ANALYTICS_KEY, DEMO_EXPIRED_KEY, OdsServer, generate_ods_world
from usage_pipeline.demo.portal_server import World
from usage_pipeline.settings import Settings

DAY_1, DAY_2 = dt.date(2026, 11, 20), dt.date(2026, 11, 21)
CDC_DATASET = "5fa9901b0d72fc70afa686ec"  # harvested from opendata.caissedesdepots.fr (Opendatasoft)
DATASUD_DATASET = "612904755f59b6818346ea4d"  # harvested from trouver.datasud.fr (CKAN)
ODS_ID = "bailleurs_sociaux_region"
CKAN_ID = "0c5ad935-272e-4d9e-b0db-cdcb1a5309b8"


@pytest.fixture
def own_portals(world: World) -> Iterator[tuple[str, str, dict]]:
    """A local Opendatasoft portal holding the CDC twin, a local CKAN portal holding the DataSud twin."""
    ods = generate_ods_world(3, 10, seed=1, today=DAY_2, public_domain="opendata.caissedesdepots.fr")
    ods.add_dataset(ODS_ID, "Logements sociaux et bailleurs par région", counters={"download_count": 300})
    page = "https://opendata.caissedesdepots.fr/explore/dataset/bailleurs_sociaux_region/"
    ods.record_calls(ODS_ID, DAY_1, "dataset_records", 7, referer=page)
    ods.record_calls(ODS_ID, DAY_1, "download_dataset", 4)
    ods.record_calls(ODS_ID, DAY_1, "download_dataset", 6, bot=True)
    ods.record_calls(ODS_ID, DAY_1, "dataset_records", 2)
    ckan = generate_ckan_world(2, seed=1, today=DAY_2)
    twin = copy.deepcopy(ckan.datasets[0]) | {
        "id": CKAN_ID,
        "name": "lignes-dautocars-urbains-et-interurbains-de-la-dlva",
        "title": "Lignes d'autocars urbains et interurbains de la DLVA",
    }
    ckan.datasets.append(twin)
    ckan.tracking[CKAN_ID] = {"total": 120, "recent": 12}
    world.metrics_rows.append(
        {"__id": 1, "dataset_id": CDC_DATASET, "organization_id": world.entries[CDC_DATASET]["organization_id"],
         "metric_month": "2026-11", "monthly_visit": 30, "monthly_download_resource": 11}
    )  # fmt: skip
    with OdsServer(ods) as ods_server, CkanServer(ckan) as ckan_server:
        yield ods_server.url, ckan_server.url, {"ods": ods, "ckan": ckan}


def write_portals(settings: Settings, ods_url: str, ckan_url: str) -> None:
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    (settings.data_dir / "portals.yaml").write_text(
        f"portals:\n  - name: cdc\n    kind: ods\n    url: {ods_url}\n    domain: opendata.caissedesdepots.fr\n"
        f"    api_key_env: CDC_ODS_KEY\n  - name: datasud\n    kind: ckan\n    url: {ckan_url}\n"
        "    domain: trouver.datasud.fr\n",
        encoding="utf-8",
    )


def query(settings: Settings, sql: str) -> list[tuple]:
    with duckdb.connect(str(settings.published_dir / "usage.duckdb"), read_only=True) as conn:
        return conn.execute(sql).fetchall()


def test_own_portals_next_to_data_gouv_fr(
    settings: Settings,
    instance: dg.DagsterInstance,
    own_portals: tuple[str, str, dict],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    ods_url, ckan_url, worlds = own_portals
    write_portals(settings, ods_url, ckan_url)
    monkeypatch.setenv("CDC_ODS_KEY", DEMO_ANALYTICS_KEY)
    cli.refresh(settings, DAY_1, instance)
    worlds["ckan"].tracking[CKAN_ID] = {"total": 125, "recent": 15}  # 5 more page views on day 2
    cli.refresh(settings, DAY_2, instance)

    twins = query(settings, "SELECT dataset_id, portal, portal_dataset_id, method FROM reporting.dataset_twins")
    assert sorted(twins) == [
        (CDC_DATASET, "cdc", ODS_ID, "harvest_metadata"),
        (DATASUD_DATASET, "datasud", CKAN_ID, "harvest_metadata"),
    ]
    ods_day = query(
        settings,
        "SELECT dataset_id, views, downloads, api_calls, bot_calls, human_calls FROM reporting.own_portal_usage_daily "
        f"WHERE portal = 'cdc' AND portal_dataset_id = '{ODS_ID}' AND date = DATE '{DAY_1}'",
    )
    assert ods_day == [(CDC_DATASET, 7, 10, 2, 6, 13)]
    ckan_days = query(
        settings,
        "SELECT date, views, downloads, bot_calls FROM reporting.own_portal_usage_daily "
        f"WHERE portal = 'datasud' AND portal_dataset_id = '{CKAN_ID}'",
    )
    assert ckan_days == [(DAY_2, 5, None, None)]  # CKAN: views gained since the previous snapshot, no bot flag
    combined = query(settings, f"SELECT * FROM reporting.combined_usage WHERE dataset_id = '{CDC_DATASET}'")
    assert combined == [(CDC_DATASET, "2026-11", 30, 11, 7, 10, 2, round(6 / 19, 4))]
    comments = query(
        settings,
        "SELECT comment FROM duckdb_tables() WHERE table_name IN ('combined_usage', 'own_portal_usage_daily')",
    )
    assert all("counted on both sides" in comment for (comment,) in comments)


def test_an_expired_key_warns_and_the_run_goes_on(
    settings: Settings,
    instance: dg.DagsterInstance,
    own_portals: tuple[str, str, dict],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    ods_url, ckan_url, _ = own_portals
    write_portals(settings, ods_url, ckan_url)
    monkeypatch.setenv("CDC_ODS_KEY", DEMO_EXPIRED_KEY)
    cli.refresh(settings, DAY_1, instance)  # data.gouv.fr and the CKAN portal are still published
    with duckdb.connect(str(settings.warehouse_path), read_only=True) as conn:
        status = conn.execute("SELECT portal, part, ok, detail FROM raw.own_portal_status ORDER BY ALL").fetchall()
    failed = [row for row in status if not row[2]]
    assert [(portal, part) for portal, part, _, _ in failed] == [("cdc", "catalog")]
    assert "was refused (expired or revoked?)" in failed[0][3]
    assert DEMO_EXPIRED_KEY not in str(status)
    assert query(settings, "SELECT count(*) FROM reporting.dataset_twins WHERE portal = 'datasud'") == [(1,)]
    assert DEMO_EXPIRED_KEY.encode() not in Path(settings.published_dir / "usage.duckdb").read_bytes()
