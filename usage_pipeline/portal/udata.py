"""The udata API v1 and the metrics API, as the pipeline uses them (shapes: docs/udata-api.md, docs/metrics-api.md)."""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Any

from usage_pipeline.portal.client import PortalClient

OBJECT_ID = re.compile(r"^[0-9a-f]{24}$")
PAGE_SIZE = 100
METRICS_PAGE_SIZE = 50  # the metrics API answers 400 above 50 rows a page
DISCUSSION_BATCH = 40  # dataset ids per `for=` filter (a repeatable argument)
METRICS_BATCH = 100  # dataset ids per `dataset_id__in=` filter of the metrics API (about 2.5 kB of URL)
_PAGER = "next_page,total,page_size"  # what a listing's mask keeps of the page: its size tells how many pages

# X-Fields masks: only what the tables use, so pages stay small.
_REF = "id,slug,name,first_name,last_name"
DATASET_FIELDS = (
    "id,title,slug,acronym,created_at,last_modified,last_update,deleted,archived,private,frequency,license,"
    "tags,page,harvest,metrics,organization{id,slug,name},owner{id,slug},"
    "resources{id,title,type,format,filetype,url,created_at,last_modified,metrics}"
)
ORGANIZATION_FIELDS = f"id,slug,name,acronym,page,metrics,members{{role,since,user{{{_REF}}}}}"
DISCUSSION_FIELDS = (
    f"data{{id,title,subject,created,closed,closed_by{{{_REF}}},closed_by_organization{{id,slug,name}},"
    f"user{{{_REF}}},organization{{id,slug,name}},self_web_url,"
    f"discussion{{id,content,posted_on,posted_by{{{_REF}}},posted_by_organization{{id,slug,name}}}}}},{_PAGER}"
)
REUSE_FIELDS = (
    f"data{{id,title,slug,type,topic,url,page,created_at,last_modified,deleted,archived,private,metrics,"
    f"datasets{{id}},owner{{{_REF}}},organization{{id,slug,name}}}},{_PAGER}"
)


def is_object_id(value: str) -> bool:
    """True for a MongoDB ObjectId, the only form the `organization=` and `for=` filters accept."""
    return bool(OBJECT_ID.match(value))


class Udata:
    """Calls of udata API v1 (``{portal_url}/api/1``) and of the metrics API."""

    def __init__(self, client: PortalClient, portal_url: str, metrics_api_url: str) -> None:
        self.client = client
        self.api = f"{portal_url.rstrip('/')}/api/1"
        self.metrics_api = f"{metrics_api_url.rstrip('/')}/api"

    async def organization(self, id_or_slug: str) -> dict[str, Any]:
        """An organization with its members (raises NotFound when unknown)."""
        return await self.client.get_json(f"{self.api}/organizations/{id_or_slug}/", fields=ORGANIZATION_FIELDS)

    async def organization_datasets(self, organization_id: str, fields: str = DATASET_FIELDS) -> list[dict]:
        """The organization's listed datasets (`/datasets/?organization=` hides private, archived, deleted ones)."""
        return await self.client.collect(
            f"{self.api}/datasets/",
            {"organization": organization_id, "page_size": PAGE_SIZE},
            fields=f"data{{{fields}}},{_PAGER}",
        )

    async def dataset(self, id_or_slug: str, fields: str = DATASET_FIELDS) -> dict[str, Any]:
        """One dataset (raises NotFound on 404 and 410)."""
        return await self.client.get_json(f"{self.api}/datasets/{id_or_slug}/", fields=fields)

    async def discussions_of(self, dataset_ids: list[str]) -> list[dict[str, Any]]:
        """Every discussion, with all its messages, of a batch of datasets (one repeated `for=` filter)."""
        return await self.client.collect(
            f"{self.api}/discussions/",
            [("for", dataset_id) for dataset_id in dataset_ids] + [("page_size", PAGE_SIZE), ("sort", "created")],
            fields=DISCUSSION_FIELDS,
        )

    async def reuses(self, dataset_id: str) -> list[dict[str, Any]]:
        """The reuses referenced on a dataset."""
        return await self.client.collect(
            f"{self.api}/reuses/", {"dataset": dataset_id, "page_size": PAGE_SIZE}, fields=REUSE_FIELDS
        )

    async def reuse_count(self) -> int:
        """How many reuses the portal lists in all (one request of one item)."""
        page = await self.client.get_json(f"{self.api}/reuses/", {"page_size": 1}, fields="total")
        return int(page.get("total") or 0)

    async def all_reuses(self) -> list[dict[str, Any]]:
        """Every reuse the portal lists, each with the ids of the datasets it uses (oldest first)."""
        return await self.client.collect(
            f"{self.api}/reuses/", {"page_size": PAGE_SIZE, "sort": "created"}, fields=REUSE_FIELDS
        )

    async def months_of(self, dataset_ids: list[str], since: str | None = None) -> list[dict[str, Any]]:
        """Monthly visits and downloads rows (`datasets` model) of a batch of datasets, under every organization
        they were published by (a dataset that moved has a row per organization for the month it moved)."""
        params: dict[str, Any] = {
            "dataset_id__in": ",".join(dataset_ids),
            "page_size": METRICS_PAGE_SIZE,
            "metric_month__sort": "asc",
        }
        if since:
            params["metric_month__greater"] = since  # `greater` is >= on the metrics API
        return await self.client.collect(f"{self.metrics_api}/datasets/data/", params)


def batches(items: Iterable[str], size: int) -> list[list[str]]:
    """``items`` in lists of at most ``size``."""
    listed = list(items)
    return [listed[start : start + size] for start in range(0, len(listed), size)]
