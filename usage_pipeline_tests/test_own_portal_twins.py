"""portals.yaml and twins: each data.gouv.fr dataset linked to its twin on the producer's portal."""

import datetime as dt
from pathlib import Path

import pytest

from usage_pipeline.demo.ckan_server import generate_ckan_world
from usage_pipeline.demo.ods_server import generate_ods_world
from usage_pipeline.demo.run import CKAN_DOMAIN, ODS_DOMAIN, harvest_from_own_portals
from usage_pipeline.own_portals.assets import monitoring_window
from usage_pipeline.own_portals.config import OwnPortal, PortalsConfigError, load_portals
from usage_pipeline.own_portals.twins import HARVEST_METADATA, RESOURCE_URL, TITLE, PortalDataset, find_twin
from usage_pipeline_tests.conftest import generated_world

CDC = OwnPortal("cdc", "ods", "https://opendata.caissedesdepots.fr", "opendata.caissedesdepots.fr")
PIGMA = OwnPortal("pigma", "ckan", "https://www.pigma.org", "www.pigma.org")
DATASUD = OwnPortal("datasud", "ckan", "https://trouver.datasud.fr", "trouver.datasud.fr")


def sample_dataset(fixture_data: dict, dataset_id: str) -> dict:
    (entry,) = [entry for entry in fixture_data["datasets"] if entry["dataset"]["id"] == dataset_id]
    return entry["dataset"] | {"resources": entry["resources"]}


def test_the_three_harvested_sample_datasets(fixture_data: dict) -> None:
    ods = find_twin(sample_dataset(fixture_data, "5fa9901b0d72fc70afa686ec"), CDC, [])
    assert (ods.portal, ods.portal_dataset_id, ods.method) == ("cdc", "bailleurs_sociaux_region", HARVEST_METADATA)
    pigma = find_twin(sample_dataset(fixture_data, "613a1108a962ea8114b25369"), PIGMA, [])
    assert (pigma.portal_dataset_id, pigma.method) == ("f89661e0-bc0a-44f7-928e-03b43a2e7791", HARVEST_METADATA)
    catalog = [
        PortalDataset("0c5ad935-272e-4d9e-b0db-cdcb1a5309b8", ("lignes-dautocars-urbains-et-interurbains-de-la-dlva",))
    ]
    datasud = find_twin(sample_dataset(fixture_data, "612904755f59b6818346ea4d"), DATASUD, catalog)
    assert (datasud.portal_dataset_id, datasud.method) == ("0c5ad935-272e-4d9e-b0db-cdcb1a5309b8", HARVEST_METADATA)
    assert find_twin(sample_dataset(fixture_data, "5fa9901b0d72fc70afa686ec"), DATASUD, catalog) is None


def test_generated_harvested_datasets() -> None:
    """The demo's harvested datasets (DCAT from Opendatasoft, CKAN) find their twins by their harvest metadata."""
    world = generated_world()
    ods = generate_ods_world(4, 2, seed=3, today=dt.date(2026, 11, 20), public_domain=ODS_DOMAIN)
    ckan = generate_ckan_world(3, seed=3, today=dt.date(2026, 11, 20))
    harvest_from_own_portals(world, ods, ckan)
    portals = {
        ODS_DOMAIN: (
            OwnPortal("metropole", "ods", "https://ods.example", ODS_DOMAIN),
            [PortalDataset(key, (), item["metas"]["default"]["title"]) for key, item in ods.datasets.items()],
        ),
        CKAN_DOMAIN: (
            OwnPortal("region", "ckan", "https://ckan.example", CKAN_DOMAIN),
            [PortalDataset(package["id"], (package["name"],), package["title"]) for package in ckan.datasets],
        ),
    }
    found = set()
    for entry in world.entries.values():
        harvest = entry["dataset"].get("harvest")
        if not harvest:
            continue
        portal, catalog = portals[harvest["domain"]]
        twin = find_twin(entry["dataset"] | {"resources": entry["resources"]}, portal, catalog)
        # the Opendatasoft id is the last part of the explore page's path; the CKAN package id is the remote id
        expected = harvest["remote_id"].rstrip("/").rsplit("/", 1)[-1]
        assert (twin.dataset_id, twin.portal_dataset_id, twin.method) == (
            entry["dataset"]["id"], expected, HARVEST_METADATA
        )  # fmt: skip
        found.add(portal.name)
    assert found == {"metropole", "region"}  # both kinds were tried


def test_legacy_bare_remote_id_with_domain() -> None:
    dataset = {"id": "d1", "harvest": {"remote_id": "impots-locaux", "domain": "opendata.caissedesdepots.fr"}}
    twin = find_twin(dataset, CDC, [PortalDataset("impots-locaux", (), "Impôts locaux")])
    assert (twin.portal_dataset_id, twin.method) == ("impots-locaux", HARVEST_METADATA)


def test_resource_url_then_title_when_harvest_is_missing() -> None:
    catalog = [
        PortalDataset("qualite-air", (), "Qualité de l'air"),
        PortalDataset("budget", (), "Budget primitif 2025"),
    ]
    by_url = {
        "id": "d2",
        "title": "Something else",
        "resources": [
            {"url": "https://opendata.caissedesdepots.fr/api/explore/v2.1/catalog/datasets/qualite-air/exports/csv"}
        ],
    }
    assert find_twin(by_url, CDC, catalog).method == RESOURCE_URL
    assert find_twin(by_url, CDC, catalog).portal_dataset_id == "qualite-air"
    by_title = {"id": "d3", "title": "BUDGET  primitif 2025 ", "resources": []}
    twin = find_twin(by_title, CDC, catalog)
    assert (twin.portal_dataset_id, twin.method) == ("budget", TITLE)
    ambiguous = [*catalog, PortalDataset("budget-bis", (), "Budget primitif 2025")]
    assert find_twin(by_title, CDC, ambiguous) is None


def test_portals_yaml(tmp_path: Path) -> None:
    assert load_portals(tmp_path / "portals.yaml") == []
    path = tmp_path / "portals.yaml"
    path.write_text(
        "portals:\n  - name: cdc\n    kind: ods\n    url: https://opendata.caissedesdepots.fr/\n"
        "    api_key_env: CDC_ODS_KEY\n"
        "  - name: datasud\n    kind: ckan\n    url: https://trouver.datasud.fr\n    domain: TROUVER.datasud.fr\n",
        encoding="utf-8",
    )
    cdc, datasud = load_portals(path)
    assert (cdc.url, cdc.domain, cdc.api_key_env) == (
        "https://opendata.caissedesdepots.fr",
        "opendata.caissedesdepots.fr",
        "CDC_ODS_KEY",
    )
    assert datasud.domain == "trouver.datasud.fr" and datasud.api_key() is None


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("portals:\n  - name: x\n    kind: socrata\n    url: https://a.fr\n", r"portals\[0\]\.kind: 'socrata'"),
        ("portals:\n  - name: X Y\n    kind: ods\n    url: https://a.fr\n", r"portals\[0\]\.name"),
        ("portals:\n  - name: x\n    kind: ods\n    url: ftp://a.fr\n", r"portals\[0\]\.url"),
        ("portals:\n  - name: x\n    kind: ods\n    url: https://a.fr\n    api_key_env: 'abc-123-secret'\n", "NAME"),
        ("portals:\n  - name: x\n    kind: ods\n    url: https://a.fr\n    apikey: s3cr3t\n", "unknown key"),
        ("portals: {}\n", "a `portals:` list"),
    ],
)
def test_bad_portals_yaml_is_named(tmp_path: Path, text: str, message: str) -> None:
    path = tmp_path / "portals.yaml"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(PortalsConfigError, match=message) as error:
        load_portals(path)
    assert str(path) in str(error.value) and "s3cr3t" not in str(error.value)


def test_monitoring_window_never_loses_a_stored_day() -> None:
    day = dt.date(2026, 11, 20)
    assert monitoring_window(day, None) == (dt.date(2025, 11, 20), day)  # first time: a year back
    assert monitoring_window(day, dt.date(2026, 11, 19)) == (dt.date(2026, 11, 16), day)  # the last days again
    past = dt.date(2026, 11, 10)  # a past date refreshed after later days were stored
    assert monitoring_window(past, dt.date(2026, 11, 19)) == (dt.date(2026, 11, 16), dt.date(2026, 11, 19))
