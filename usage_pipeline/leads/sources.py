"""What every lead source shares: a followed dataset's identifiers, a lead, and the source interface."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from usage_pipeline.portal.client import PortalClient

EXCERPT_CHARACTERS = 200


@dataclass(frozen=True)
class DatasetIdentifiers:
    """What a work citing a dataset may contain: its page path (by slug or id), its resources' stable paths."""

    dataset_id: str
    slug: str
    title: str
    resource_ids: tuple[str, ...] = ()

    @property
    def page_paths(self) -> tuple[str, ...]:
        """``datasets/<slug>`` and ``datasets/<id>``: in its page URL (``/fr/datasets/...``) and API URL
        (``/api/1/datasets/...``) alike."""
        return tuple(dict.fromkeys(path for path in (f"datasets/{self.slug}", f"datasets/{self.dataset_id}") if path))

    @property
    def resource_paths(self) -> tuple[str, ...]:
        """``datasets/r/<resource id>`` (the stable download link) and ``resources/<slug>/`` (static files)."""
        return (*(f"datasets/r/{rid}" for rid in self.resource_ids), f"resources/{self.slug}/")

    @property
    def identifiers(self) -> tuple[str, ...]:
        return (*self.page_paths, *self.resource_paths)


@dataclass(frozen=True)
class Lead:
    """A work that cites a followed dataset without being declared as its reuse (as far as the source knows)."""

    source: str
    url: str
    title: str | None
    author: str | None  # public names only
    dataset_id: str
    matched: str  # the identifier found
    excerpt: str | None  # where it was found, one line, shortened


@dataclass
class SearchResult:
    """One dataset searched by one source: its leads and the requests it cost."""

    leads: list[Lead]
    requests: int


class LeadSource(Protocol):
    """Searches one dataset's identifiers; raises `usage_pipeline.portal.client.PortalError` when it cannot."""

    name: str
    requests_per_dataset: int

    async def search(self, client: PortalClient, dataset: DatasetIdentifiers) -> SearchResult: ...


def first_match(text: str | None, identifiers: tuple[str, ...]) -> str | None:
    """The first of ``identifiers`` found in ``text`` (case-insensitive)."""
    lowered = (text or "").lower()
    return next((identifier for identifier in identifiers if identifier.lower() in lowered), None)


def excerpt(text: str | None, needle: str | None, limit: int = EXCERPT_CHARACTERS) -> str | None:
    """``text`` on one line around ``needle`` (its start when absent), at most ``limit`` characters."""
    text = " ".join((text or "").split())
    if not text:
        return None
    at = text.lower().find(needle.lower()) if needle else -1
    start = max(0, at - limit // 3) if at > 0 else 0
    cut = text[start : start + limit]
    return ("…" if start else "") + cut + ("…" if start + limit < len(text) else "")
