"""discover / crawl against a small in-memory fake portal (udata API v1 + metrics API) on httpx.MockTransport."""

from __future__ import annotations

import asyncio
import datetime as dt
import random
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import httpx
import pytest

from usage_pipeline.dates import month_key
from usage_pipeline.ingest.crawl import Crawl, crawl, discover, validate_partition_key
from usage_pipeline.portal.client import PortalClient
from usage_pipeline.portal.udata import Udata, is_object_id

PORTAL = "https://portal.test"
METRICS = "https://metrics.test"
ORG_A = "aaaaaaaaaaaaaaaaaaaaaaaa"
ORG_B = "bbbbbbbbbbbbbbbbbbbbbbbb"
D1 = "111111111111111111111111"  # listed by org A, 2 reuses, stored metrics history
D2 = "222222222222222222222222"  # listed by org A, no reuse, no history
D3 = "333333333333333333333333"  # listed by org A but not followed
D4 = "444444444444444444444444"  # published by org B (not configured), followed as an extra dataset
GONE = "999999999999999999999999"  # deleted: answers 410
RUN_DATE = dt.date(2026, 1, 15)
MONTHS = ("2025-09", "2025-10", "2025-11", "2025-12", "2026-01")


def dataset(key: str, slug: str, organization: str | None, reuses: int = 0) -> dict[str, Any]:
    org = {"id": organization, "slug": f"org-{organization[0]}", "name": "Org"} if organization else None
    return {"id": key, "slug": slug, "title": slug.title(), "organization": org, "metrics": {"reuses": reuses}}


def discussion(key: str, subject: str) -> dict[str, Any]:
    return {"id": key, "title": key, "subject": {"class": "Dataset", "id": subject}, "discussion": []}


@dataclass
class FakePortal:
    """udata and metrics API answers over dicts, routed on host, path and params; records every request."""

    organizations: dict[str, dict[str, Any]] = field(
        default_factory=lambda: {
            ORG_A: {"id": ORG_A, "slug": "org-a", "name": "Org A", "members": []},
            ORG_B: {"id": ORG_B, "slug": "org-b", "name": "Org B", "members": []},
        }
    )
    datasets: dict[str, dict[str, Any]] = field(
        default_factory=lambda: {
            D1: dataset(D1, "one", ORG_A, reuses=2),
            D2: dataset(D2, "two", ORG_A),
            D3: dataset(D3, "three", ORG_A, reuses=5),
            D4: dataset(D4, "four", ORG_B),
        }
    )
    gone: dict[str, int] = field(default_factory=lambda: {GONE: 410, "old-slug": 410})
    reuses: dict[str, list[dict[str, Any]]] = field(
        default_factory=lambda: {D1: [{"id": "r1", "datasets": [{"id": D1}]}, {"id": "r2", "datasets": [{"id": D1}]}]}
    )
    discussions: list[dict[str, Any]] = field(
        default_factory=lambda: [
            discussion("c1", D1),
            discussion("c2", D4),
            discussion("c3", D1),
            discussion("c4", D3),
        ]
    )
    metrics: list[dict[str, Any]] = field(
        default_factory=lambda: [
            {"dataset_id": key, "organization_id": org, "metric_month": month, "monthly_visit": 10 * n}
            for key, org in ((D1, ORG_A), (D2, ORG_A), (D3, ORG_A), (D4, ORG_B))
            for n, month in enumerate(MONTHS)
        ]
    )
    ignore_for: bool = False  # answer every discussion whatever the `for=` filter says
    reuse_total: int | None = None  # what `/reuses/?page_size=1` says the portal holds (None: the real count)
    failing: set[str] = field(default_factory=set)  # path parts or query values whose requests answer 503
    requests: list[httpx.Request] = field(default_factory=list)

    def handle(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        params = request.url.params
        if any(token in request.url.path for token in self.failing) or set(params.values()) & self.failing:
            return httpx.Response(503, text="<html>Service Unavailable</html>")
        if request.url.host == "metrics.test":
            return self._metrics(request)
        match request.url.path.strip("/").split("/"):
            case ["api", "1", "organizations", key]:
                found = [org for org in self.organizations.values() if key in (org["id"], org["slug"])]
                return httpx.Response(200, json=found[0]) if found else self._missing(404)
            case ["api", "1", "datasets"]:
                if not is_object_id(params.get("organization", "")):
                    return httpx.Response(400, json={"message": "organization must be an ObjectId"})
                return self._page(
                    [
                        item
                        for item in self.datasets.values()
                        if (item["organization"] or {}).get("id") == params["organization"]
                    ],
                    params,
                )
            case ["api", "1", "datasets", key]:
                if key in self.gone:
                    return self._missing(self.gone[key])
                found = [item for item in self.datasets.values() if key in (item["id"], item["slug"])]
                return httpx.Response(200, json=found[0]) if found else self._missing(404)
            case ["api", "1", "discussions"]:
                subjects = params.get_list("for")
                return self._page(
                    [item for item in self.discussions if self.ignore_for or item["subject"]["id"] in subjects], params
                )
            case ["api", "1", "reuses"]:
                if "dataset" in params:
                    return self._page(self.reuses.get(params["dataset"], []), params)
                everything = list({reuse["id"]: reuse for items in self.reuses.values() for reuse in items}.values())
                page = self._page(everything, params)
                if self.reuse_total is not None and params.get("page_size") == "1":
                    page = httpx.Response(200, json={**page.json(), "total": self.reuse_total})
                return page
        return self._missing(404)

    def _metrics(self, request: httpx.Request) -> httpx.Response:
        params = request.url.params
        if request.url.path != "/api/datasets/data/" or int(params.get("page_size", "20")) > 50:
            return httpx.Response(400, json={"message": "bad request"})
        wanted = params["dataset_id__in"].split(",") if "dataset_id__in" in params else None
        rows = [
            row
            for row in self.metrics
            if (wanted is None or row["dataset_id"] in wanted)
            and params.get("dataset_id__exact", row["dataset_id"]) == row["dataset_id"]
            and row["metric_month"] >= params.get("metric_month__greater", "")
        ]
        rows.sort(key=lambda row: row["metric_month"])
        return httpx.Response(
            200, json={"data": rows, "links": {"next": None, "prev": None}, "meta": {"page": 1, "total": len(rows)}}
        )

    @staticmethod
    def _page(items: list[dict[str, Any]], params: httpx.QueryParams) -> httpx.Response:
        """udata's page envelope: ``page`` and ``page_size`` (default 20) slice ``items``."""
        page, size = int(params.get("page", "1")), int(params.get("page_size", "20"))
        chunk = items[(page - 1) * size : page * size]
        more = page * size < len(items)
        following = f"{PORTAL}/next?page={page + 1}" if more else None  # followed only without `total`
        return httpx.Response(
            200, json={"data": chunk, "page": page, "page_size": size, "total": len(items), "next_page": following}
        )

    @staticmethod
    def _missing(status: int) -> httpx.Response:
        return httpx.Response(status, json={"message": "Not found" if status == 404 else "Dataset has been deleted"})

    def calls(self, path: str) -> list[httpx.QueryParams]:
        """Query params of every request made to ``path`` (any host)."""
        return [request.url.params for request in self.requests if request.url.path == path]

    def paths(self, prefix: str) -> list[str]:
        return [request.url.path for request in self.requests if request.url.path.startswith(prefix)]


def run(portal: FakePortal, use: Callable[[Udata], Awaitable[Any]]) -> Any:
    """``use`` on a Udata over ``portal``; a failing request is given up at once (no retry, no wait)."""

    async def no_sleep(delay: float) -> None:
        raise AssertionError(f"unexpected retry (sleep {delay})")

    async def main() -> Any:
        async with PortalClient(
            transport=httpx.MockTransport(portal.handle), sleep=no_sleep, rng=random.Random(0), max_elapsed=0
        ) as client:
            return await use(Udata(client, PORTAL, METRICS))

    return asyncio.run(main())


def run_crawl(portal: FakePortal, **options: Any) -> Crawl:
    settings: dict[str, Any] = {
        "organizations": ["org-a"],
        "dataset_keys": [D1, D2, D4, GONE],
        "run_date": RUN_DATE,
        "with_metrics_history": {D1, D4},
    }
    settings.update(options)
    return run(portal, lambda udata: crawl(udata, **settings))


def rows_of(portal: FakePortal, key: str, since: str = "") -> list[dict[str, Any]]:
    return [row for row in portal.metrics if row["dataset_id"] == key and row["metric_month"] >= since]


# --- month_key and partition keys -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("date", "months_back", "expected"),
    [
        (dt.date(2026, 1, 15), 2, "2025-11"),
        (dt.date(2026, 3, 1), 0, "2026-03"),
        (dt.date(2026, 1, 31), 1, "2025-12"),
        (dt.date(2026, 12, 1), 11, "2026-01"),
        (dt.date(2026, 12, 31), 12, "2025-12"),
        (dt.date(2026, 1, 1), 25, "2023-12"),
    ],
)
def test_month_key(date: dt.date, months_back: int, expected: str) -> None:
    assert month_key(date, months_back) == expected


@pytest.mark.parametrize("key", [D1, "my-dataset-slug", "a"])
def test_validate_partition_key_accepts_ids_and_slugs(key: str) -> None:
    assert validate_partition_key(key) == key


@pytest.mark.parametrize(
    "key", ["", " ", "\t", "a,b", "a|b", "a[0]", "a]", "[a", " abc", "abc ", "abc\n", "a b", "a...b"], ids=repr
)
def test_validate_partition_key_refuses_forbidden_characters_blanks_and_empty(key: str) -> None:
    with pytest.raises(ValueError, match="cannot be a partition key"):
        validate_partition_key(key)


# --- discover -----------------------------------------------------------------------------------------------


def test_discover_resolves_the_organization_slug_and_appends_extra_datasets() -> None:
    """Org datasets first (listed by id), then extras resolved to ids; a 410 extra is kept as given; no duplicates."""
    portal = FakePortal()

    discovery = run(portal, lambda udata: discover(udata, ["org-a"], ["four", GONE, D1]))

    assert discovery.keys == [D1, D2, D3, D4, GONE]
    assert [(entry.configured_as, entry.status) for entry in discovery.entries] == [
        ("org-a", "active"),
        ("four", "active"),
        (GONE, "gone"),
        (D1, "active"),
    ]
    assert portal.paths("/api/1/organizations/") == ["/api/1/organizations/org-a/"]
    (listing,) = portal.calls("/api/1/datasets/")
    assert listing["organization"] == ORG_A
    listing_request = next(request for request in portal.requests if request.url.path == "/api/1/datasets/")
    assert listing_request.headers["X-Fields"] == "data{id},next_page,total,page_size"


def test_discover_reports_an_unknown_organization_and_follows_the_others() -> None:
    discovery = run(FakePortal(), lambda udata: discover(udata, ["no-such-org", "org-b"], []))

    assert discovery.keys == [D4]
    (problem,) = discovery.problems
    assert (problem.kind, problem.configured_as, problem.status, problem.http_status) == (
        "organization",
        "no-such-org",
        "gone",
        404,
    )
    assert problem.describe().startswith("USAGE_ORGANIZATIONS names 'no-such-org': gone (")


def test_a_renamed_organization_is_followed_by_the_id_it_resolved_to_before() -> None:
    portal = FakePortal()
    portal.organizations[ORG_A]["slug"] = "org-a-renamed"

    discovery = run(portal, lambda udata: discover(udata, ["org-a"], [], {("organization", "org-a"): ORG_A}))

    assert discovery.keys == [D1, D2, D3]
    (entry,) = discovery.entries
    assert (entry.status, entry.resolved_id, entry.http_status) == ("renamed", ORG_A, 404)
    assert "followed by the id it had" in entry.detail


# --- crawl --------------------------------------------------------------------------------------------------


def test_crawl_resolves_organization_slug_and_filters_listing_by_id() -> None:
    portal = FakePortal()

    result = run_crawl(portal)

    assert portal.calls("/api/1/organizations/org-a/")
    assert [params["organization"] for params in portal.calls("/api/1/datasets/")] == [ORG_A]
    # Org B publishes the extra dataset D4: resolved too.
    assert set(result.organizations) == {ORG_A, ORG_B}
    assert result.organizations[ORG_A]["slug"] == "org-a"


def test_crawl_takes_listed_datasets_from_the_listing_and_fetches_the_others_one_by_one() -> None:
    """D1/D2 come from the org listing (not fetched alone); D3 is listed but not followed; GONE lands in `gone`."""
    portal = FakePortal()

    result = run_crawl(portal)

    assert set(result.datasets) == {D1, D2, D4}
    assert result.datasets[D4]["slug"] == "four"
    assert result.gone == {GONE: 410}
    singles = sorted(path for path in portal.paths("/api/1/datasets/") if path != "/api/1/datasets/")
    assert singles == [
        f"/api/1/datasets/{D4}/",
        f"/api/1/datasets/{GONE}/",
    ]


def test_crawl_records_a_404_dataset_as_gone_with_404() -> None:
    portal = FakePortal()
    unknown = "888888888888888888888888"

    result = run_crawl(portal, dataset_keys=[D1, unknown, GONE])

    assert result.gone == {unknown: 404, GONE: 410}
    assert set(result.datasets) == {D1}


def test_crawl_reads_the_portals_whole_reuse_listing_when_that_takes_fewer_requests() -> None:
    """The portal holds 2 reuses (one page) for 4 followed datasets: one listing, no request per dataset."""
    portal = FakePortal()

    result = run_crawl(portal)

    calls = portal.calls("/api/1/reuses/")
    assert [dict(params) for params in calls] == [{"page_size": "1"}, {"page_size": "100", "sort": "created"}]
    assert result.reuses == {D1: portal.reuses[D1]}


def test_crawl_asks_each_dataset_with_a_reuse_counter_when_the_portal_has_too_many_reuses() -> None:
    portal = FakePortal(reuse_total=100_000)  # 1,000 pages, more than one request per followed dataset

    result = run_crawl(portal)

    calls = portal.calls("/api/1/reuses/")
    assert [params.get("dataset") for params in calls] == [None, D1], "the count, then D1 (the only counter > 0)"
    assert result.reuses == {D1: portal.reuses[D1]}


def test_crawl_requests_discussions_with_repeated_for_params_and_assigns_them_by_subject() -> None:
    """Asked for every followed key at once (without waiting for the datasets); a gone dataset's are dropped."""
    portal = FakePortal()
    portal.discussions.append(discussion("c9", GONE))

    result = run_crawl(portal)

    (params,) = portal.calls("/api/1/discussions/")
    assert params.get_list("for") == [D1, D2, D4, GONE]
    assert {key: [item["id"] for item in items] for key, items in result.discussions.items()} == {
        D1: ["c1", "c3"],
        D4: ["c2"],
    }


def test_crawl_drops_discussions_about_datasets_it_does_not_follow() -> None:
    """Defensive: discussions whose subject is not a crawled dataset (or has no subject) are not assigned."""
    portal = FakePortal(ignore_for=True)
    portal.discussions.append({"id": "c5", "title": "orphan", "subject": None, "discussion": []})

    result = run_crawl(portal)

    assert {key: [item["id"] for item in items] for key, items in result.discussions.items()} == {
        D1: ["c1", "c3"],
        D4: ["c2"],
    }


def test_crawl_fetches_recent_months_for_datasets_with_history_and_whole_history_for_the_others() -> None:
    """By batches of ids (`dataset_id__in`, every organization's rows): D1 and D4 have history, D2 does not."""
    portal = FakePortal()

    result = run_crawl(portal)

    calls = portal.calls("/api/datasets/data/")
    assert [(params["dataset_id__in"], params.get("metric_month__greater")) for params in calls] == [
        (f"{D1},{D4}", "2025-11"),
        (f"{D2},{GONE}", None),
    ]
    assert all(int(params["page_size"]) <= 50 for params in calls)
    assert result.metrics == {
        D1: rows_of(portal, D1, "2025-11"),
        D2: rows_of(portal, D2),
        D4: rows_of(portal, D4, "2025-11"),
    }


def test_crawl_keeps_the_rows_of_a_dataset_under_its_former_organization() -> None:
    """D4 moved from org A to org B: org A's bulk rows (asked first, org A followed too) still belong to D4."""
    portal = FakePortal()
    former = {"dataset_id": D4, "organization_id": ORG_A, "metric_month": "2025-12", "monthly_visit": 7}
    portal.metrics.append(former)

    result = run_crawl(portal, organizations=["org-a", "org-b"], with_metrics_history={D1, D4})

    assert former in result.metrics[D4]
    assert len(result.metrics[D4]) == len(rows_of(portal, D4, "2025-11"))


def test_crawl_full_metrics_history_fetches_every_dataset_whole() -> None:
    portal = FakePortal()

    result = run_crawl(portal, full_metrics_history=True)

    (params,) = portal.calls("/api/datasets/data/")
    assert params["dataset_id__in"] == f"{D1},{D2},{D4},{GONE}" and "metric_month__greater" not in params
    assert result.metrics == {key: rows_of(portal, key) for key in (D1, D2, D4)}


def test_crawl_of_a_past_date_keeps_no_month_after_it() -> None:
    """Refreshing 2025-11-30 in January: the metrics API already has December and January."""
    result = run_crawl(FakePortal(), run_date=dt.date(2025, 11, 30), with_metrics_history=set())
    months = {row["metric_month"] for rows in result.metrics.values() for row in rows}
    assert months == {"2025-09", "2025-10", "2025-11"}


def test_crawl_gives_an_empty_metrics_list_to_a_bulk_dataset_without_rows() -> None:
    portal = FakePortal()
    portal.metrics = [row for row in portal.metrics if row["dataset_id"] != D1]

    result = run_crawl(portal)

    assert result.metrics[D1] == []
    assert D3 not in result.metrics  # org A's bulk rows of datasets not followed are dropped


def test_crawl_goes_on_when_the_organization_of_an_extra_dataset_is_gone() -> None:
    portal = FakePortal()
    del portal.organizations[ORG_B]
    result = run_crawl(portal)
    assert D4 in result.datasets and ORG_B not in result.organizations
    assert set(result.organizations) == {ORG_A}


def test_a_gone_slug_is_reported_and_its_remembered_id_stays_followed() -> None:
    never_seen = run(FakePortal(), lambda udata: discover(udata, [], ["old-slug", "four"]))
    assert never_seen.keys == [D4]
    assert [(e.configured_as, e.status, e.resolved_id) for e in never_seen.entries] == [
        ("old-slug", "gone", None),
        ("four", "active", D4),
    ]

    remembered = run(FakePortal(), lambda udata: discover(udata, [], ["old-slug"], {("dataset", "old-slug"): GONE}))
    assert remembered.keys == [GONE], "its id stays a partition: the daily run records it as gone"
    assert remembered.entries[0].status == "gone" and remembered.entries[0].http_status == 410


# --- a part of the portal failing ---------------------------------------------------------------------------


def test_a_failing_batch_of_discussions_is_recorded_and_everything_else_lands() -> None:
    portal = FakePortal(failing={"/api/1/discussions/"})

    result = run_crawl(portal)

    assert set(result.datasets) == {D1, D2, D4} and result.reuses == {D1: portal.reuses[D1]}
    assert result.discussions == {}
    assert sorted(failure.subject for failure in result.failures) == [D1, D2, D4]
    failure = result.failures[0]
    assert (failure.part, failure.http_status) == ("discussions", None)
    assert failure.url.startswith(f"{PORTAL}/api/1/discussions/?for=") and "HTTP 503" in failure.error


def test_the_metrics_api_down_keeps_every_dataset_without_metrics_and_the_rest_lands() -> None:
    portal = FakePortal(failing={"/api/datasets/data/"})

    result = run_crawl(portal)

    assert result.metrics == {}
    assert {(failure.part, failure.subject) for failure in result.failures} == {
        ("metrics", D1),
        ("metrics", D2),
        ("metrics", D4),
    }
    assert set(result.datasets) == {D1, D2, D4} and set(result.discussions) == {D1, D4}


def test_a_failing_reuse_listing_is_a_failure_for_every_followed_dataset() -> None:
    portal = FakePortal(failing={"/api/1/reuses/"})

    result = run_crawl(portal)

    assert result.reuses == {}, "no dataset is told it has no reuse"
    assert {failure.subject for failure in result.failures if failure.part == "reuses"} >= {D1, D2, D4}
    assert set(result.datasets) == {D1, D2, D4} and set(result.discussions) == {D1, D4}


def test_a_dataset_whose_reuses_fail_is_the_only_one_recorded() -> None:
    portal = FakePortal(reuse_total=100_000, failing={D1})  # asked per dataset; D1's request answers 503

    result = run_crawl(portal)

    assert D1 not in result.reuses
    assert [(f.part, f.subject) for f in result.failures if f.part == "reuses"] == [("reuses", D1)]


def test_a_dataset_that_does_not_answer_is_a_failure_not_a_gone_dataset() -> None:
    portal = FakePortal(failing={D4})

    result = run_crawl(portal, configured_datasets=[D4, "old-slug"])

    assert D4 not in result.datasets and D4 not in result.gone
    assert [(f.part, f.subject) for f in result.failures] == [("dataset", D4)]
    assert D4 not in result.discussions and D4 not in result.metrics, "nothing lands for a dataset not fetched"
    assert [(e.configured_as, e.status) for e in result.entries] == [
        ("org-a", "active"),
        (D4, "unreachable"),
        ("old-slug", "gone"),
    ]


def test_crawl_has_no_phase_waiting_for_another() -> None:
    """The organizations' dataset pages are held until discussions, reuses and metrics have all been asked:
    with phases one after the other the crawl would wait for ever (here: fail after 5 s)."""
    portal = FakePortal()
    others_asked = asyncio.Event()

    async def handler(request: httpx.Request) -> httpx.Response:
        if request.url.path == "/api/1/datasets/":
            await asyncio.wait_for(others_asked.wait(), timeout=5)
        response = portal.handle(request)
        if {"/api/1/discussions/", "/api/1/reuses/", "/api/datasets/data/"} <= {r.url.path for r in portal.requests}:
            others_asked.set()
        return response

    async def main() -> Crawl:
        async with PortalClient(transport=httpx.MockTransport(handler), max_elapsed=0, concurrency=5) as client:
            return await crawl(
                Udata(client, PORTAL, METRICS),
                organizations=["org-a"],
                dataset_keys=[D1, D2, D4],
                run_date=RUN_DATE,
                with_metrics_history=set(),
            )

    result = asyncio.run(main())

    assert set(result.datasets) == {D1, D2, D4} and result.failures == []
