"""`own_portals.ckan.CkanPortal` against the local CKAN server (`demo.ckan_server`), on 127.0.0.1 only."""

from __future__ import annotations

import asyncio
import copy
import datetime as dt
import logging
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import pytest

from usage_pipeline.demo.ckan_server import CkanServer, CkanWorld, generate_ckan_world
from usage_pipeline.own_portals.ckan import CkanError, CkanPortal, ckan_error_text, parse_version
from usage_pipeline.portal.client import PortalClient

TODAY = dt.date(2026, 11, 1)
TOKEN = "tok-9f8e7d6c5b4a"
T = TypeVar("T")


@pytest.fixture(scope="module")
def base_world() -> CkanWorld:
    return generate_ckan_world(11, seed=7, today=TODAY)


@pytest.fixture
def world(base_world: CkanWorld) -> CkanWorld:
    """A fresh copy of an 11-dataset CKAN 2.11 world with tracking, showcases and comments."""
    return copy.deepcopy(base_world)


def run(
    server: CkanServer,
    call: Callable[[CkanPortal], Awaitable[T]],
    *,
    token: str | None = None,
    page_size: int = 4,
) -> T:
    """Run ``call(portal)`` with a fresh client; retries stay short so that errors surface fast."""

    async def main() -> T:
        async with PortalClient(max_elapsed=2, backoff_base=0.01) as client:
            return await call(CkanPortal(client, server.url, token, "Métropole test", page_size=page_size))

    return asyncio.run(main())


def expected_tracking(world: CkanWorld) -> dict[str, dict]:
    return {key: {"total": value["total"], "recent": value["recent"]} for key, value in world.tracking.items()}


# -- status ------------------------------------------------------------------------------------------------------


def test_status_reports_version_and_extensions(world: CkanWorld) -> None:
    with CkanServer(world) as server:
        status = run(server, CkanPortal.status)
    assert status["ckan_version"] == "2.11.4"
    assert {"tracking", "showcase", "comments"} <= set(status["extensions"])


def test_hidden_version_is_none(world: CkanWorld) -> None:
    world.hide_version = True
    with CkanServer(world) as server:
        assert run(server, CkanPortal.status)["ckan_version"] is None


def test_status_is_read_once(world: CkanWorld) -> None:
    async def twice(portal: CkanPortal) -> None:
        await portal.status()
        await portal.datasets()
        await portal.showcases()

    with CkanServer(world) as server:
        run(server, twice)
        assert server.requests_by_action["status_show"] == 1


@pytest.mark.parametrize(
    ("version", "expected"),
    [("2.10.9", (2, 10)), ("2.11.0", (2, 11)), ("2.13.0a0", (2, 13)), (None, None), ("", None), ("dev", None)],
)
def test_parse_version(version: str | None, expected: tuple[int, int] | None) -> None:
    assert parse_version(version) == expected


# -- datasets and tracking ---------------------------------------------------------------------------------------


def test_datasets_on_2_11_read_tracking_from_package_search_pages(world: CkanWorld) -> None:
    with CkanServer(world) as server:
        datasets = run(server, CkanPortal.datasets, page_size=4)
        calls = server.requests_by_action
        root = server.url
    assert calls["package_search"] == 3  # 11 datasets by pages of 4
    assert calls["package_show"] == 0
    assert sorted(item["id"] for item in datasets) == sorted(item["id"] for item in world.datasets)
    assert {item["id"]: item["tracking"] for item in datasets} == expected_tracking(world)
    first = world.datasets[0]
    got = next(item for item in datasets if item["id"] == first["id"])
    assert got["name"] == first["name"] and got["title"] == first["title"]
    assert got["metadata_modified"] == first["metadata_modified"]
    assert got["extras"] == {"frequency": first["extras"][0]["value"]}
    assert got["url"] is None  # an empty `url` field
    assert got["page_url"] == f"{root}/dataset/{first['name']}"


@pytest.mark.parametrize("version", ["2.9.11", "2.10.9"])
def test_datasets_on_2_10_read_tracking_from_package_show(world: CkanWorld, version: str) -> None:
    world.version = version
    world.extensions = ["showcase", "comments"]  # tracking is a config switch there, not a plugin
    with CkanServer(world) as server:
        datasets = run(server, CkanPortal.datasets, page_size=5)
        calls = server.requests_by_action
    assert calls["package_search"] == 3
    assert calls["package_show"] == len(world.datasets)
    assert {item["id"]: item["tracking"] for item in datasets} == expected_tracking(world)


def test_datasets_on_2_11_without_the_plugin_have_no_tracking_and_no_extra_call(world: CkanWorld) -> None:
    world.extensions = ["showcase"]
    with CkanServer(world) as server:
        datasets = run(server, CkanPortal.datasets)
        assert server.requests_by_action["package_show"] == 0
    assert len(datasets) == 11
    assert all(item["tracking"] is None for item in datasets)


def test_hidden_version_without_tracking_plugin_probes_one_dataset(world: CkanWorld) -> None:
    world.hide_version = True
    world.extensions = ["showcase"]
    with CkanServer(world) as server:
        datasets = run(server, CkanPortal.datasets)
        assert server.requests_by_action["package_show"] == 1
    assert all(item["tracking"] is None for item in datasets)


def test_hidden_version_on_2_10_reads_package_show(world: CkanWorld) -> None:
    world.hide_version = True
    world.version = "2.10.9"
    world.extensions = []
    with CkanServer(world) as server:
        datasets = run(server, CkanPortal.datasets)
    assert {item["id"]: item["tracking"] for item in datasets} == expected_tracking(world)


def test_datasets_skip_private_and_deleted_but_a_valid_token_sees_private(world: CkanWorld) -> None:
    world.api_token = TOKEN
    world.datasets[0]["private"] = True
    world.datasets[1]["state"] = "deleted"
    with CkanServer(world) as server:
        anonymous = {item["id"] for item in run(server, CkanPortal.datasets)}
        authorized = {item["id"] for item in run(server, CkanPortal.datasets, token=TOKEN)}
    assert world.datasets[0]["id"] not in anonymous and world.datasets[1]["id"] not in anonymous
    assert len(anonymous) == 9
    assert authorized == anonymous | {world.datasets[0]["id"]}


def test_a_single_page_when_the_portal_is_small(world: CkanWorld) -> None:
    with CkanServer(world) as server:
        assert len(run(server, CkanPortal.datasets, page_size=1000)) == 11
        assert server.requests_by_action["package_search"] == 1


def test_an_empty_portal_has_no_dataset(world: CkanWorld) -> None:
    world.datasets = []
    world.version = "2.10.9"
    with CkanServer(world) as server:
        assert run(server, CkanPortal.datasets) == []


# -- showcases ---------------------------------------------------------------------------------------------------


def test_showcases_are_reuses_by_dataset(world: CkanWorld) -> None:
    assert world.showcases, "the generated world has showcases"
    world.showcases[0]["state"] = "deleted"
    expected: dict[str, set[str]] = {}
    for showcase in world.showcases[1:]:
        for dataset_id in world.showcase_datasets[showcase["id"]]:
            expected.setdefault(dataset_id, set()).add(showcase["id"])
    with CkanServer(world) as server:
        showcases = run(server, CkanPortal.showcases)
    assert {key: {item["id"] for item in items} for key, items in showcases.items()} == expected
    reuse = next(iter(showcases.values()))[0]
    source = next(item for item in world.showcases if item["id"] == reuse["id"])
    assert reuse["title"] == source["title"] and reuse["url"] == source["url"]
    assert reuse["created_at"] == source["metadata_created"]
    assert reuse["image_url"] == source["extras"][0]["value"]


def test_showcases_without_the_extension_is_empty_and_calls_nothing(world: CkanWorld) -> None:
    world.extensions = ["tracking", "comments"]
    with CkanServer(world) as server:
        assert run(server, CkanPortal.showcases) == {}
        assert set(server.requests_by_action) == {"status_show"}


def test_a_showcase_over_the_100_dataset_cap_is_completed_per_dataset() -> None:
    world = generate_ckan_world(120, seed=3, today=TODAY)
    big = world.showcases[0]["id"]
    world.showcase_datasets[big] = [item["id"] for item in world.datasets]
    with CkanServer(world) as server:
        showcases = run(server, CkanPortal.showcases, page_size=50)
        assert server.requests_by_action["ckanext_package_showcase_list"] == 120
    assert sum(big in {item["id"] for item in items} for items in showcases.values()) == 120


# -- comments ----------------------------------------------------------------------------------------------------


def test_comments_when_the_extension_is_installed(world: CkanWorld) -> None:
    ids = [item["id"] for item in world.datasets]
    commented = next(key for key, items in world.comments.items() if items)
    world.comments[commented][0]["state"] = "draft"
    with CkanServer(world) as server:
        comments = run(server, lambda portal: portal.comments(ids))
        assert server.requests_by_action["comments_thread_show"] == len(ids)
    expected = {
        key: sorted(item["id"] for item in items if item["state"] == "approved")
        for key, items in world.comments.items()
        if any(item["state"] == "approved" for item in items)
    }
    assert {key: sorted(item["id"] for item in items) for key, items in comments.items()} == expected
    assert all(item["extension"] == "comments" and item["content"] for items in comments.values() for item in items)
    assert all(item["author"] for items in comments.values() for item in items)


def test_no_comments_without_a_comments_extension(world: CkanWorld) -> None:
    world.extensions = ["tracking", "showcase"]
    with CkanServer(world) as server:
        assert run(server, lambda portal: portal.comments([item["id"] for item in world.datasets])) == {}
        assert set(server.requests_by_action) == {"status_show"}


def test_issues_are_read_on_an_old_ckan_with_ckanext_issues() -> None:
    world = generate_ckan_world(40, seed=5, today=TODAY, version="2.8.12", extensions=("issues", "showcase"))
    assert world.issues and not world.comments
    with CkanServer(world) as server:
        comments = run(server, lambda portal: portal.comments([item["id"] for item in world.datasets]))
    assert {key: len(items) for key, items in comments.items()} == {
        key: len(items) for key, items in world.issues.items()
    }
    issue = next(iter(comments.values()))[0]
    assert issue["extension"] == "issues" and issue["title"] and issue["status"] in ("open", "closed")


# -- errors ------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("action", "call"),
    [
        ("status_show", CkanPortal.status),
        ("package_search", CkanPortal.datasets),
        ("ckanext_showcase_list", CkanPortal.showcases),
        ("ckanext_showcase_package_list", CkanPortal.showcases),
    ],
)
def test_success_false_raises_ckan_error_with_ckan_message(
    world: CkanWorld, action: str, call: Callable[[CkanPortal], Awaitable[Any]]
) -> None:
    world.failing_actions[action] = "Solr indisponible, réessayez plus tard"
    with CkanServer(world) as server, pytest.raises(CkanError) as caught:
        run(server, call)
    message = str(caught.value)
    assert "Solr indisponible, réessayez plus tard" in message
    assert action in message and "Métropole test" in message and "success=false" in message
    assert caught.value.action == action


def test_success_false_on_comments_is_an_error_too(world: CkanWorld) -> None:
    world.failing_actions["comments_thread_show"] = "Access denied"
    with CkanServer(world) as server, pytest.raises(CkanError, match=r"comments_thread_show.*Access denied"):
        run(server, lambda portal: portal.comments([world.datasets[0]["id"]]))


def test_a_refused_token_is_a_clear_error_without_the_token(world: CkanWorld, caplog: pytest.LogCaptureFixture) -> None:
    world.api_token = "the-right-one"
    caplog.set_level(logging.DEBUG)
    with CkanServer(world) as server, pytest.raises(CkanError) as caught:
        run(server, CkanPortal.datasets, token=TOKEN)
    assert "token refused" in str(caught.value)
    assert caught.value.status == 403
    assert TOKEN not in str(caught.value) and TOKEN not in repr(caught.value)
    assert (caught.value.__cause__ is None and caught.value.__context__ is None) or TOKEN not in str(
        caught.value.__context__
    )
    assert TOKEN not in caplog.text


def test_a_closed_portal_without_token_says_a_token_is_needed(world: CkanWorld) -> None:
    world.require_token = True
    world.api_token = TOKEN
    with CkanServer(world) as server:
        with pytest.raises(CkanError, match="access denied without an API token"):
            run(server, CkanPortal.status)
        assert run(server, CkanPortal.status, token=TOKEN)["ckan_version"] == "2.11.4"


def test_the_portal_repr_hides_the_token(world: CkanWorld) -> None:
    async def describe(portal: CkanPortal) -> str:
        return repr(portal)

    with CkanServer(world) as server:
        assert TOKEN not in run(server, describe, token=TOKEN)


def test_the_token_goes_only_to_its_portal(world: CkanWorld, base_world: CkanWorld) -> None:
    """Concurrent calls to another host through the same client never carry the token."""
    world.api_token = TOKEN
    other = copy.deepcopy(base_world)  # refuses any Authorization header: it has no valid token

    async def main(url: str, other_url: str) -> tuple[list[dict], dict]:
        async with PortalClient(max_elapsed=2, backoff_base=0.01) as client:
            portal = CkanPortal(client, url, TOKEN, "avec jeton", page_size=2)
            datasets, status = await asyncio.gather(
                portal.datasets(), client.get_json(f"{other_url}/api/3/action/status_show")
            )
            return datasets, status

    with CkanServer(world) as server, CkanServer(other) as other_server:
        datasets, status = asyncio.run(main(server.url, other_server.url))
    assert len(datasets) == 11 and status["success"] is True


def test_an_unknown_host_answer_is_a_ckan_error(world: CkanWorld) -> None:
    async def wrong_root(client_portal: CkanPortal) -> dict:
        portal = CkanPortal(client_portal.client, f"{client_portal.url}/nowhere", None, "mauvaise racine")
        return await portal.status()

    with CkanServer(world) as server, pytest.raises(CkanError, match=r"status_show.*404"):
        run(server, wrong_root)


def test_ckan_error_text_reads_messages_and_validation_errors() -> None:
    assert ckan_error_text({"message": "Access denied", "__type": "Authorization Error"}) == (
        "Authorization Error: Access denied"
    )
    assert ckan_error_text({"__type": "Validation Error", "rows": ["Invalid integer"]}) == (
        "Validation Error: rows: Invalid integer"
    )
    assert ckan_error_text(None) == "no error given"
