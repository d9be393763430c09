"""A producer's own Opendatasoft (Huwise) portal: catalog counters, daily usage from monitoring, reuses.

The API facts used here, with their public sources, are in docs/opendatasoft.md (cited by section title below):

- Explore API v2.1 under ``<url>/api/explore/v2.1/``; the key goes in ``Authorization: Apikey <key>``
  ("Authentication"), never in the query string, so it never appears in a URL, a log line or an error message.
- Catalog: ``catalog/datasets?include_app_metas=true`` pages of 100 (``offset + limit < 10 000``, "Catalog
  paging"); the usage counters live in ``metas.explore`` ("Catalog counters").
- Daily usage: ``monitoring/datasets/ods-api-monitoring/exports/json`` with ``select=count(*)`` and ``group_by``
  dataset × day × bot × api ("Monitoring datasets", "ODSQL used"): the exports endpoint has no row limit
  ("Exports"), the portal aggregates, raw calls are never paged through.
- Kinds ("`api` values and downloads", "Page views"): a *download* is a call whose ``api`` is
  ``download_dataset``, ``download_dataset_records``, ``download_dataset_alternative_export`` (the official rule)
  or ``export_dataset`` (the v2.x export value the French Ministry of Economy counts; unconfirmed). A *view* is
  any other call made from a page of the portal (its ``referer`` starts with ``https://<portal domain>/``): ODS
  has no page-view counter, portal pages call the API (our inference). An *api* call is any other call. The
  ``bot`` flag splits humans from bots ("Bots").
- Monitoring needs a key whose user holds the "Browse analytics" permission (technical name
  ``explore_monitoring``); retention is 3 to 12 months ("Permission", "Retention"), so the first day the portal
  still has is returned for the caller to record the gap.
- Reuses: the undocumented ``/api/reuses/?rows=&start=`` list of the official widgets, filtered on
  ``dataset.id`` client-side ("Reuses").
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import httpx

from usage_pipeline.portal.client import NotFound, PortalClient, PortalError

log = logging.getLogger(__name__)

EXPLORE = "/api/explore/v2.1"
MONITORING_DATASET = "ods-api-monitoring"
BROWSE_ANALYTICS = "Browse analytics"
BROWSE_ANALYTICS_TECHNICAL = "explore_monitoring"
ANALYTICS_APP = "usage_pipeline"  # sent as ODS-API-Analytics-App: our calls show in `custom_attributes`
CATALOG_PAGE = 100  # max `limit` of /records-like listings without group_by
CATALOG_WINDOW = 10_000  # offset + limit must stay below it (docs/opendatasoft.md)
REUSES_PAGE = 100
DOWNLOAD_APIS = frozenset(
    {
        "download_dataset",  # official rule (docs/opendatasoft.md, "`api` values and downloads")
        "download_dataset_records",  # official rule
        "download_dataset_alternative_export",  # official rule
        "export_dataset",  # v2.x exports, as the Ministry of Economy counts them; unconfirmed
    }
)
KINDS = ("view", "download", "api")
COUNTERS = (
    "download_count",
    "api_call_count",
    "reuse_count",
    "popularity_score",
    "attachment_download_count",
    "file_field_download_count",
)
_DAY_GROUP = "date_format(timestamp, 'yyyy-MM-dd') as day"
_GROUP_BY = f"dataset_id, {_DAY_GROUP}, bot, api"


class OwnPortalError(RuntimeError):
    """A call to an own portal failed for good; the message names the portal and the URL, never the key."""

    def __init__(self, message: str, *, portal: str, url: str, status: int | None = None) -> None:
        super().__init__(message)
        self.portal = portal
        self.url = url
        self.status = status


class MonitoringSkipped(Exception):
    """Monitoring was not read, on purpose (e.g. no API key configured); ``reason`` says why.

    Deliberately not an `OwnPortalError`: the catalog counters of the same portal are still valid.
    """

    def __init__(self, portal: str, reason: str) -> None:
        super().__init__(f"portal {portal}: monitoring skipped: {reason}")
        self.portal = portal
        self.reason = reason


@dataclass(frozen=True)
class DailyUsage:
    """Calls to one dataset of the portal on one day (UTC), of one kind, by bots or by humans."""

    portal_dataset_id: str
    day: dt.date
    kind: str  # "view" | "download" | "api"
    is_bot: bool
    calls: int


def _quote(value: str) -> str:
    """An ODSQL string literal (docs/opendatasoft.md, "ODSQL used")."""
    return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"


def _as_bool(value: Any) -> bool:
    """A `bot` group key, however it is rendered (true, "true", 1, null = not flagged)."""
    if isinstance(value, str):
        return value.strip().lower() in {"true", "1", "t", "yes"}
    return bool(value)


def _dataset_ids(value: Any) -> list[str]:
    """`dataset_id` is multivalued in ods-api-monitoring (a one-element list) or a plain string."""
    values = value if isinstance(value, list) else [value]
    return [str(item) for item in values if item not in (None, "")]


def _day(value: Any) -> dt.date | None:
    if value in (None, ""):
        return None
    try:
        return dt.date.fromisoformat(str(value)[:10])
    except ValueError:
        return None


class OdsPortal:
    """One Opendatasoft portal, read through the run's shared `PortalClient`.

    ``public_domain`` is the host of the portal's public pages (default: the host of ``url``); it decides
    which calls are page views. Give it when ``url`` is not the public address (a proxy, a local mirror).
    """

    def __init__(
        self,
        client: PortalClient,
        url: str,
        api_key: str | None,
        name: str,
        *,
        public_domain: str | None = None,
    ) -> None:
        self.client = client
        self.url = url.rstrip("/")
        self.name = name
        self._api_key = api_key or None
        self.public_domain = (public_domain or httpx.URL(self.url).host).lower()
        self._headers = {"ODS-API-Analytics-App": ANALYTICS_APP}
        if self._api_key:
            self._headers["Authorization"] = f"Apikey {self._api_key}"

    def __repr__(self) -> str:
        return f"OdsPortal(name={self.name!r}, url={self.url!r}, api_key={'set' if self._api_key else None})"

    # -- plumbing ---------------------------------------------------------------------------------------------

    def _redact(self, text: str) -> str:
        return text.replace(self._api_key, "***") if self._api_key else text

    def _error(self, message: str, url: str, status: int | None) -> OwnPortalError:
        return OwnPortalError(self._redact(message), portal=self.name, url=self._redact(url), status=status)

    def _key_refused(self, url: str, status: int | None) -> OwnPortalError:
        return self._error(
            f"the API key of portal {self.name} was refused (expired or revoked?): {url} answered {status}; "
            "create a new key in the portal's account page (API keys) and update the environment variable",
            url,
            status,
        )

    def _missing_analytics(self, url: str, status: int | None) -> OwnPortalError:
        return self._error(
            f"the API key of portal {self.name} lacks the {BROWSE_ANALYTICS!r} permission "
            f"({BROWSE_ANALYTICS_TECHNICAL}) needed to read the {MONITORING_DATASET} monitoring dataset: "
            f"{url} answered {status}; grant {BROWSE_ANALYTICS!r} to the key's user",
            url,
            status,
        )

    async def _get(self, path: str, params: dict[str, Any] | None = None) -> Any:
        """GET a portal path; a 401 with a key is a refused key, other failures name the portal."""
        url = f"{self.url}{path}"
        try:
            return await self.client.get_json(url, params, headers=self._headers)
        except NotFound:
            raise
        except PortalError as error:
            if error.status == 401 and self._api_key:
                raise self._key_refused(error.url, error.status) from None
            if error.status == 401:
                raise self._error(
                    f"portal {self.name} requires an API key: {error.url} answered 401 "
                    "(private portal or dataset; set api_key_env in portals.yaml)",
                    error.url,
                    error.status,
                ) from None
            raise self._error(f"portal {self.name}: {error}", error.url, error.status) from None

    # -- catalog ----------------------------------------------------------------------------------------------

    def _catalog_row(self, item: dict[str, Any]) -> dict[str, Any]:
        metas = item.get("metas") or {}
        default = metas.get("default") or {}
        explore = metas.get("explore") or {}
        dcat = metas.get("dcat") or {}
        dataset_id = str(item["dataset_id"])
        row: dict[str, Any] = {
            "dataset_id": dataset_id,
            "dataset_uid": item.get("dataset_uid"),
            "title": default.get("title"),
            "modified": default.get("modified"),
            "publisher": default.get("publisher"),
            "visibility": item.get("visibility"),
            # data.gouv.fr's harvest remote_id of an ODS dataset (docs/harvest-twins.md)
            "explore_url": f"https://{self.public_domain}/explore/dataset/{dataset_id}/",
            "dcat_identifier": dcat.get("identifier"),
            "metas": {"default.title": default.get("title"), "default.modified": default.get("modified")},
        }
        for counter in COUNTERS:
            row[counter] = explore.get(counter)
        return row

    async def _catalog_page(self, offset: int) -> dict[str, Any]:
        params = {
            "limit": CATALOG_PAGE,
            "offset": offset,
            "include_app_metas": "true",
            "order_by": "dataset_id",
            "timezone": "UTC",
        }
        try:
            return await self._get(f"{EXPLORE}/catalog/datasets", params)
        except NotFound as error:
            raise self._error(
                f"portal {self.name}: {error.url} answered {error.status}: not an Opendatasoft Explore v2.1 portal?",
                error.url,
                error.status,
            ) from None

    async def catalog(self) -> list[dict[str, Any]]:
        """Every dataset the portal shows (public ones; with a key, also those its user may see), with counters.

        Each row: ``dataset_id``, ``dataset_uid``, ``title``, ``modified``, ``publisher``, ``visibility``,
        ``explore_url``, ``dcat_identifier``, ``metas`` (``default.title``, ``default.modified``) and the
        cumulative counters of ``metas.explore`` (docs/opendatasoft.md) — ``download_count``, ``api_call_count``,
        ``reuse_count``, ``popularity_score``, ``attachment_download_count``, ``file_field_download_count`` —
        None when the portal does not return them.
        """
        first = await self._catalog_page(0)
        total = int(first.get("total_count") or 0)
        if total >= CATALOG_WINDOW:
            raise self._error(
                f"portal {self.name} lists {total} datasets: more than the {CATALOG_WINDOW} the catalog API pages "
                "through (see docs/opendatasoft.md, Catalog paging); use catalog/exports/json instead",
                f"{self.url}{EXPLORE}/catalog/datasets",
                None,
            )
        offsets = range(CATALOG_PAGE, total, CATALOG_PAGE)
        pages = [first, *await asyncio.gather(*(self._catalog_page(offset) for offset in offsets))]
        seen: dict[str, dict[str, Any]] = {}
        for page in pages:
            for item in page.get("results") or []:
                if item.get("dataset_id"):
                    seen.setdefault(str(item["dataset_id"]), self._catalog_row(item))
        return list(seen.values())

    # -- monitoring -------------------------------------------------------------------------------------------

    async def _monitoring_export(self, params: dict[str, Any]) -> list[dict[str, Any]]:
        path = f"{EXPLORE}/monitoring/datasets/{MONITORING_DATASET}/exports/json"
        url = f"{self.url}{path}"
        try:
            rows = await self.client.get_json(
                url, {**params, "timezone": "UTC", "use_labels": "false"}, headers=self._headers
            )
        except NotFound as error:
            raise self._error(
                f"portal {self.name}: {error.url} answered {error.status}: the {MONITORING_DATASET} monitoring "
                f"dataset is not visible to this key (does its user hold {BROWSE_ANALYTICS!r}?)",
                error.url,
                error.status,
            ) from None
        except PortalError as error:
            if error.status == 403:
                raise self._missing_analytics(error.url, error.status) from None
            if error.status == 401:
                # A 401 on monitoring is either a refused key or a key without "Browse analytics"
                # (docs/opendatasoft.md, "Permission"): the catalog, which needs no permission, tells them apart.
                try:
                    await self.client.get_json(
                        f"{self.url}{EXPLORE}/catalog/datasets", {"limit": 1}, headers=self._headers
                    )
                except PortalError as probe:
                    if probe.status == 401:
                        raise self._key_refused(error.url, error.status) from None
                raise self._missing_analytics(error.url, error.status) from None
            raise self._error(f"portal {self.name}: {error}", error.url, error.status) from None
        if not isinstance(rows, list):
            raise self._error(
                f"portal {self.name}: {url} did not answer a JSON array of rows", url, None
            )  # exports/json is a bare array
        return rows

    async def monitoring(self, since: dt.date, until: dt.date) -> tuple[list[DailyUsage], dt.date | None]:
        """Daily calls per dataset × day (UTC) × kind × bot flag, ``since`` and ``until`` included.

        Returns the rows (days without calls have no row) and the first day the portal's monitoring still holds
        (None when it holds nothing): when it is after ``since``, retention cut the start of the window and
        the caller records the gap. Raises `MonitoringSkipped` without an API key (monitoring needs one),
        `OwnPortalError` when the key is refused or lacks "Browse analytics".
        """
        if until < since:
            raise ValueError(f"until ({until}) is before since ({since})")
        if not self._api_key:
            raise MonitoringSkipped(
                self.name,
                f"no API key configured; {MONITORING_DATASET} needs a key whose user holds {BROWSE_ANALYTICS!r} "
                "(catalog counters are still read)",
            )
        window = (
            f"timestamp >= date'{since.isoformat()}' AND timestamp < date'{(until + dt.timedelta(days=1)).isoformat()}'"
        )
        portal_page = f"startswith(referer, {_quote(f'https://{self.public_domain}/')})"
        select = "count(*) as calls"
        every_call, from_pages, first = await asyncio.gather(
            self._monitoring_export({"select": select, "where": window, "group_by": _GROUP_BY}),
            self._monitoring_export({"select": select, "where": f"{window} AND {portal_page}", "group_by": _GROUP_BY}),
            self._monitoring_export({"select": "min(timestamp) as first_call"}),
        )
        first_day = _day(first[0].get("first_call")) if first else None
        return self._daily_usage(every_call, from_pages, since, until), first_day

    def _daily_usage(
        self, every_call: Iterable[dict[str, Any]], from_pages: Iterable[dict[str, Any]], since: dt.date, until: dt.date
    ) -> list[DailyUsage]:
        """Fold (dataset, day, bot, api) groups into (dataset, day, kind, bot) rows (module docstring rules)."""

        def fold(rows: Iterable[dict[str, Any]]) -> dict[tuple[str, dt.date, bool, bool], int]:
            sums: dict[tuple[str, dt.date, bool, bool], int] = defaultdict(int)
            for row in rows:
                day = _day(row.get("day"))
                if day is None or not since <= day <= until:  # re-filter dates client-side, as Basel-Landschaft does
                    continue
                is_download = str(row.get("api") or "") in DOWNLOAD_APIS
                for dataset_id in _dataset_ids(row.get("dataset_id")):
                    if dataset_id.startswith("ods-"):  # monitoring datasets, our own calls among them
                        continue
                    sums[dataset_id, day, _as_bool(row.get("bot")), is_download] += int(row.get("calls") or 0)
            return sums

        totals, pages = fold(every_call), fold(from_pages)
        usage: dict[tuple[str, dt.date, str, bool], int] = defaultdict(int)
        for (dataset_id, day, is_bot, is_download), calls in totals.items():
            if is_download:
                usage[dataset_id, day, "download", is_bot] += calls
                continue
            views = min(calls, pages.get((dataset_id, day, is_bot, False), 0))
            usage[dataset_id, day, "view", is_bot] += views
            usage[dataset_id, day, "api", is_bot] += calls - views
        return [
            DailyUsage(portal_dataset_id=dataset_id, day=day, kind=kind, is_bot=is_bot, calls=calls)
            for (dataset_id, day, kind, is_bot), calls in sorted(usage.items())
            if calls > 0
        ]

    # -- reuses -----------------------------------------------------------------------------------------------

    async def reuses(self, dataset_ids: Sequence[str]) -> dict[str, list[dict[str, Any]]]:
        """Approved reuses of these datasets, newest first, by dataset id; {} when the portal exposes none.

        Reads ``/api/reuses/`` (undocumented, used by Opendatasoft's widgets): ``{"nhits", "reuses"}`` pages
        of ``rows`` from ``start``; a 404 means the portal has no reuses feature.
        """
        wanted = set(dataset_ids)
        found: dict[str, list[dict[str, Any]]] = {}
        start = 0
        while True:
            try:
                page = await self._get("/api/reuses/", {"rows": REUSES_PAGE, "start": start})
            except NotFound:
                return {}
            items = page.get("reuses") or []
            for reuse in items:
                dataset = reuse.get("dataset") or {}
                dataset_id = str(dataset.get("id") or "")
                if dataset_id in wanted:
                    found.setdefault(dataset_id, []).append(
                        {
                            key: reuse.get(key)
                            for key in ("id", "title", "url", "description", "created_at", "thumbnail")
                        }
                        | {"dataset_id": dataset_id, "user": reuse.get("user")}
                    )
            start += len(items)
            if not items or start >= int(page.get("nhits") or 0):
                return found
