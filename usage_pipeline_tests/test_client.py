"""PortalClient: paging, headers, retries with backoff, giving up, errors and bounded concurrency.

Everything runs against `httpx.MockTransport` with a fake `sleep` that records delays and a seeded RNG:
no network, no real waiting.
"""

from __future__ import annotations

import asyncio
import email.utils
import random
from collections.abc import Awaitable, Callable
from typing import Any

import httpx
import pytest

from usage_pipeline.portal.client import NotFound, PortalClient, PortalError, RateLimited

BASE = "https://portal.test/api/1"
METRICS = "https://metrics.test/api/datasets/data/"
ORG = "534fff75a3a7292c64a77de4"
SEED = 20260115

Answer = httpx.Response | Exception


class FakeSleep:
    """Records the requested delays instead of sleeping; optionally advances a fake clock."""

    def __init__(self, clock: list[float] | None = None) -> None:
        self.delays: list[float] = []
        self.clock = clock

    async def __call__(self, delay: float) -> None:
        self.delays.append(delay)
        if self.clock is not None:
            self.clock[0] += delay


class Script:
    """A transport handler answering a fixed sequence of responses or exceptions, recording requests."""

    def __init__(self, *answers: Answer) -> None:
        self.answers = list(answers)
        self.requests: list[httpx.Request] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        if not self.answers:
            raise AssertionError(f"unexpected request #{len(self.requests)}: {request.url}")
        answer = self.answers.pop(0)
        if isinstance(answer, Exception):
            raise answer
        return answer


def run_client(
    handler: Callable[[httpx.Request], Any],
    use: Callable[[PortalClient], Awaitable[Any]],
    sleep: FakeSleep | None = None,
    **options: Any,
) -> tuple[Any, PortalClient]:
    """Build a client on a mock transport inside a fresh event loop, run ``use(client)``, return (result, client)."""

    async def main() -> tuple[Any, PortalClient]:
        async with PortalClient(
            transport=httpx.MockTransport(handler),
            sleep=sleep or FakeSleep(),
            rng=random.Random(SEED),
            **options,
        ) as client:
            return await use(client), client

    return asyncio.run(main())


def ok(payload: Any = None) -> httpx.Response:
    return httpx.Response(200, json={"ok": True} if payload is None else payload)


# --- paging -------------------------------------------------------------------------------------------------


def udata_pages_handler(pages: list[list[dict]]) -> tuple[Callable[[httpx.Request], httpx.Response], list[str]]:
    """A udata listing served in ``pages``; next_page links repeat every argument (page set explicitly)."""
    links: list[str] = []

    def handler(request: httpx.Request) -> httpx.Response:
        links.append(str(request.url))
        if len(links) > 2 * len(pages):
            raise AssertionError(f"paging does not end: {links[-3:]}")
        number = int(request.url.params.get("page", "1"))
        following = (
            f"{BASE}/datasets/?organization={ORG}&page_size=2&page={number + 1}" if number < len(pages) else None
        )
        return httpx.Response(
            200,
            json={
                "data": pages[number - 1],
                "page": number,
                "page_size": 2,
                "total": sum(map(len, pages)),
                "next_page": following,
                "previous_page": None,
            },
        )

    return handler, links


def test_collect_follows_udata_next_page_across_three_pages() -> None:
    """Items come back in order; the first call's params (including `page=1`) are not re-sent on next links."""
    pages = [[{"id": "a"}, {"id": "b"}], [{"id": "c"}, {"id": "d"}], [{"id": "e"}]]
    handler, urls = udata_pages_handler(pages)

    items, client = run_client(
        handler,
        lambda client: client.collect(f"{BASE}/datasets/", {"organization": ORG, "page_size": 2, "page": 1}),
    )

    assert [item["id"] for item in items] == ["a", "b", "c", "d", "e"]
    assert urls == [
        f"{BASE}/datasets/?organization={ORG}&page_size=2&page=1",
        f"{BASE}/datasets/?organization={ORG}&page_size=2&page=2",
        f"{BASE}/datasets/?organization={ORG}&page_size=2&page=3",
    ]
    assert client.stats.requests == 3
    assert client.stats.retries == 0


def test_collect_asks_the_other_pages_at_once_when_the_first_says_how_many() -> None:
    """Page 1 says 5 items by 2: pages 2 and 3 are asked together (both in flight before either answers)."""
    pages = [[{"id": "a"}, {"id": "b"}], [{"id": "c"}, {"id": "d"}], [{"id": "e"}]]
    inner, urls = udata_pages_handler(pages)
    in_flight: list[int] = []
    both_asked = asyncio.Event()

    async def handler(request: httpx.Request) -> httpx.Response:
        number = int(request.url.params.get("page", "1"))
        if number > 1:
            in_flight.append(number)
            if len(in_flight) == 2:
                both_asked.set()
            await asyncio.wait_for(both_asked.wait(), timeout=5)
        return inner(request)

    items, _ = run_client(
        handler, lambda client: client.collect(f"{BASE}/datasets/", {"organization": ORG, "page_size": 2}, "data{id}")
    )

    assert [item["id"] for item in items] == ["a", "b", "c", "d", "e"]
    assert sorted(in_flight) == [2, 3]
    assert sorted(urls[1:]) == [
        f"{BASE}/datasets/?organization={ORG}&page_size=2&page=2",
        f"{BASE}/datasets/?organization={ORG}&page_size=2&page=3",
    ]


def test_collect_follows_next_links_when_the_page_does_not_say_how_many_and_keeps_the_mask() -> None:
    pages = {
        "1": {"data": [{"id": "a"}], "next_page": f"{BASE}/datasets/?organization={ORG}&page=2"},
        "2": {"data": [{"id": "b"}, {"id": "a"}], "next_page": None},  # the listing moved: "a" again
    }
    requests: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        requests.append(request)
        return httpx.Response(200, json=pages[request.url.params.get("page", "1")])

    items, _ = run_client(handler, lambda client: client.collect(f"{BASE}/datasets/", {"organization": ORG}, "m"))

    assert items == [{"id": "a"}, {"id": "b"}], "each item once"
    assert [request.headers.get("X-Fields") for request in requests] == ["m", "m"]


def test_collect_reads_the_metrics_api_envelope() -> None:
    rows = [{"__id": n, "metric_month": f"2025-{n:02d}"} for n in range(1, 6)]
    urls: list[str] = []

    def handler(request: httpx.Request) -> httpx.Response:
        urls.append(str(request.url))
        if len(urls) > 10:
            raise AssertionError(f"paging does not end: {urls[-3:]}")
        params = request.url.params
        page, size = int(params.get("page", "1")), int(params["page_size"])
        chunk = rows[(page - 1) * size : page * size]
        more = page * size < len(rows)
        following = f"{METRICS}?dataset_id__exact=x&page={page + 1}&page_size={size}" if more else None
        return httpx.Response(
            200,
            json={
                "data": chunk,
                "links": {"next": following, "prev": None},
                "meta": {"page": page, "page_size": size, "total": len(rows)},
            },
        )

    items, client = run_client(
        handler, lambda client: client.collect(METRICS, {"dataset_id__exact": "x", "page_size": 2})
    )

    assert items == rows
    assert urls[0] == f"{METRICS}?dataset_id__exact=x&page_size=2"
    assert sorted(urls[1:]) == [
        f"{METRICS}?dataset_id__exact=x&page_size=2&page=2",
        f"{METRICS}?dataset_id__exact=x&page_size=2&page=3",
    ], "the metrics API's meta says how many pages: the others are asked at once"
    assert client.stats.requests == 3


def test_collect_of_an_envelope_without_data_is_empty() -> None:
    script = Script(httpx.Response(200, json={"data": None, "next_page": None}))
    items, _ = run_client(script, lambda client: client.collect(f"{BASE}/datasets/"))
    assert items == []
    assert len(script.requests) == 1


# --- headers ------------------------------------------------------------------------------------------------


def test_user_agent_and_x_fields_header_sent_only_when_fields_given() -> None:
    script = Script(ok(), ok())

    async def use(client: PortalClient) -> None:
        await client.get_json(f"{BASE}/datasets/x/", fields="id,title")
        await client.get_json(f"{BASE}/datasets/y/")

    run_client(script, use)

    with_mask, without_mask = script.requests
    for request in script.requests:
        assert request.headers["User-Agent"].startswith("usage_pipeline/")
        assert request.headers["Accept"] == "application/json"
    assert with_mask.headers["X-Fields"] == "id,title"
    assert "X-Fields" not in without_mask.headers


# --- retries ------------------------------------------------------------------------------------------------


def test_429_with_retry_after_seconds_is_retried_once_after_that_delay() -> None:
    script = Script(httpx.Response(429, headers={"Retry-After": "7"}), ok({"answer": 42}))
    sleep = FakeSleep()

    result, client = run_client(script, lambda client: client.get_json(f"{BASE}/datasets/x/"), sleep)

    assert result == {"answer": 42}
    assert sleep.delays == [7.0]
    assert client.stats.requests == 2
    assert client.stats.retries == 1


@pytest.mark.parametrize(("offset", "expected"), [(30, 30.0), (-30, 0.0)])
def test_429_with_http_date_retry_after(monkeypatch: pytest.MonkeyPatch, offset: int, expected: float) -> None:
    """An HTTP-date Retry-After waits until that date; a date in the past means no wait."""
    now = 1_800_000_000.0
    monkeypatch.setattr("usage_pipeline.portal.client.time.time", lambda: now)
    retry_at = email.utils.formatdate(now + offset, usegmt=True)
    script = Script(httpx.Response(429, headers={"Retry-After": retry_at}), ok())
    sleep = FakeSleep()

    result, client = run_client(script, lambda client: client.get_json(f"{BASE}/datasets/x/"), sleep)

    assert result == {"ok": True}
    assert sleep.delays == [pytest.approx(expected)]
    assert client.stats.retries == 1


def test_503_is_retried_after_a_full_jitter_backoff() -> None:
    script = Script(httpx.Response(503), ok())
    sleep = FakeSleep()

    result, client = run_client(script, lambda client: client.get_json(f"{BASE}/datasets/x/"), sleep, backoff_base=2.0)

    assert result == {"ok": True}
    assert len(sleep.delays) == 1
    assert 0 <= sleep.delays[0] <= 2.0 * 2**0
    assert sleep.delays[0] == random.Random(SEED).uniform(0, 2.0)
    assert (client.stats.requests, client.stats.retries) == (2, 1)


def test_backoff_grows_exponentially_and_is_capped() -> None:
    """Delay n is drawn uniformly in [0, min(cap, base * 2**n)]."""
    script = Script(*[httpx.Response(500)] * 5, ok())
    sleep = FakeSleep()

    run_client(script, lambda client: client.get_json(f"{BASE}/datasets/x/"), sleep, backoff_base=1.0, backoff_cap=5.0)

    rng = random.Random(SEED)
    expected = [rng.uniform(0, min(5.0, 1.0 * 2**attempt)) for attempt in range(5)]
    assert sleep.delays == expected
    assert all(0 <= delay <= min(5.0, 2**n) for n, delay in enumerate(sleep.delays))


def test_502_with_an_html_body_is_retried() -> None:
    bad_gateway = httpx.Response(502, headers={"Content-Type": "text/html"}, content=b"<html>Bad gateway</html>")
    script = Script(bad_gateway, ok({"id": "x"}))
    sleep = FakeSleep()

    result, client = run_client(script, lambda client: client.get_json(f"{BASE}/datasets/x/"), sleep)

    assert result == {"id": "x"}
    assert len(sleep.delays) == 1
    assert (client.stats.requests, client.stats.retries) == (2, 1)


@pytest.mark.parametrize(
    "body",
    [b"<html>maintenance</html>", b"", b'{"truncated": ', b"\xff\xfe\xfa not utf-8"],
    ids=["html", "empty", "truncated", "not-utf8"],
)
def test_200_with_a_body_that_is_not_json_is_retried(body: bytes) -> None:
    not_json = httpx.Response(200, headers={"Content-Type": "text/html"}, content=body)
    script = Script(not_json, ok({"id": "x"}))
    sleep = FakeSleep()

    result, client = run_client(script, lambda client: client.get_json(f"{BASE}/datasets/x/"), sleep)

    assert result == {"id": "x"}
    assert len(sleep.delays) == 1
    assert (client.stats.requests, client.stats.retries) == (2, 1)


@pytest.mark.parametrize(
    "error",
    [httpx.ConnectError("connection refused"), httpx.ReadTimeout("read timed out")],
    ids=["connect-error", "read-timeout"],
)
def test_transport_errors_are_retried(error: Exception) -> None:
    script = Script(error, ok({"id": "x"}))
    sleep = FakeSleep()

    result, client = run_client(script, lambda client: client.get_json(f"{BASE}/datasets/x/"), sleep)

    assert result == {"id": "x"}
    assert len(sleep.delays) == 1
    assert (client.stats.requests, client.stats.retries) == (2, 1)


def test_stats_count_requests_retries_and_bytes_over_several_calls() -> None:
    first = ok({"n": 1})
    second = ok({"n": 2})
    script = Script(httpx.Response(503), first, httpx.ConnectError("down"), httpx.Response(429), second)

    async def use(client: PortalClient) -> list[Any]:
        return [await client.get_json(f"{BASE}/a/"), await client.get_json(f"{BASE}/b/")]

    result, client = run_client(script, use)

    assert result == [{"n": 1}, {"n": 2}]
    assert client.stats.requests == 5
    assert client.stats.retries == 3
    assert client.stats.bytes_received == len(first.content) + len(second.content)


# --- giving up ----------------------------------------------------------------------------------------------


def test_gives_up_after_max_elapsed_with_the_full_url(monkeypatch: pytest.MonkeyPatch) -> None:
    """Always 503: the delays slept never exceed max_elapsed and the error names the URL with its query."""
    clock = [1000.0]
    monkeypatch.setattr("usage_pipeline.portal.client.time.monotonic", lambda: clock[0])
    script = Script(*[httpx.Response(503)] * 100)
    sleep = FakeSleep(clock)

    async def use(client: PortalClient) -> Any:
        return await client.get_json(f"{BASE}/datasets/", {"organization": ORG, "page_size": 100})

    with pytest.raises(PortalError) as raised:
        run_client(script, use, sleep, max_elapsed=5, backoff_base=1.0, backoff_cap=30.0)

    error = raised.value
    full_url = f"{BASE}/datasets/?organization={ORG}&page_size=100"
    assert not isinstance(error, NotFound)
    assert full_url in str(error)
    assert "gave up" in str(error)
    assert "HTTP 503" in str(error)
    assert error.url == full_url
    # Bounded: exactly the attempts whose cumulated backoff fits within max_elapsed (replayed from the seed).
    rng = random.Random(SEED)
    expected: list[float] = []
    while True:
        delay = rng.uniform(0, min(30.0, 2 ** len(expected)))
        if sum(expected) + delay > 5:
            break
        expected.append(delay)
    assert sleep.delays == expected
    assert sum(sleep.delays) <= 5
    assert len(script.requests) == len(expected) + 1 < 100
    assert f"after {len(expected) + 1} attempts" in str(error)


def test_a_retry_after_longer_than_max_elapsed_gives_up_without_sleeping() -> None:
    script = Script(httpx.Response(429, headers={"Retry-After": "600"}), ok())
    sleep = FakeSleep()

    with pytest.raises(RateLimited, match="answered 429: retry after 600s") as raised:
        run_client(script, lambda client: client.get_json(f"{BASE}/datasets/x/"), sleep, max_elapsed=60)

    assert raised.value.url == f"{BASE}/datasets/x/"
    assert sleep.delays == []
    assert len(script.requests) == 1


def test_an_exhausted_rate_limit_stops_at_once_with_its_reset_time() -> None:
    headers = {"X-RateLimit-Remaining": "0", "X-RateLimit-Reset": "1798761600"}  # GitHub's primary limit
    script = Script(httpx.Response(403, headers=headers, json={"message": "API rate limit exceeded"}), ok())
    sleep = FakeSleep()

    with pytest.raises(RateLimited, match="answered 403: rate limit reached") as raised:
        run_client(script, lambda client: client.get_json(f"{BASE}/datasets/x/"), sleep, max_elapsed=60)

    assert (raised.value.status, raised.value.reset) == (403, 1798761600.0)
    assert sleep.delays == [] and len(script.requests) == 1


# --- errors that are not retried ----------------------------------------------------------------------------


@pytest.mark.parametrize("status", [404, 410])
def test_404_and_410_raise_not_found_without_retry(status: int) -> None:
    script = Script(httpx.Response(status, json={"message": "gone"}), ok())
    sleep = FakeSleep()
    clients: list[PortalClient] = []

    async def use(client: PortalClient) -> Any:
        clients.append(client)
        return await client.get_json(f"{BASE}/datasets/old-one/", {"page": 1})

    with pytest.raises(NotFound) as raised:
        run_client(script, use, sleep)

    assert raised.value.status == status
    assert raised.value.url == f"{BASE}/datasets/old-one/?page=1"
    assert str(status) in str(raised.value)
    assert len(script.requests) == 1
    assert sleep.delays == []
    assert (clients[0].stats.requests, clients[0].stats.retries) == (1, 0)


def test_400_raises_portal_error_without_retry() -> None:
    script = Script(httpx.Response(400, json={"message": "Page size exceeds allowed maximum: 50"}), ok())
    sleep = FakeSleep()

    with pytest.raises(PortalError) as raised:
        run_client(script, lambda client: client.get_json(METRICS, {"page_size": 100}), sleep)

    error = raised.value
    assert not isinstance(error, NotFound)
    assert error.status == 400
    assert f"{METRICS}?page_size=100" in str(error)
    assert "Page size exceeds allowed maximum" in str(error)
    assert len(script.requests) == 1
    assert sleep.delays == []


# --- bounded concurrency ------------------------------------------------------------------------------------


def test_at_most_concurrency_requests_are_in_flight() -> None:
    in_flight = 0
    peak = 0

    async def handler(request: httpx.Request) -> httpx.Response:
        nonlocal in_flight, peak
        in_flight += 1
        peak = max(peak, in_flight)
        for _ in range(5):
            await asyncio.sleep(0)
        in_flight -= 1
        return httpx.Response(200, json={"n": int(request.url.params["n"])})

    async def use(client: PortalClient) -> list[Any]:
        return await asyncio.gather(*(client.get_json(f"{BASE}/x/", {"n": n}) for n in range(10)))

    result, client = run_client(handler, use, concurrency=3)

    assert result == [{"n": n} for n in range(10)]
    assert peak == 3
    assert in_flight == 0
    assert client.stats.requests == 10
