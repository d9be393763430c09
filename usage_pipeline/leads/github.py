"""GitHub: repositories whose code, README or description cite a followed dataset (REST search API).

Per dataset, three searches: code citing its page or API path (``"datasets/<slug>"``), code citing its resources'
stable links (``"datasets/r/<id>"``, up to `MAX_RESOURCES` at once), and repositories naming its slug in their
README or description. A lead is a repository (the work), whichever file matched. GitHub's search has its own
rate limit, lower than the rest of the API (docs/reuse-leads.md): the asset spends a budget per run.
"""

from __future__ import annotations

from typing import Any

from usage_pipeline.leads.sources import DatasetIdentifiers, Lead, SearchResult, excerpt, first_match
from usage_pipeline.portal.client import PortalClient

NAME = "github"
PER_PAGE = 100  # GitHub's maximum; one page is enough: the first 100 repositories citing one dataset
MAX_RESOURCES = 5  # resource ids OR-ed in one code search (GitHub caps a query at 256 characters)
TEXT_MATCH = "application/vnd.github.text-match+json"  # asks for the matching fragments


class GitHubSource:
    """GitHub's REST search, authenticated with USAGE_GITHUB_TOKEN (code search requires it)."""

    name = NAME
    requests_per_dataset = 3

    def __init__(self, api_url: str, token: str) -> None:
        self.api_url = api_url.rstrip("/")
        self._headers = {
            "Authorization": f"Bearer {token}",
            "Accept": TEXT_MATCH,
            "X-GitHub-Api-Version": "2022-11-28",
        }

    def queries(self, dataset: DatasetIdentifiers) -> list[tuple[str, str]]:
        """(endpoint, q) of the dataset's searches."""
        resources = " OR ".join(f'"datasets/r/{rid}"' for rid in dataset.resource_ids[:MAX_RESOURCES])
        queries = [("code", " OR ".join(f'"{path}"' for path in dataset.page_paths))]
        if resources:
            queries.append(("code", resources))
        queries.append(("repositories", f'"{dataset.slug}" in:readme,description'))
        return queries

    async def search(self, client: PortalClient, dataset: DatasetIdentifiers) -> SearchResult:
        leads: dict[str, Lead] = {}
        requests = 0
        for endpoint, query in self.queries(dataset):
            page = await client.get_json(
                f"{self.api_url}/search/{endpoint}", {"q": query, "per_page": PER_PAGE}, headers=self._headers
            )
            requests += 1
            for item in page.get("items") or []:
                lead = _lead(endpoint, item, dataset)
                if lead is not None:
                    leads.setdefault(lead.url, lead)
        return SearchResult(list(leads.values()), requests)


def _lead(endpoint: str, item: dict[str, Any], dataset: DatasetIdentifiers) -> Lead | None:
    """A search item as a lead on its repository; None without a repository address."""
    repository = item.get("repository") if endpoint == "code" else item
    if not isinstance(repository, dict) or not repository.get("html_url"):
        return None
    fragments = [match.get("fragment") or "" for match in item.get("text_matches") or []]
    text = " ".join([*fragments, repository.get("description") or ""])
    matched = first_match(text, (*dataset.identifiers, dataset.slug)) or dataset.slug
    where = f"{item.get('path')}: " if endpoint == "code" and item.get("path") else ""
    return Lead(
        source=NAME,
        url=repository["html_url"],
        title=repository.get("full_name"),
        author=(repository.get("owner") or {}).get("login"),
        dataset_id=dataset.dataset_id,
        matched=matched,
        excerpt=where + (excerpt(text, matched) or ""),
    )
