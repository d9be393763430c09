"""The portal as a Dagster resource: where it is, what to follow, how politely to ask."""

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import dagster as dg

from usage_pipeline.portal.client import PortalClient
from usage_pipeline.portal.udata import Udata
from usage_pipeline.settings import Settings


class UdataResource(dg.ConfigurableResource):
    """A udata portal (API v1) and its metrics API, and the organizations and datasets to follow."""

    portal_url: str
    metrics_api_url: str
    organizations: list[str] = []
    datasets: list[str] = []
    concurrency: int = 5
    timeout: float = 30.0
    max_elapsed: float = 300.0

    @classmethod
    def from_settings(cls, settings: Settings) -> "UdataResource":
        return cls(
            portal_url=settings.portal_url,
            metrics_api_url=settings.metrics_api_url,
            organizations=list(settings.organizations),
            datasets=list(settings.datasets),
            concurrency=settings.http_concurrency,
            timeout=settings.http_timeout,
            max_elapsed=settings.http_max_elapsed,
        )

    @asynccontextmanager
    async def open(self) -> AsyncIterator[Udata]:
        """A Udata API bound to a fresh client (one per event loop)."""
        async with PortalClient(
            concurrency=self.concurrency, timeout=self.timeout, max_elapsed=self.max_elapsed
        ) as client:
            yield Udata(client, self.portal_url, self.metrics_api_url)
