"""HAL, the French open archive: publications whose metadata or full text cite a followed dataset.

One search per dataset on HAL's public search API (Solr, no key): the quoted page paths and the dataset's id in
any text field, the full text included. A lead is the publication's HAL page.
"""

from __future__ import annotations

from typing import Any

from usage_pipeline.leads.sources import DatasetIdentifiers, Lead, SearchResult, excerpt, first_match
from usage_pipeline.portal.client import PortalClient

NAME = "hal"
ROWS = 100
MAX_PAGES = 3  # 300 publications citing one dataset are plenty to invite
FIELDS = "docid,uri_s,title_s,authFullName_s,abstract_s"


class HalSource:
    """HAL's search API (https://api.archives-ouvertes.fr/search/)."""

    name = NAME
    requests_per_dataset = 1

    def __init__(self, api_url: str) -> None:
        self.api_url = api_url.rstrip("/")

    @staticmethod
    def query(dataset: DatasetIdentifiers) -> str:
        terms = [f'"{path}"' for path in dataset.page_paths]
        return " OR ".join(f"text:{term} OR fulltext_t:{term}" for term in terms)

    async def search(self, client: PortalClient, dataset: DatasetIdentifiers) -> SearchResult:
        leads: dict[str, Lead] = {}
        requests, start = 0, 0
        while requests < MAX_PAGES:
            params = {"q": self.query(dataset), "fl": FIELDS, "rows": ROWS, "start": start, "wt": "json"}
            page = (await client.get_json(f"{self.api_url}/search/", params)).get("response") or {}
            requests += 1
            docs = page.get("docs") or []
            for doc in docs:
                lead = _lead(doc, dataset)
                if lead is not None:
                    leads.setdefault(lead.url, lead)
            start += len(docs)
            if not docs or start >= int(page.get("numFound") or 0):
                break
        return SearchResult(list(leads.values()), requests)


def _text(value: Any) -> str | None:
    """HAL gives multivalued fields as lists: their first value."""
    if isinstance(value, list):
        return str(value[0]) if value else None
    return None if value is None else str(value)


def _lead(doc: dict[str, Any], dataset: DatasetIdentifiers) -> Lead | None:
    url = _text(doc.get("uri_s"))
    if not url:
        return None
    authors = doc.get("authFullName_s") or []
    summary = _text(doc.get("abstract_s"))
    matched = first_match(summary, dataset.identifiers) or dataset.page_paths[0]
    return Lead(
        source=NAME,
        url=url,
        title=_text(doc.get("title_s")),
        author=", ".join(authors[:3]) + (" et al." if len(authors) > 3 else "") if authors else None,
        dataset_id=dataset.dataset_id,
        matched=matched,
        excerpt=excerpt(summary, matched),
    )
