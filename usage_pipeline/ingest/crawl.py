"""What the portal says about a set of datasets today, fetched concurrently and in bulk where the API allows."""

from __future__ import annotations

import asyncio
import datetime as dt
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from usage_pipeline.dates import month_key
from usage_pipeline.portal.client import NotFound, PortalError
from usage_pipeline.portal.udata import Udata, is_object_id

FORBIDDEN_KEY_CHARACTERS = set(",|[]")
RECENT_MONTHS = 3  # the current month is partial and the metrics API may still correct the two before


@dataclass
class Crawl:
    """The portal's answers for one run, keyed by dataset id."""

    organizations: dict[str, dict[str, Any]] = field(default_factory=dict)
    datasets: dict[str, dict[str, Any]] = field(default_factory=dict)
    gone: dict[str, int] = field(default_factory=dict)  # dataset key -> 404 or 410
    discussions: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    reuses: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    metrics: dict[str, list[dict[str, Any]]] = field(default_factory=dict)


def validate_partition_key(key: str) -> str:
    """Dataset keys become Dagster partition keys: refuse the characters Dagster's UI mishandles."""
    if not key or FORBIDDEN_KEY_CHARACTERS & set(key) or any(char.isspace() for char in key) or "..." in key:
        raise ValueError(f"dataset key {key!r} cannot be a partition key (no blanks, '...', ',', '|', '[' or ']')")
    return key


async def resolve_organizations(
    udata: Udata, ids_or_slugs: Iterable[str], *, configured: bool = True
) -> dict[str, dict[str, Any]]:
    """Organizations by id, from ids or slugs (the `organization=` filter needs ids).

    A configured organization the portal does not know is an error; the organization of an extra
    dataset that is gone is only skipped (its messages then count as the producer's by their
    `posted_by_organization` alone).
    """
    wanted = list(dict.fromkeys(ids_or_slugs))

    async def one(key: str) -> dict[str, Any] | None:
        try:
            return await udata.organization(key)
        except NotFound as error:
            if not configured:
                return None
            raise PortalError(
                f"USAGE_ORGANIZATIONS names {key!r}, which the portal does not know ({error.status})", url=error.url
            ) from None

    found = await asyncio.gather(*(one(key) for key in wanted))
    return {organization["id"]: organization for organization in found if organization}


async def discover(udata: Udata, organizations: Iterable[str], datasets: Iterable[str]) -> list[str]:
    """Dataset ids to follow: the configured organizations' datasets, then the extra datasets."""
    resolved = await resolve_organizations(udata, organizations)
    listings = await asyncio.gather(*(udata.organization_datasets(org_id, fields="id") for org_id in resolved))
    keys = [item["id"] for listing in listings for item in listing]

    async def extra(key: str) -> str:
        try:
            return (await udata.dataset(key, fields="id"))["id"]
        except NotFound as error:
            if not is_object_id(key):  # a slug cannot be followed until the portal resolves it to an id
                raise PortalError(
                    f"USAGE_DATASETS names {key!r}, which the portal does not know ({error.status}): "
                    "give the dataset's id (24 hexadecimal characters)",
                    url=error.url,
                ) from None
            return key  # an id is kept as configured: the daily run records it as gone

    keys += await asyncio.gather(*(extra(key) for key in datasets))
    return [validate_partition_key(key) for key in dict.fromkeys(keys)]


async def crawl(
    udata: Udata,
    *,
    organizations: Iterable[str],
    dataset_keys: Iterable[str],
    run_date: dt.date,
    with_metrics_history: set[str],
    full_metrics_history: bool = False,
    log: Callable[[str], None] = lambda message: None,
) -> Crawl:
    """Fetch counters, discussions, reuses and monthly metrics of ``dataset_keys`` as of today.

    Bulk calls per organization where the API has them (dataset pages with their counters and
    resources, monthly metrics of recent months); discussions by batches of datasets; reuses only
    for datasets whose reuses counter is above zero. Datasets answering 404/410 land in ``gone``.
    ``full_metrics_history`` fetches the whole monthly history of every dataset again (backfill). Months after
    the run's month (a past date refreshed later) are left out: that date could not have seen them.
    """
    keys = list(dict.fromkeys(dataset_keys))
    wanted = set(keys)
    result = Crawl(organizations=await resolve_organizations(udata, organizations))
    listings = await asyncio.gather(*(udata.organization_datasets(org_id) for org_id in result.organizations))
    listed_in: dict[str, str] = {}
    for org_id, listing in zip(result.organizations, listings, strict=True):
        for item in listing:
            if item["id"] in wanted:
                result.datasets[item["id"]] = item
                listed_in[item["id"]] = org_id
    log(f"{len(result.datasets)} of {len(keys)} datasets listed by {len(result.organizations)} organizations")

    async def single(key: str) -> None:
        try:
            result.datasets[key] = await udata.dataset(key)
        except NotFound as error:
            result.gone[key] = error.status or 404

    await asyncio.gather(*(single(key) for key in keys if key not in result.datasets))
    if result.gone:
        log(f"{len(result.gone)} datasets answered 404/410 and are recorded as gone: {sorted(result.gone)[:10]}")
    other_orgs = (
        {(dataset.get("organization") or {}).get("id") for dataset in result.datasets.values()}
        - set(result.organizations)
        - {None}
    )
    result.organizations |= await resolve_organizations(udata, sorted(other_orgs), configured=False)

    found = list(result.datasets)
    for discussion in await udata.discussions(found):
        subject = discussion.get("subject") or {}
        if subject.get("id") in result.datasets:
            result.discussions.setdefault(subject["id"], []).append(discussion)
    log(f"{sum(map(len, result.discussions.values()))} discussions on {len(result.discussions)} datasets")

    with_reuses = [key for key in found if (result.datasets[key].get("metrics") or {}).get("reuses", 0) > 0]
    for key, reuses in zip(with_reuses, await asyncio.gather(*(udata.reuses(k) for k in with_reuses)), strict=True):
        result.reuses[key] = reuses
    log(f"{sum(map(len, result.reuses.values()))} reuses on {len(with_reuses)} datasets with a reuse counter > 0")

    await _fetch_metrics(udata, result, listed_in, run_date, with_metrics_history, full_metrics_history)
    log(f"{sum(map(len, result.metrics.values()))} monthly metrics rows for {len(result.metrics)} datasets")
    return result


async def _fetch_metrics(
    udata: Udata,
    result: Crawl,
    listed_in: dict[str, str],
    run_date: dt.date,
    with_history: set[str],
    full_history: bool,
) -> None:
    """Recent months in bulk per organization for datasets with stored history, full history for the others."""
    recent = month_key(run_date, RECENT_MONTHS - 1)
    bulk = (
        {}
        if full_history
        else {key: listed_in[key] for key in result.datasets if key in with_history and key in listed_in}
    )
    single = [key for key in result.datasets if key not in bulk]
    org_rows = await asyncio.gather(
        *(udata.dataset_months(organization_id=org_id, since=recent) for org_id in sorted(set(bulk.values())))
    )
    for rows in org_rows:
        for row in rows:
            if row.get("dataset_id") in bulk:
                result.metrics.setdefault(row["dataset_id"], []).append(row)
    for key in bulk:
        result.metrics.setdefault(key, [])

    def since(key: str) -> str | None:
        return recent if key in with_history and not full_history else None

    for key, rows in zip(
        single,
        await asyncio.gather(*(udata.dataset_months(dataset_id=k, since=since(k)) for k in single)),
        strict=True,
    ):
        result.metrics[key] = rows
    run_month = month_key(run_date)
    for key, rows in result.metrics.items():
        result.metrics[key] = [row for row in rows if str(row.get("metric_month") or "") <= run_month]
