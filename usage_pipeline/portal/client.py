"""A polite HTTP client for JSON APIs: bounded concurrency, retries with backoff, paging."""

from __future__ import annotations

import asyncio
import email.utils
import json
import random
import time
from collections.abc import AsyncIterator, Awaitable, Callable
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
                if response.status_code in RETRYABLE_STATUSES:
                    wait = _retry_after_seconds(response.headers.get("Retry-After"))
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

    async def pages(
        self,
        url: str,
        params: dict[str, Any] | list[tuple[str, Any]] | None = None,
        fields: str | None = None,
    ) -> AsyncIterator[list[dict[str, Any]]]:
        """Yield the ``data`` of each page, following udata's ``next_page`` or the metrics API's ``links.next``."""
        next_url: str | None = url
        next_params = params
        while next_url:
            page = await self.get_json(next_url, next_params, fields)
            yield page.get("data") or []
            next_url = page.get("next_page") or (page.get("links") or {}).get("next")
            next_params = None  # next links repeat every query argument

    async def collect(
        self,
        url: str,
        params: dict[str, Any] | list[tuple[str, Any]] | None = None,
        fields: str | None = None,
    ) -> list[dict[str, Any]]:
        """All items of a paged listing."""
        return [item async for page in self.pages(url, params, fields) for item in page]
