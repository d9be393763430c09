"""A polite HTTP client for JSON APIs: bounded concurrency, retries with backoff, paging."""

from __future__ import annotations

import asyncio
import email.utils
import json
import random
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import httpx

from usage_pipeline import __version__

USER_AGENT = (
    f"usage_pipeline/{__version__} (open-data usage ETL for data producers; "
    "+https://github.com/usage-pipeline/usage_pipeline)"
)
RETRYABLE_STATUSES = frozenset({429, 500, 502, 503, 504})


class PortalError(RuntimeError):
    """A request failed for good; the message names the URL."""

    def __init__(self, message: str, *, url: str, status: int | None = None) -> None:
        super().__init__(message)
        self.url = url
        self.status = status


class NotFound(PortalError):
    """The object answers 404 (unknown or private) or 410 (deleted)."""


class RateLimited(PortalError):
    """The API says no more requests for now: 403/429 with ``X-RateLimit-Remaining: 0`` (GitHub's primary limit),
    or a 429 whose Retry-After is longer than the request may still wait. ``reset``: when it allows them again
    (from ``X-RateLimit-Reset`` or Retry-After), if it said."""

    def __init__(self, message: str, *, url: str, status: int, reset: float | None) -> None:
        super().__init__(message, url=url, status=status)
        self.reset = reset


def _rate_limit_reset(headers: httpx.Headers) -> float | None:
    """The epoch second a rate limit lifts, from X-RateLimit-Reset or Retry-After."""
    if (value := headers.get("x-ratelimit-reset", "")).isdigit():
        return float(value)
    wait = _retry_after_seconds(headers.get("Retry-After"))
    return None if wait is None else time.time() + wait


@dataclass
class ClientStats:
    """What the client did, for the run's logs and metadata."""

    requests: int = 0
    retries: int = 0
    bytes_received: int = 0


def _retry_after_seconds(value: str | None) -> float | None:
    """Seconds to wait from a Retry-After header (delta-seconds or an HTTP date)."""
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - time.time())


class PortalClient:
    """Async JSON client shared by every call of a run.

    At most ``concurrency`` requests are in flight; connections are kept alive. A request is retried
    with exponential backoff and full jitter on 429 (honouring Retry-After), 5xx, timeouts, connection
    errors and bodies that are not JSON, until ``max_elapsed`` seconds have passed for that request.
    """

    def __init__(
        self,
        *,
        concurrency: int = 5,
        timeout: float = 30.0,
        max_elapsed: float = 300.0,
        backoff_base: float = 0.5,
        backoff_cap: float = 30.0,
        transport: httpx.AsyncBaseTransport | None = None,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
        rng: random.Random | None = None,
    ) -> None:
        self._http = httpx.AsyncClient(
            timeout=timeout,
            headers={"User-Agent": USER_AGENT, "Accept": "application/json"},
            limits=httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency),
            follow_redirects=True,
            transport=transport,
        )
        self._slots = asyncio.Semaphore(concurrency)
        self._max_elapsed = max_elapsed
        self._backoff_base = backoff_base
        self._backoff_cap = backoff_cap
        self._sleep = sleep
        self._rng = rng or random.Random()
        self.stats = ClientStats()

    async def __aenter__(self) -> PortalClient:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self._http.aclose()

    def _backoff(self, attempt: int) -> float:
        return self._rng.uniform(0, min(self._backoff_cap, self._backoff_base * 2**attempt))

    async def get_json(
        self,
        url: str,
        params: dict[str, Any] | list[tuple[str, Any]] | None = None,
        fields: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> Any:
        """GET ``url`` and decode its JSON body; ``fields`` is sent as an X-Fields mask, ``headers`` as given
        (an own portal's Authorization header, say: headers never appear in error messages)."""
        headers = {**(headers or {}), **({"X-Fields": fields} if fields else {})} or None
        started = time.monotonic()
        attempt = 0
        while True:
            wait: float | None = None
            try:
                async with self._slots:
                    self.stats.requests += 1
                    response = await self._http.get(url, params=params, headers=headers)
                problem = f"HTTP {response.status_code}"
                if response.status_code in (404, 410):
                    raise NotFound(
                        f"{response.request.url} answered {response.status_code}",
                        url=str(response.request.url),
                        status=response.status_code,
                    )
                if response.status_code in (403, 429) and response.headers.get("x-ratelimit-remaining") == "0":
                    raise RateLimited(
                        f"{response.request.url} answered {response.status_code}: rate limit reached",
                        url=str(response.request.url),
                        status=response.status_code,
                        reset=_rate_limit_reset(response.headers),
                    )
                if response.status_code in RETRYABLE_STATUSES:
                    wait = _retry_after_seconds(response.headers.get("Retry-After"))
                    if response.status_code == 429 and wait is not None and wait > self._max_elapsed:
                        raise RateLimited(
                            f"{response.request.url} answered 429: retry after {wait:.0f}s",
                            url=str(response.request.url),
                            status=429,
                            reset=time.time() + wait,
                        )
                elif response.status_code >= 400:
                    raise PortalError(
                        f"{response.request.url} answered {response.status_code}: {response.text[:200]}",
                        url=str(response.request.url),
                        status=response.status_code,
                    )
                else:
                    self.stats.bytes_received += len(response.content)
                    try:
                        return response.json()
                    except (json.JSONDecodeError, UnicodeDecodeError):
                        problem = f"a body that is not JSON ({response.headers.get('content-type', '?')})"
            except httpx.TimeoutException as error:
                problem = f"a timeout ({type(error).__name__})"
            except httpx.TransportError as error:
                problem = f"a connection error ({type(error).__name__}: {error})"
            delay = wait if wait is not None else self._backoff(attempt)
            elapsed = time.monotonic() - started
            if elapsed + delay > self._max_elapsed:
                target = httpx.URL(url, params=params)
                raise PortalError(
                    f"gave up on {target} after {attempt + 1} attempts in {elapsed:.1f}s; last: {problem}",
                    url=str(target),
                )
            attempt += 1
            self.stats.retries += 1
            await self._sleep(delay)

    async def collect(
        self,
        url: str,
        params: dict[str, Any] | list[tuple[str, Any]] | None = None,
        fields: str | None = None,
    ) -> list[dict[str, Any]]:
        """All items of a paged listing (udata's or the metrics API's envelope), each item once.

        The first page tells how many there are (udata's ``total``/``page_size``, the metrics API's ``meta``): the
        other pages are then asked at once (``page=2..n``, as concurrently as the client allows) instead of one
        after the other through their ``next`` links, which are followed only when a page does not say. An item
        seen on two pages (the listing changed while being read) is kept once, by its ``id`` (or ``__id``).
        """
        first = await self.get_json(url, params, fields)
        pages = [first]
        count = _page_count(first)
        if count is not None and count > 1:
            pages += await asyncio.gather(
                *(self.get_json(url, _with_page(params, number), fields) for number in range(2, count + 1))
            )
        else:
            next_url = _next_link(first)
            while next_url:  # next links repeat every query argument
                pages.append(await self.get_json(next_url, None, fields))
                next_url = _next_link(pages[-1])
        items, seen = [], set()
        for page in pages:
            for item in page.get("data") or []:
                key = item.get("id", item.get("__id")) if isinstance(item, dict) else None
                if key is None or key not in seen:
                    items.append(item)
                    seen.add(key)
        return items


def _next_link(page: dict[str, Any]) -> str | None:
    return page.get("next_page") or (page.get("links") or {}).get("next")


def _page_count(page: dict[str, Any]) -> int | None:
    """How many pages a listing has, from its first page (None when it does not say)."""
    meta = page.get("meta") if isinstance(page.get("meta"), dict) else page
    total, size = meta.get("total"), meta.get("page_size")
    if not isinstance(total, int) or not isinstance(size, int) or size < 1:
        return None
    return max(1, -(-total // size))


def _with_page(params: dict[str, Any] | list[tuple[str, Any]] | None, number: int) -> list[tuple[str, Any]]:
    pairs = list(params.items()) if isinstance(params, dict) else list(params or [])
    return [(key, value) for key, value in pairs if key != "page"] + [("page", number)]
