"""What the portal says about a set of datasets today, fetched concurrently and in bulk where the API allows.

A part of the portal failing after all the client's retries (one dataset, a batch of discussions, the reuses
of a dataset, the metrics API) never stops the crawl: it becomes a `FetchFailure`, and what it was about keeps
its previous rows (see `records.py` and `warehouse.accept_incoming`). An entry of the settings that no longer
resolves (404/410) becomes a `FollowedEntry` that says so, and the other datasets are crawled as usual.
"""

from __future__ import annotations

import asyncio
import datetime as dt
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from typing import Any, Literal, TypeVar

from usage_pipeline.dates import month_key
from usage_pipeline.portal.client import NotFound, PortalError
from usage_pipeline.portal.udata import DISCUSSION_BATCH, METRICS_BATCH, PAGE_SIZE, Udata, batches, is_object_id

FORBIDDEN_KEY_CHARACTERS = set(",|[]")
RECENT_MONTHS = 3  # the current month is partial and the metrics API may still correct the two before
T = TypeVar("T")
EntryKind = Literal["organization", "dataset"]
Part = Literal["organization", "listing", "dataset", "discussions", "reuses", "metrics"]
Remembered = dict[tuple[str, str], str]  # (kind, configured key) -> the id it resolved to before


@dataclass(frozen=True)
class FollowedEntry:
    """An organization or dataset named in the settings, and what the portal says of it today.

    ``status``: active (the configured key answers), renamed (it does not, but the id it resolved to before
    does: followed by that id), gone (404/410, and so does the id remembered), unreachable (no answer after
    every retry).
    """

    kind: EntryKind
    configured_as: str
    resolved_id: str | None
    http_status: int | None
    status: Literal["active", "renamed", "gone", "unreachable"]
    detail: str = ""

    @property
    def setting(self) -> str:
        return "USAGE_ORGANIZATIONS" if self.kind == "organization" else "USAGE_DATASETS"

    def describe(self) -> str:
        return f"{self.setting} names {self.configured_as!r}: {self.status}" + (
            f" ({self.detail})" if self.detail else ""
        )


@dataclass(frozen=True)
class FetchFailure:
    """A part of the portal that did not answer after every retry: its rows keep their previous state."""

    part: Part
    subject: str  # the dataset id, or the organization, the part was about
    url: str
    http_status: int | None
    error: str


@dataclass
class Crawl:
    """The portal's answers for one run, keyed by dataset id."""

    organizations: dict[str, dict[str, Any]] = field(default_factory=dict)
    datasets: dict[str, dict[str, Any]] = field(default_factory=dict)
    gone: dict[str, int] = field(default_factory=dict)  # dataset key -> 404 or 410
    discussions: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    reuses: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    metrics: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    entries: list[FollowedEntry] = field(default_factory=list)
    failures: list[FetchFailure] = field(default_factory=list)

    def failed(self, part: str) -> set[str]:
        """The subjects of the failures of ``part``."""
        return {failure.subject for failure in self.failures if failure.part == part}

    async def attempt(
        self, part: Part, subjects: Iterable[str], call: Awaitable[T], *, not_found_raises: bool = False
    ) -> T | None:
        """``await call``; when it fails for good, record a failure for each subject and return None.

        With ``not_found_raises``, a 404/410 is an answer (the object is gone): `NotFound` is raised, not recorded.
        """
        try:
            return await call
        except PortalError as error:
            if not_found_raises and isinstance(error, NotFound):
                raise
            self.failures += [FetchFailure(part, s, error.url, error.status, str(error)) for s in subjects]
            return None


@dataclass
class Discovery:
    """What the settings name: the dataset keys to register as partitions, and each configured entry's state."""

    keys: list[str]
    entries: list[FollowedEntry]

    @property
    def problems(self) -> list[FollowedEntry]:
        return [entry for entry in self.entries if entry.status != "active"]


def validate_partition_key(key: str) -> str:
    """Dataset keys become Dagster partition keys: refuse the characters Dagster's UI mishandles."""
    if not key or FORBIDDEN_KEY_CHARACTERS & set(key) or any(char.isspace() for char in key) or "..." in key:
        raise ValueError(f"dataset key {key!r} cannot be a partition key (no blanks, '...', ',', '|', '[' or ']')")
    return key


async def resolve(
    fetch: Callable[[str], Awaitable[dict[str, Any]]], kind: EntryKind, key: str, remembered: Remembered
) -> tuple[FollowedEntry, dict[str, Any] | None]:
    """Ask the portal for a configured entry; when its key answers 404/410, try the id it resolved to before."""
    before = remembered.get((kind, key))
    try:
        found = await fetch(key)
        return FollowedEntry(kind, key, found["id"], 200, "active"), found
    except NotFound as error:
        if before and before != key:
            try:
                found = await fetch(before)
                detail = f"{key!r} answers {error.status}; followed by the id it had, {before}: update the setting"
                return FollowedEntry(kind, key, found["id"], error.status, "renamed", detail), found
            except NotFound as again:
                error = again
        resolved = before or (key if is_object_id(key) else None)
        return FollowedEntry(kind, key, resolved, error.status, "gone", f"{error.url} answers {error.status}"), None
    except PortalError as error:
        return FollowedEntry(kind, key, before, error.status, "unreachable", str(error)), None


async def resolve_organizations(
    udata: Udata, ids_or_slugs: Iterable[str], remembered: Remembered
) -> tuple[dict[str, dict[str, Any]], list[FollowedEntry]]:
    """Organizations by id (the `organization=` filter needs ids), and the state of each configured one."""
    found = await asyncio.gather(
        *(resolve(udata.organization, "organization", key, remembered) for key in dict.fromkeys(ids_or_slugs))
    )
    return {organization["id"]: organization for _, organization in found if organization}, [e for e, _ in found]


async def discover(
    udata: Udata, organizations: Iterable[str], datasets: Iterable[str], remembered: Remembered | None = None
) -> Discovery:
    """Dataset ids to follow: the configured organizations' datasets, then the extra datasets.

    An entry that no longer resolves is reported in `Discovery.entries`, never raised: the others are followed.
    A dataset configured by its id stays followed when gone (the daily run records it as gone).
    """
    remembered = remembered or {}
    resolved, entries = await resolve_organizations(udata, organizations, remembered)
    listings = await asyncio.gather(*(udata.organization_datasets(org_id, fields="id") for org_id in resolved))
    keys = [item["id"] for listing in listings for item in listing]
    extras = await asyncio.gather(
        *(resolve(lambda key: udata.dataset(key, fields="id"), "dataset", key, remembered) for key in datasets)
    )
    keys += [entry.resolved_id for entry, _ in extras if entry.resolved_id]
    return Discovery([validate_partition_key(key) for key in dict.fromkeys(keys)], entries + [e for e, _ in extras])


async def crawl(
    udata: Udata,
    *,
    organizations: Iterable[str],
    dataset_keys: Iterable[str],
    run_date: dt.date,
    with_metrics_history: set[str],
    full_metrics_history: bool = False,
    configured_datasets: Iterable[str] = (),
    remembered: Remembered | None = None,
    log: Callable[[str], None] = lambda message: None,
) -> Crawl:
    """Fetch counters, discussions, reuses and monthly metrics of ``dataset_keys`` as of today.

    One pool of requests, no phase waiting for another: the organizations and their dataset pages (with the
    counters and resources), the datasets no organization lists, the discussions by batches of dataset ids,
    the reuses and the monthly metrics by batches of dataset ids all start at once, and the client bounds what
    is in flight. Reuses come from the portal's whole listing when that takes fewer requests than one per
    followed dataset, else one request per dataset whose reuses counter is above zero. Metrics: the recent
    months of datasets whose history is stored, the whole history of the others (every dataset with
    ``full_metrics_history``, for backfill); months after the run's month (a past date refreshed later) are left
    out. Datasets answering 404/410 land in ``gone``; ``configured_datasets`` (USAGE_DATASETS) get a
    `FollowedEntry` each, like the configured organizations.
    """
    remembered = remembered or {}
    keys = list(dict.fromkeys(dataset_keys))
    result = Crawl()
    datasets_known = asyncio.Event()  # set once every dataset's answer (listed, alone, gone or failed) is in

    async def datasets() -> None:
        try:
            await _fetch_datasets(udata, result, organizations, keys, configured_datasets, remembered, log)
        finally:
            datasets_known.set()

    _, discussions, reuses, metrics = await asyncio.gather(
        datasets(),
        _fetch_discussions(udata, result, keys),
        _fetch_reuses(udata, result, keys, datasets_known),
        _fetch_metrics(udata, result, keys, run_date, with_metrics_history, full_metrics_history),
    )
    found = set(result.datasets)
    for discussion in discussions:
        subject = (discussion.get("subject") or {}).get("id")
        if subject in found:
            result.discussions.setdefault(subject, []).append(discussion)
    result.reuses = {key: items for key, items in reuses.items() if key in found}
    run_month = month_key(run_date)
    result.metrics = {
        key: [row for row in rows if str(row.get("metric_month") or "") <= run_month]
        for key, rows in metrics.items()
        if key in found
    }
    per_dataset = {"discussions", "reuses", "metrics"}  # a failure about a dataset gone or not fetched tells nothing
    result.failures = [f for f in result.failures if f.part not in per_dataset or f.subject in found]
    log(
        f"{sum(map(len, result.discussions.values()))} discussions on {len(result.discussions)} datasets, "
        f"{sum(map(len, result.reuses.values()))} reuses on {len(result.reuses)} datasets, "
        f"{sum(map(len, result.metrics.values()))} monthly metrics rows for {len(result.metrics)} datasets"
    )
    if result.failures:
        parts = sorted({failure.part for failure in result.failures})
        log(f"{len(result.failures)} parts could not be fetched ({', '.join(parts)}): they keep their previous rows")
    return result


async def _fetch_datasets(
    udata: Udata,
    result: Crawl,
    organizations: Iterable[str],
    keys: list[str],
    configured_datasets: Iterable[str],
    remembered: Remembered,
    log: Callable[[str], None],
) -> None:
    """The organizations, their dataset pages, the datasets they do not list (one by one), the entries' states."""
    wanted = set(keys)
    result.organizations, result.entries = await resolve_organizations(udata, organizations, remembered)
    for entry in result.entries:
        if entry.status == "unreachable":
            result.failures.append(
                FetchFailure("organization", entry.configured_as, "", entry.http_status, entry.detail)
            )
    listings = await asyncio.gather(
        *(result.attempt("listing", [org_id], udata.organization_datasets(org_id)) for org_id in result.organizations)
    )
    for listing in listings:
        for item in listing or []:
            if item["id"] in wanted:
                result.datasets[item["id"]] = item
    log(f"{len(result.datasets)} of {len(keys)} datasets listed by {len(result.organizations)} organizations")

    async def single(key: str) -> None:
        try:
            found = await result.attempt("dataset", [key], udata.dataset(key), not_found_raises=True)
        except NotFound as error:
            result.gone[key] = error.status or 404
            return
        if found is not None:
            result.datasets[key] = found

    await asyncio.gather(*(single(key) for key in keys if key not in result.datasets))
    if result.gone:
        log(f"{len(result.gone)} datasets answered 404/410 and are recorded as gone: {sorted(result.gone)[:10]}")
    result.entries += await _dataset_entries(udata, configured_datasets, result, remembered)
    await _resolve_publishers(udata, result)


async def _dataset_entries(
    udata: Udata, configured: Iterable[str], result: Crawl, remembered: Remembered
) -> list[FollowedEntry]:
    """The state of each dataset of USAGE_DATASETS: from the crawl for an id, asked again for a slug."""

    async def one(key: str) -> FollowedEntry:
        if is_object_id(key) and key in result.gone:
            return FollowedEntry("dataset", key, key, result.gone[key], "gone", f"answers {result.gone[key]}")
        if is_object_id(key) and key in result.datasets:
            return FollowedEntry("dataset", key, key, 200, "active")
        entry, _ = await resolve(lambda k: udata.dataset(k, fields="id"), "dataset", key, remembered)
        return entry

    return list(await asyncio.gather(*(one(key) for key in dict.fromkeys(configured))))


async def _resolve_publishers(udata: Udata, result: Crawl) -> None:
    """The organizations publishing followed datasets that no configured organization covers (their members
    decide whose messages are the producer's); one that does not answer is only skipped."""
    others = {(d.get("organization") or {}).get("id") for d in result.datasets.values()} - set(result.organizations)
    for key in sorted(others - {None}):
        try:
            result.organizations[key] = await udata.organization(key)
        except PortalError:
            continue  # its messages then count as the producer's by their posted_by_organization alone


async def _fetch_discussions(udata: Udata, result: Crawl, keys: list[str]) -> list[dict[str, Any]]:
    """Every discussion of the followed datasets, by batches of ids; a failed batch keeps its datasets' previous
    discussions. Asked for every key at once: those of a dataset found gone are dropped afterwards."""
    pages = await asyncio.gather(
        *(
            result.attempt("discussions", batch, udata.discussions_of(batch))
            for batch in batches(keys, DISCUSSION_BATCH)
        )
    )
    return [discussion for page in pages for discussion in page or []]


async def _fetch_reuses(
    udata: Udata, result: Crawl, keys: list[str], datasets_known: asyncio.Event
) -> dict[str, list[dict[str, Any]]]:
    """The reuses of each followed dataset, by the cheaper way: the portal's whole listing (its pages), or one
    request per dataset whose reuses counter is above zero (known once the datasets are)."""
    total = await result.attempt("reuses", keys, udata.reuse_count())
    if total is None:
        return {}
    if -(-total // PAGE_SIZE) <= len(keys):
        everything = await result.attempt("reuses", keys, udata.all_reuses())
        wanted, by_dataset = set(keys), {}
        for reuse in everything or []:
            for dataset_id in dict.fromkeys(ref.get("id") for ref in reuse.get("datasets") or []):
                if dataset_id in wanted:
                    by_dataset.setdefault(dataset_id, []).append(reuse)
        return by_dataset if everything is not None else {}
    await datasets_known.wait()
    counted = [key for key, dataset in result.datasets.items() if (dataset.get("metrics") or {}).get("reuses", 0) > 0]
    fetched = await asyncio.gather(*(result.attempt("reuses", [key], udata.reuses(key)) for key in counted))
    return {key: reuses for key, reuses in zip(counted, fetched, strict=True) if reuses is not None}


async def _fetch_metrics(
    udata: Udata,
    result: Crawl,
    keys: list[str],
    run_date: dt.date,
    with_history: set[str],
    full_history: bool,
) -> dict[str, list[dict[str, Any]]]:
    """Monthly rows by batches of dataset ids: the recent months of datasets whose history is stored, the whole
    history of the others; every dataset of a batch that answered gets a list, empty when it has no row."""
    recent = month_key(run_date, RECENT_MONTHS - 1)
    incremental = [] if full_history else [key for key in keys if key in with_history]
    whole = [key for key in keys if key not in set(incremental)]
    requests = [(batch, recent) for batch in batches(incremental, METRICS_BATCH)]
    requests += [(batch, None) for batch in batches(whole, METRICS_BATCH)]
    fetched = await asyncio.gather(
        *(result.attempt("metrics", batch, udata.months_of(batch, since)) for batch, since in requests)
    )
    by_dataset: dict[str, list[dict[str, Any]]] = {}
    for (batch, _), rows in zip(requests, fetched, strict=True):
        if rows is None:
            continue
        for key in batch:
            by_dataset.setdefault(key, [])
        for row in rows:
            if row.get("dataset_id") in by_dataset:
                by_dataset[row["dataset_id"]].append(row)
    return by_dataset
