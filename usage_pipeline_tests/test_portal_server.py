"""The local portal server (udata API v1 + metrics API shapes) and the synthetic world generator.

The API tests run on the generated world and on the real data.gouv.fr sample (see conftest.py); the datasets they
use are picked by what they hold.
"""

from __future__ import annotations

import copy
import datetime as dt
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest

from usage_pipeline.demo.portal_server import PortalServer, World
from usage_pipeline.demo.world import advance_day, generate_world
from usage_pipeline_tests.conftest import GENERATED_PARAM, SAMPLE_PATH, WORLD_PARAMS, load_world, pick_dataset

TODAY = dt.date(2025, 3, 15)
PAGE_SIZE = 20  # udata's default page size


@pytest.fixture(scope="module", params=WORLD_PARAMS)
def base_world(request: pytest.FixtureRequest) -> World:
    return load_world(request.param)


@pytest.fixture
def world(base_world: World) -> World:
    """A fresh copy of the module's world, free to mutate."""
    return copy.deepcopy(base_world)


@pytest.fixture
def client(world: World) -> Iterator[httpx.Client]:
    with PortalServer(world) as server, httpx.Client(base_url=server.url) as http:
        yield http


def talked_about(world: World, besides: tuple[str, ...] = ()) -> str:
    """The dataset with the most discussions (then reuses), other than ``besides``."""
    candidates = [key for key in sorted(world.entries) if key not in besides]
    return max(candidates, key=lambda key: (len(world.entries[key]["discussions"]), len(world.entries[key]["reuses"])))


def collect(http: httpx.Client, url: str, params: dict) -> list[dict]:
    """Every item of a udata listing, following `next_page`."""
    items: list[dict] = []
    next_url: str | None = url
    while next_url:
        page = http.get(next_url, params=params if next_url == url else None).json()
        items += page["data"]
        next_url = page["next_page"]
    return items


def test_organization_by_id_and_slug(world: World, client: httpx.Client) -> None:
    organization = world.organization_of(talked_about(world))
    by_id = client.get(f"/api/1/organizations/{organization['id']}/").json()
    by_slug = client.get(f"/api/1/organizations/{organization['slug']}/").json()
    assert by_id == by_slug
    assert by_id["name"] == organization["name"]
    assert {member["user"]["id"] for member in by_id["members"]} == {
        member["user"]["id"] for member in organization["members"]
    }
    assert by_id["uri"].endswith(f"/api/1/organizations/{organization['slug']}/")
    missing = client.get("/api/1/organizations/nobody/")
    assert missing.status_code == 404
    assert "message" in missing.json()


def test_dataset_listing_follows_next_page(world: World, client: httpx.Client) -> None:
    organization_id = world.organization_of(talked_about(world))["id"]
    for entry in world.entries.values():  # one organization publishes every dataset of the world
        entry["organization_id"] = organization_id
    params = {"organization": organization_id, "page_size": 4}
    first = client.get("/api/1/datasets/", params=params, headers={"X-Fields": "data{id},next_page"}).json()
    assert len(world.entries) > 8  # three pages at least
    assert (first["total"], first["page"], first["page_size"], len(first["data"])) == (len(world.entries), 1, 4, 4)
    assert first["previous_page"] is None
    assert first["next_page"].startswith(f"{client.base_url}/api/1/datasets/?organization={organization_id}")
    assert "page=2" in first["next_page"] and "page_size=4" in first["next_page"]
    second = client.get(first["next_page"]).json()
    assert second["page"] == 2 and second["previous_page"] is not None
    datasets = collect(client, "/api/1/datasets/", params)
    assert [dataset["id"] for dataset in datasets] == sorted(world.entries)
    assert client.get("/api/1/datasets/", params={"organization": organization_id}).json()["page_size"] == 20


@pytest.mark.parametrize("base_world", [GENERATED_PARAM], indirect=True)  # the world plays no part
def test_dataset_listing_rejects_bad_arguments(client: httpx.Client) -> None:
    bad_org = client.get("/api/1/datasets/", params={"organization": "service-d-information-du-gouvernement"})
    assert bad_org.status_code == 400
    assert bad_org.json() == {"message": "Organization arg must be an identifier"}
    for page_args in ({"page": 0}, {"page_size": -1}, {"page": "two"}):
        assert client.get("/api/1/datasets/", params=page_args).status_code == 400


def test_dataset_object(world: World, client: httpx.Client) -> None:
    key = pick_dataset(world, resources=2)
    stored = world.entries[key]
    assert not stored["dataset"].get("harvest")
    dataset = client.get(f"/api/1/datasets/{key}/").json()
    assert client.get(f"/api/1/datasets/{stored['dataset']['slug']}/").json() == dataset
    assert dataset["created_at"] == stored["dataset"]["created_at_internal"]
    assert dataset["last_modified"] == stored["dataset"]["last_modified_internal"]
    assert len(dataset["resources"]) == len(stored["resources"])
    assert dataset["organization"]["id"] == world.organization_of(key)["id"]
    assert set(dataset["organization"]) >= {"class", "id", "name", "slug", "uri", "page", "badges"}
    assert dataset["page"] == f"{client.base_url}/datasets/{stored['dataset']['slug']}"
    latest = max(stored["resources"], key=lambda resource: resource["last_modified"])  # one time zone: +00:00
    assert dataset["last_update"] == latest["last_modified"]  # not harvested: latest resource change
    stored["dataset"]["metrics"]["views"] += 1  # the world is live
    assert client.get(f"/api/1/datasets/{key}/").json()["metrics"]["views"] == dataset["metrics"]["views"] + 1
    assert client.get("/api/1/datasets/000000000000000000000000/").status_code == 404


def test_deleted_dataset_answers_410_and_leaves_listings(world: World, client: httpx.Client) -> None:
    key = talked_about(world)
    organization_id = world.entries[key]["organization_id"]
    published = sorted(other for other, entry in world.entries.items() if entry["organization_id"] == organization_id)
    world.deleted.add(key)
    gone = client.get(f"/api/1/datasets/{key}/")
    assert gone.status_code == 410
    assert gone.json() == {"message": "Dataset has been deleted"}
    listing = client.get("/api/1/datasets/", params={"organization": organization_id, "page_size": 50}).json()
    assert [dataset["id"] for dataset in listing["data"]] == [other for other in published if other != key]
    assert listing["total"] == len(published) - 1


def test_discussions_for_datasets_and_organization(world: World, client: httpx.Client) -> None:
    key = talked_about(world)
    stored = world.entries[key]["discussions"]
    page = client.get("/api/1/discussions/", params={"for": key, "page_size": 50}).json()
    assert page["total"] == len(stored)
    created = [discussion["created"] for discussion in page["data"]]
    assert created == sorted(created, reverse=True)  # default sort: -created
    first = page["data"][0]
    assert first["subject"] == {"class": "Dataset", "id": key}
    assert first["url"] == f"{client.base_url}/api/1/discussions/{first['id']}/"
    assert first["self_web_url"].endswith(f"/discussions?discussion_id={first['id']}")
    ascending = client.get("/api/1/discussions/", params={"for": key, "sort": "created"}).json()["data"]
    assert [discussion["created"] for discussion in ascending] == sorted(created)[:PAGE_SIZE]
    other = talked_about(world, besides=(key,))
    both_count = len(stored) + len(world.entries[other]["discussions"])
    page_size = min(PAGE_SIZE, both_count - 1)  # more than one page
    both = client.get("/api/1/discussions/", params=[("for", key), ("for", other), ("page_size", page_size)]).json()
    assert both["total"] == both_count
    assert "for=" in both["next_page"] and both["next_page"].count("for=") == 2
    organization_id = world.entries[key]["organization_id"]
    by_org = client.get("/api/1/discussions/", params={"org": organization_id, "page_size": 50}).json()
    of_organization = [  # every discussion of the organization's datasets, newest first
        discussion
        for entry in world.entries.values()
        if entry["organization_id"] == organization_id
        for discussion in entry["discussions"]
    ]
    of_organization.sort(key=lambda discussion: (discussion["created"], discussion["id"]), reverse=True)
    assert [discussion["id"] for discussion in by_org["data"]] == [discussion["id"] for discussion in of_organization]
    closed = client.get("/api/1/discussions/", params={"for": key, "closed": "true"}).json()
    assert closed["total"] == sum(1 for discussion in stored if discussion["closed"])
    assert client.get("/api/1/discussions/", params={"for": "base-sirene"}).status_code == 400


def test_reuses_of_a_dataset(world: World, client: httpx.Client) -> None:
    key = max(sorted(world.entries), key=lambda dataset_id: len(world.entries[dataset_id]["reuses"]))
    stored = world.entries[key]["reuses"]
    by_id = {reuse["id"]: reuse for reuse in stored}
    page = client.get("/api/1/reuses/", params={"dataset": key, "page_size": 50}).json()
    assert page["total"] == len(stored) > 0
    assert {reuse["id"] for reuse in page["data"]} == set(by_id)
    reuse = next(item for item in page["data"] if len(item["datasets"]) == 1)  # not also on another dataset
    assert [dataset["id"] for dataset in reuse["datasets"]] == [key]
    assert set(reuse["datasets"][0]) == {"id", "title", "uri", "page"}
    assert reuse["owner"] == by_id[reuse["id"]].get("owner")  # the sample's reuses have none
    assert reuse["uri"].endswith(f"/api/1/reuses/{reuse['slug']}/")
    also_on = next(other for other in sorted(world.entries) if not world.entries[other]["reuses"])
    world.entries[also_on]["reuses"].append(by_id[reuse["id"]])
    listed = client.get("/api/1/reuses/", params={"dataset": also_on}).json()["data"]
    assert [item["id"] for item in listed] == [reuse["id"]]
    assert {dataset["id"] for dataset in listed[0]["datasets"]} == {key, also_on}
    assert client.get("/api/1/reuses/", params={"dataset": key}).json()["total"] == len(stored)
    assert client.get("/api/1/reuses/", params={"dataset": "sirene"}).status_code == 400


def test_metrics_api_filters_and_page_size_limit() -> None:
    world = generate_world(2, 3, seed=4, today=TODAY)
    dataset_id = next(iter(world.entries))
    expected = sorted(
        (
            row
            for row in world.metrics_rows
            if row["dataset_id"] == dataset_id and "2024-01" <= row["metric_month"] <= "2024-12"
        ),
        key=lambda row: row["metric_month"],
        reverse=True,
    )
    with PortalServer(world) as server, httpx.Client(base_url=server.url) as http:
        params = {
            "dataset_id__exact": dataset_id,
            "metric_month__greater": "2024-01",
            "metric_month__less": "2024-12",
            "metric_month__sort": "desc",
            "page_size": 5,
        }
        page = http.get("/api/datasets/data/", params=params).json()
        assert page["meta"] == {"page": 1, "page_size": 5, "total": len(expected)}
        assert page["links"]["prev"] is None
        rows = page["data"]
        while page["links"]["next"]:
            page = http.get(page["links"]["next"]).json()
            rows += page["data"]
        assert rows == expected
        organization_id = next(iter(world.organizations))
        by_org = http.get("/api/datasets/data/", params={"organization_id__exact": organization_id}).json()
        assert by_org["meta"]["total"] == sum(
            1 for row in world.metrics_rows if row["organization_id"] == organization_id
        )
        ids = [row["__id"] for row in by_org["data"]]
        assert ids == sorted(ids) and len(ids) == 20  # default order and page size
        assert len(http.get("/api/datasets/data/", params={"page_size": 50}).json()["data"]) == 50
        too_big = http.get("/api/datasets/data/", params={"page_size": 51})
        assert too_big.status_code == 400
        assert too_big.json() == {"message": "Page size exceeds allowed maximum: 50"}
        assert http.get("/api/foo/data/").status_code == 404
        assert http.get("/api/1/nothing/here/").status_code == 404


@pytest.mark.parametrize("base_world", [GENERATED_PARAM], indirect=True)  # the world plays no part
def test_latency_and_request_counts(world: World) -> None:
    with PortalServer(world, latency=0.2) as server, httpx.Client(base_url=server.url) as http:
        started = time.perf_counter()
        assert http.get(f"/api/1/datasets/{next(iter(world.entries))}/").status_code == 200
        assert time.perf_counter() - started >= 0.2
        server.reset_counts()
        started = time.perf_counter()
        with ThreadPoolExecutor(max_workers=15) as pool:
            statuses = list(pool.map(lambda _: httpx.get(f"{server.url}/api/1/datasets/").status_code, range(15)))
        assert statuses == [200] * 15
        assert time.perf_counter() - started < 1.5  # answered concurrently, not one after the other
        http.get("/api/datasets/data/")
        assert server.request_count == 16
        assert server.requests_by_endpoint == {"datasets": 15, "metrics/datasets": 1}


def test_generated_world_is_consistent() -> None:
    started = time.perf_counter()
    generate_world(1, 1000, today=TODAY)
    assert time.perf_counter() - started < 2
    world = generate_world(3, 40, seed=7, today=TODAY)
    assert generate_world(3, 40, seed=7, today=TODAY).entries.keys() == world.entries.keys()
    for dataset_id, entry in world.entries.items():
        metrics = entry["dataset"]["metrics"]
        assert metrics["discussions"] == len(entry["discussions"])
        assert metrics["reuses"] == len(entry["reuses"])
        assert metrics["resources_downloads"] == sum(resource["metrics"]["views"] for resource in entry["resources"])
        assert 1 <= len(entry["resources"]) <= 4
        assert len(dataset_id) == 24 and int(dataset_id, 16) >= 0
    with_discussions = sum(1 for entry in world.entries.values() if entry["discussions"]) / len(world.entries)
    with_reuses = sum(1 for entry in world.entries.values() if entry["reuses"]) / len(world.entries)
    assert 0.1 < with_discussions < 0.45 and 0.1 < with_reuses < 0.45
    discussions = [
        (dataset_id, discussion) for dataset_id, entry in world.entries.items() for discussion in entry["discussions"]
    ]
    answered = {"member": 0, "other user": 0, "nobody": 0}
    for dataset_id, discussion in discussions:
        members = {member["user"]["id"] for member in world.organization_of(dataset_id)["members"]}
        posters = {message["posted_by"]["id"] for message in discussion["discussion"][1:]}
        answered["member" if posters & members else "other user" if posters else "nobody"] += 1
    assert all(answered.values()), answered
    assert any(discussion["closed"] and discussion["closed_by"] for _, discussion in discussions)
    reuse_types = {reuse["type"] for entry in world.entries.values() for reuse in entry["reuses"]}
    assert len(reuse_types) >= 3 and reuse_types <= {
        "application",
        "visualization",
        "news_article",
        "paper",
        "api",
    }
    months = {row["metric_month"] for row in world.metrics_rows}
    assert max(months) == "2025-03" and min(months) == "2023-04" and len(months) == 24
    per_month: dict[tuple[str, str], set[str]] = {}
    for row in world.metrics_rows:
        per_month.setdefault((row["dataset_id"], row["metric_month"]), set()).add(row["organization_id"])
    assert any(len(organizations) == 2 for organizations in per_month.values())  # an organization change
    assert any(row["monthly_download_resource"] is None for row in world.metrics_rows)


def objects_by_kind(world: World) -> dict[str, list[dict]]:
    entries = list(world.entries.values())
    organizations = list(world.organizations.values())
    discussions = [discussion for entry in entries for discussion in entry["discussions"]]
    return {
        "dataset": [entry["dataset"] for entry in entries],
        "dataset metrics": [entry["dataset"]["metrics"] for entry in entries],
        "resource": [resource for entry in entries for resource in entry["resources"]],
        "discussion": discussions,
        "message": [message for discussion in discussions for message in discussion["discussion"]],
        "reuse": [reuse for entry in entries for reuse in entry["reuses"]],
        "reuse metrics": [reuse["metrics"] for entry in entries for reuse in entry["reuses"]],
        "organization": organizations,
        "member": [member for organization in organizations for member in organization["members"]],
        "member user": [member["user"] for organization in organizations for member in organization["members"]],
    }


@pytest.mark.sample
def test_generated_objects_have_the_fixture_keys() -> None:
    """Keys found in every fixture object are generated; generated keys all exist in the fixture."""
    extras = {"dataset": {"license"}, "reuse": {"owner"}}  # in real answers, stripped from the fixture
    expected = objects_by_kind(World.from_fixture(SAMPLE_PATH))
    generated = objects_by_kind(generate_world(2, 30, seed=5, today=TODAY))
    for kind, objects in generated.items():
        always = set.intersection(*(set(item) for item in expected[kind]))
        seen = set.union(*(set(item) for item in expected[kind])) | extras.get(kind, set())
        assert objects, kind
        for item in objects:
            assert always <= set(item) <= seen, kind


def test_advance_day_keeps_counters_consistent() -> None:
    world = generate_world(2, 30, seed=2, today=TODAY)
    before = {dataset_id: copy.deepcopy(entry["dataset"]["metrics"]) for dataset_id, entry in world.entries.items()}
    rows_before = len(world.metrics_rows)
    for day in range(40):
        advance_day(world, seed=day)
    assert world.today == TODAY + dt.timedelta(days=40)
    for dataset_id, entry in world.entries.items():
        metrics = entry["dataset"]["metrics"]
        assert metrics["resources_downloads"] == sum(resource["metrics"]["views"] for resource in entry["resources"])
        assert metrics["discussions"] == len(entry["discussions"])
        assert metrics["reuses"] == len(entry["reuses"])
        assert metrics["views"] >= before[dataset_id]["views"]
    assert sum(entry["dataset"]["metrics"]["views"] for entry in world.entries.values()) > sum(
        metrics["views"] for metrics in before.values()
    )
    assert sum(len(entry["discussions"]) for entry in world.entries.values()) > sum(
        metrics["discussions"] for metrics in before.values()
    )
    assert len(world.metrics_rows) > rows_before  # April rows appeared
    assert any(row["metric_month"] == "2025-04" for row in world.metrics_rows)
