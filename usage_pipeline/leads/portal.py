"""The portal itself: reuses whose title or description names a followed dataset (its title, slug or page path)
but that are not linked to it. One full-text search of the portal's reuses per dataset (``q``: its title)."""

from __future__ import annotations

from typing import Any

from usage_pipeline.leads.sources import DatasetIdentifiers, Lead, SearchResult, excerpt, first_match
from usage_pipeline.portal.client import PortalClient

NAME = "portal"
PAGE_SIZE = 50


class PortalSource:
    """udata's reuse search (``/api/1/reuses/?q=``)."""

    name = NAME
    requests_per_dataset = 1

    def __init__(self, portal_url: str) -> None:
        self.portal_url = portal_url.rstrip("/")

    async def search(self, client: PortalClient, dataset: DatasetIdentifiers) -> SearchResult:
        page = await client.get_json(
            f"{self.portal_url}/api/1/reuses/", {"q": f'"{dataset.title}"', "page_size": PAGE_SIZE}
        )
        leads = [lead for reuse in page.get("data") or [] if (lead := _lead(reuse, dataset)) is not None]
        return SearchResult(leads, 1)


def _lead(reuse: dict[str, Any], dataset: DatasetIdentifiers) -> Lead | None:
    """A reuse naming the dataset without being linked to it; None otherwise."""
    if any(ref.get("id") == dataset.dataset_id for ref in reuse.get("datasets") or []):
        return None
    text = f"{reuse.get('title') or ''} {reuse.get('description') or ''}"
    matched = first_match(text, (*dataset.page_paths, dataset.slug, dataset.title))
    url = reuse.get("url") or reuse.get("page")
    if matched is None or not url:
        return None
    owner = reuse.get("organization") or reuse.get("owner") or {}
    name = owner.get("name") or " ".join(filter(None, (owner.get("first_name"), owner.get("last_name"))))
    return Lead(
        source=NAME,
        url=url,
        title=reuse.get("title"),
        author=name or None,
        dataset_id=dataset.dataset_id,
        matched=matched,
        excerpt=excerpt(reuse.get("description"), matched),
    )
