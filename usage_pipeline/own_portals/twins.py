"""Link a data.gouv.fr dataset to its twin on the producer's own portal (facts and sources: docs/harvest-twins.md).

Methods, in order: the harvest metadata data.gouv.fr keeps (`harvest`: `remote_id`, `remote_url`, `uri`,
`dct_identifier` on the portal's `domain`), then a resource URL pointing at a dataset of the portal, then the
title (accents and case folded, when exactly one portal dataset has it).
"""

import re
import unicodedata
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from usage_pipeline.own_portals.config import OwnPortal

HARVEST_METADATA = "harvest_metadata"
RESOURCE_URL = "resource_url"
TITLE = "title"
_ODS_PATH = re.compile(r"/(?:explore/dataset|catalog/datasets|api/records/1\.0/search/\?dataset=)/?([^/?#&]+)")
_CKAN_PATH = re.compile(r"/dataset/([^/?#]+)")


@dataclass(frozen=True)
class Twin:
    """A data.gouv.fr dataset and its twin on an own portal, with the method that linked them."""

    dataset_id: str
    portal: str
    portal_dataset_id: str
    method: str


@dataclass(frozen=True)
class PortalDataset:
    """What twins are matched on, on the own portal: its id, its other names (CKAN `name`), its title."""

    id: str
    aliases: tuple[str, ...] = ()
    title: str = ""


def _fold(text: str) -> str:
    text = unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode().lower()
    return re.sub(r"[^a-z0-9]+", " ", text).strip()


def _id_in_url(url: str, portal: OwnPortal) -> str | None:
    parts = urlsplit(url)
    if (parts.hostname or "").lower() != portal.domain:
        return None
    pattern = _ODS_PATH if portal.kind == "ods" else _CKAN_PATH
    match = pattern.search(parts.path + (f"?{parts.query}" if parts.query else ""))
    return match.group(1) if match else None


def _resolve(candidate: str, catalog: Mapping[str, str]) -> str | None:
    """The portal id for an id or alias found in data.gouv.fr's metadata (the catalog maps both to the id)."""
    return catalog.get(candidate) or catalog.get(candidate.lower())


def find_twin(dataset: dict[str, Any], portal: OwnPortal, catalog: Iterable[PortalDataset]) -> Twin | None:
    """The twin of ``dataset`` (a udata dataset object) on ``portal``, or None."""
    catalog = list(catalog)
    by_key = {key: item.id for item in catalog for key in (item.id, *item.aliases)}
    by_key |= {key.lower(): value for key, value in by_key.items()}
    harvest = dataset.get("harvest") or {}
    if (harvest.get("domain") or "").lower() == portal.domain:
        fields = ("remote_url", "uri", "dct_identifier", "remote_id")  # the Ministry of Economy's rule for Opendatasoft
        if portal.kind == "ckan":
            fields = ("remote_id", "uri", "remote_url")  # the CKAN backend keeps the package id in remote_id
        for field in fields:
            value = harvest.get(field) or ""
            found = _id_in_url(value, portal) if "://" in value else value or None
            if found and (twin_id := _resolve(found, by_key) or (found if not catalog else None)):
                return Twin(dataset["id"], portal.name, twin_id, HARVEST_METADATA)
    for resource in dataset.get("resources") or []:
        found = _id_in_url(resource.get("url") or "", portal)
        if found and (twin_id := _resolve(found, by_key)):
            return Twin(dataset["id"], portal.name, twin_id, RESOURCE_URL)
    title = _fold(dataset.get("title") or "")
    same_title = [item.id for item in catalog if title and _fold(item.title) == title]
    if len(same_title) == 1:
        return Twin(dataset["id"], portal.name, same_title[0], TITLE)
    return None
