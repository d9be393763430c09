"""A local HTTP server speaking the udata API v1 and metrics API shapes over an in-memory `World`.

Stdlib only. One server answers both APIs: udata paths live under ``/api/1/``, metrics API paths under
``/api/<model>/data/``. Shapes follow docs/udata-api.md (udata API v1) and docs/metrics-api.md (metrics API).
"""

from __future__ import annotations

import copy
import datetime as dt
import json
import operator
import re
import threading
import time
import traceback
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, unquote, urlencode, urlsplit

from usage_pipeline.demo.local_server import JsonHandler, LocalHTTPServer, LocalServer

OBJECT_ID = re.compile(r"^[0-9a-f]{24}$")
DEFAULT_PAGE_SIZE = 20
METRICS_MAX_PAGE_SIZE = 50
METRICS_COLUMNS: dict[str, tuple[str, ...]] = {
    "datasets": (
        "__id",
        "dataset_id",
        "organization_id",
        "metric_month",
        "monthly_visit",
        "monthly_download_resource",
    ),
}
METRICS_INT_COLUMNS = frozenset({"__id", "monthly_visit", "monthly_download_resource"})
METRICS_COMPARISONS: dict[str, Callable[[Any, Any], bool]] = {
    "exact": operator.eq,
    "less": operator.le,  # the metrics API's `less` is <=
    "greater": operator.ge,  # and `greater` is >=
    "strictly_less": operator.lt,
    "strictly_greater": operator.gt,
    "in": lambda value, allowed: value in allowed,  # `column__in=a,b` (api-tabular's `in.(a,b)`)
}
ORGANIZATION_REF_KEYS = ("id", "name", "acronym", "slug", "logo", "logo_thumbnail", "badges")


@dataclass
class World:
    """The portal's state, live: servers read it at each request (mutate it holding `lock` while they run).

    Each entry is ``{"dataset", "resources", "reuses", "discussions", "organization_id"}``: the fixture's
    entry shape, plus the id of the organization that publishes the dataset (a key of `organizations`).
    A reuse listed in several entries (same id) is one reuse attached to all those datasets.
    """

    organizations: dict[str, dict]
    entries: dict[str, dict]
    deleted: set[str] = field(default_factory=set)
    metrics_rows: list[dict] = field(default_factory=list)
    today: dt.date | None = None  # the world's current day, moved on by `demo.world.advance_day`
    # Injected faults, for tests: endpoint label (optionally ":<a path segment or query value>") -> HTTP status,
    # e.g. {"discussions": 500} or {"reuses:<dataset id>": 503}.
    failing: dict[str, int] = field(default_factory=dict)
    # Reuses listed by the portal but linked to no followed dataset (their own "datasets" refs, if any).
    unlinked_reuses: list[dict] = field(default_factory=list)
    lock: threading.RLock = field(default_factory=threading.RLock, repr=False, compare=False)
    _metrics_index: tuple[int, dict[str, list[dict]]] = field(default=(-1, {}), repr=False, compare=False)

    @classmethod
    def from_fixture(cls, path: str | Path) -> World:
        """Load a udata fixture file (``{"datasets": [entry, ...]}``); its metrics rows are empty."""
        data = json.loads(Path(path).read_text(encoding="utf-8"))
        world = cls(organizations={}, entries={})
        for item in data["datasets"]:
            organization = item["organization"]
            world.organizations[organization["id"]] = organization
            world.entries[item["dataset"]["id"]] = {
                "dataset": item["dataset"],
                "resources": item["resources"],
                "reuses": item["reuses"],
                "discussions": item["discussions"],
                "organization_id": organization["id"],
            }
        return world

    def __deepcopy__(self, memo: dict) -> World:
        """A deep copy with a lock of its own."""
        state = {
            item.name: getattr(self, item.name) for item in fields(self) if item.name not in ("lock", "_metrics_index")
        }
        return World(**copy.deepcopy(state, memo))

    def organization_of(self, dataset_id: str) -> dict:
        """The organization that publishes a dataset."""
        return self.organizations[self.entries[dataset_id]["organization_id"]]

    def metrics_rows_of(self, dataset_ids: set[str]) -> list[dict]:
        """The metrics rows of some datasets, from an index by dataset rebuilt when rows were added (a world of
        10,000 datasets answers hundreds of requests filtered on a few of them)."""
        if self._metrics_index[0] != len(self.metrics_rows):
            by_dataset: dict[str, list[dict]] = {}
            for row in self.metrics_rows:
                by_dataset.setdefault(row["dataset_id"], []).append(row)
            self._metrics_index = (len(self.metrics_rows), by_dataset)
        return [row for key in dataset_ids for row in self._metrics_index[1].get(key, [])]

    def injected_failure(self, label: str, path: str, values: list[str]) -> int | None:
        """The status `failing` asks this request to answer, if any."""
        for key, status in self.failing.items():
            name, _, value = key.partition(":")
            if name == label and (not value or value in path.split("/") or value in values):
                return status
        return None


class ApiError(Exception):
    """An error answer: HTTP status and the ``{"message": ...}`` body udata sends."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


@dataclass
class _Request:
    """One parsed GET request, with the base URL (from its Host header) used in absolute links."""

    world: World
    base_url: str
    path: str
    query: list[tuple[str, str]]

    def values(self, name: str) -> list[str]:
        return [value for key, value in self.query if key == name]

    def value(self, name: str) -> str | None:
        values = self.values(name)
        return values[0] if values else None

    def page_url(self, page: int, page_size: int) -> str:
        """This URL with every query argument repeated, except the paging ones, set to `page`."""
        args = [(key, value) for key, value in self.query if not key.startswith("page")]
        args += [("page", str(page)), ("page_size", str(page_size))]
        return f"{self.base_url}{self.path}?{urlencode(args)}"


def _positive_int(request: _Request, name: str, default: int) -> int:
    raw = request.value(name)
    if raw is None:
        return default
    try:
        value = int(raw)
    except ValueError:
        raise ApiError(400, f"{name}: invalid literal for int() with base 10: {raw!r}") from None
    if value < 1:
        raise ApiError(400, f"{name} must be a strictly positive integer")
    return value


def _paging(request: _Request) -> tuple[int, int]:
    return _positive_int(request, "page", 1), _positive_int(request, "page_size", DEFAULT_PAGE_SIZE)


def _object_id_arg(request: _Request, name: str, message: str) -> list[str]:
    values = request.values(name)
    if any(not OBJECT_ID.match(value) for value in values):
        raise ApiError(400, message)
    return values


def _pager(request: _Request, items: Sequence[Any], page: int, page_size: int, render: Callable[[Any], dict]) -> dict:
    """udata's page envelope; only the items of the page are rendered."""
    start = (page - 1) * page_size
    has_next = start + page_size < len(items)
    return {
        "data": [render(item) for item in items[start : start + page_size]],
        "page": page,
        "page_size": page_size,
        "total": len(items),
        "next_page": request.page_url(page + 1, page_size) if has_next else None,
        "previous_page": request.page_url(page - 1, page_size) if page > 1 else None,
    }


def _organization_ref(organization: dict, base_url: str) -> dict:
    ref = {"class": "Organization", **{key: organization.get(key) for key in ORGANIZATION_REF_KEYS}}
    ref["badges"] = ref["badges"] or []
    ref["uri"] = f"{base_url}/api/1/organizations/{organization['slug']}/"
    ref["page"] = f"{base_url}/organizations/{organization['slug']}/"
    return ref


def _is_listed(world: World, dataset_id: str) -> bool:
    """Visible in `/datasets/` listings: not deleted, not private, not archived."""
    dataset = world.entries[dataset_id]["dataset"]
    return dataset_id not in world.deleted and not dataset.get("private") and not dataset.get("archived")


def _dataset_urls(base_url: str, dataset: dict) -> tuple[str, str]:
    return f"{base_url}/api/1/datasets/{dataset['slug']}/", f"{base_url}/datasets/{dataset['slug']}"


def _last_update(dataset: dict, resources: list[dict]) -> str | None:
    """Harvest `modified_at`, else the latest resource modification, else the metadata one."""
    harvested = (dataset.get("harvest") or {}).get("modified_at")
    if harvested:
        return harvested
    resource_dates = [resource["last_modified"] for resource in resources if resource.get("last_modified")]
    return max(resource_dates, key=dt.datetime.fromisoformat) if resource_dates else dataset["last_modified"]


def _dataset_object(request: _Request, dataset_id: str) -> dict:
    entry = request.world.entries[dataset_id]
    obj = dict(entry["dataset"])
    obj.setdefault("created_at", obj.get("created_at_internal"))
    obj.setdefault("last_modified", obj.get("last_modified_internal"))
    obj.setdefault("license", "notspecified")
    obj["resources"] = entry["resources"]
    obj["organization"] = _organization_ref(request.world.organization_of(dataset_id), request.base_url)
    obj["last_update"] = _last_update(obj, entry["resources"])
    obj["uri"], obj["page"] = _dataset_urls(request.base_url, obj)
    return obj


def _organization(request: _Request, key: str) -> dict:
    organizations = request.world.organizations
    organization = organizations.get(key) or next(
        (org for org in organizations.values() if org.get("slug") == key), None
    )
    if organization is None:
        raise ApiError(404, f"Organization {key!r} not found")
    obj = dict(organization)
    obj.setdefault("logo_thumbnail", None)
    obj["uri"] = f"{request.base_url}/api/1/organizations/{organization['slug']}/"
    obj["page"] = f"{request.base_url}/organizations/{organization['slug']}/"
    return obj


def _datasets(request: _Request) -> dict:
    page, page_size = _paging(request)
    organization_ids = _object_id_arg(request, "organization", "Organization arg must be an identifier")
    world = request.world
    ids = sorted(
        dataset_id
        for dataset_id, entry in world.entries.items()
        if _is_listed(world, dataset_id) and (not organization_ids or entry["organization_id"] in organization_ids)
    )
    return _pager(request, ids, page, page_size, lambda dataset_id: _dataset_object(request, dataset_id))


def _dataset(request: _Request, key: str) -> dict:
    entries = request.world.entries
    dataset_id = key if key in entries else next((i for i, e in entries.items() if e["dataset"]["slug"] == key), None)
    if dataset_id is None or entries[dataset_id]["dataset"].get("private"):
        raise ApiError(404, f"Dataset {key!r} not found")
    if dataset_id in request.world.deleted:
        raise ApiError(410, "Dataset has been deleted")
    return _dataset_object(request, dataset_id)


def _discussions(request: _Request) -> dict:
    """Discussions of datasets: `for=` (subject ids, repeatable) and `org=` filters, all datasets included."""
    page, page_size = _paging(request)
    subjects = set(_object_id_arg(request, "for", "'for' must be a list of object identifiers"))
    organization_ids = _object_id_arg(request, "org", "'org' must be an object identifier")
    sort = request.value("sort") or "-created"
    if sort not in ("created", "-created"):
        raise ApiError(400, f"sort: {sort!r} is not a valid choice (created, -created)")
    closed = request.value("closed")
    if closed is not None and closed.lower() not in ("true", "false", "1", "0"):
        raise ApiError(400, f"closed: invalid literal for boolean(): {closed}")
    world = request.world
    candidates = sorted(subjects & world.entries.keys()) if subjects else sorted(world.entries)
    found = [
        (dataset_id, discussion)
        for dataset_id in candidates
        if not organization_ids or world.entries[dataset_id]["organization_id"] in organization_ids
        for entry in (world.entries[dataset_id],)
        for discussion in entry["discussions"]
        if closed is None or bool(discussion.get("closed")) == (closed.lower() in ("true", "1"))
    ]
    found.sort(key=lambda item: (item[1]["created"], item[1]["id"]), reverse=sort.startswith("-"))

    def render(item: tuple[str, dict]) -> dict:
        dataset_id, discussion = item
        web_url = f"{request.base_url}/datasets/{world.entries[dataset_id]['dataset']['slug']}"
        return {
            **discussion,
            "subject": {"class": "Dataset", "id": dataset_id},
            "url": f"{request.base_url}/api/1/discussions/{discussion['id']}/",
            "self_web_url": f"{web_url}/discussions?discussion_id={discussion['id']}",
        }

    return _pager(request, found, page, page_size, render)


def _text_match(query: str, text: str) -> bool:
    """udata's `q`: every quoted phrase in ``text``, or (without any) one of its words, case-insensitive."""
    text, quoted = text.lower(), [phrase.lower() for phrase in re.findall(r'"([^"]+)"', query)]
    if quoted:
        return all(phrase in text for phrase in quoted)
    return any(word in text for word in query.lower().split())


def _reuses(request: _Request) -> dict:
    """Visible reuses, newest first (`sort=created`: oldest first); `dataset=` keeps those attached to that dataset,
    `q` those whose title or description holds its quoted phrases (or one of its words), like udata's text search."""
    page, page_size = _paging(request)
    sort = request.value("sort") or "-created"
    if sort not in ("created", "-created"):
        raise ApiError(400, f"sort: {sort!r} is not a valid choice (created, -created)")
    dataset_ids = _object_id_arg(request, "dataset", "'dataset' must be an object identifier")
    world = request.world
    reuses: dict[str, dict] = {}
    attached: dict[str, list[str]] = {}
    for dataset_id, entry in sorted(world.entries.items()):
        for reuse in entry["reuses"]:
            reuses.setdefault(reuse["id"], reuse)
            attached.setdefault(reuse["id"], []).append(dataset_id)
    for reuse in world.unlinked_reuses:
        reuses.setdefault(reuse["id"], reuse)
        attached.setdefault(reuse["id"], [])
    text = request.value("q")
    selected = [
        reuse
        for reuse_id, reuse in reuses.items()
        if not reuse.get("private")
        and not reuse.get("deleted")
        and (not dataset_ids or any(dataset_id in dataset_ids for dataset_id in attached[reuse_id]))
        and (not text or _text_match(text, f"{reuse.get('title') or ''} {reuse.get('description') or ''}"))
    ]
    selected.sort(key=lambda reuse: (reuse.get("created_at") or "", reuse["id"]), reverse=sort.startswith("-"))

    def dataset_ref(dataset_id: str) -> dict:
        dataset = world.entries[dataset_id]["dataset"]
        uri, page_url = _dataset_urls(request.base_url, dataset)
        return {"id": dataset_id, "title": dataset["title"], "uri": uri, "page": page_url}

    def render(reuse: dict) -> dict:
        return {
            **reuse,
            "datasets": [dataset_ref(dataset_id) for dataset_id in attached[reuse["id"]]] or reuse.get("datasets", []),
            "owner": reuse.get("owner"),
            "uri": f"{request.base_url}/api/1/reuses/{reuse['slug']}/",
            "page": f"{request.base_url}/reuses/{reuse['slug']}/",
        }

    return _pager(request, selected, page, page_size, render)


def _metrics_value(column: str, raw: str) -> Any:
    if column not in METRICS_INT_COLUMNS:
        return raw
    try:
        return int(raw)
    except ValueError:
        raise ApiError(400, f"Invalid value {raw!r} for column {column}") from None


def _nulls_last(value: Any) -> tuple[bool, Any]:
    """Sort key with Postgres' order: NULLs last when ascending (so first when descending)."""
    return (value is None, "" if value is None else value)


def _metrics_candidates(world: World, filters: list[tuple[str, Callable[[Any, Any], bool], Any]]) -> list[dict]:
    """The rows a filter on `dataset_id` can match (all rows without one)."""
    wanted = [value for column, _, value in filters if column == "dataset_id"]
    if not wanted:
        return world.metrics_rows
    return world.metrics_rows_of(wanted[0] if isinstance(wanted[0], set) else {wanted[0]})


def _metrics(request: _Request, model: str) -> dict:
    """A metrics API page: ``column__op=value`` filters, ``column__sort=asc|desc``, default order `__id`."""
    columns = METRICS_COLUMNS[model]
    page, page_size = _paging(request)
    if page_size > METRICS_MAX_PAGE_SIZE:
        raise ApiError(400, f"Page size exceeds allowed maximum: {METRICS_MAX_PAGE_SIZE}")
    filters: list[tuple[str, Callable[[Any, Any], bool], Any]] = []
    sorts: list[tuple[str, bool]] = []
    for key, raw in request.query:
        if key.startswith("page"):
            continue
        column, _, op = key.rpartition("__")
        if column not in columns or (op != "sort" and op not in METRICS_COMPARISONS):
            raise ApiError(400, f"Malformed query: {key}")
        if op == "in":
            filters.append((column, METRICS_COMPARISONS[op], {_metrics_value(column, v) for v in raw.split(",")}))
        elif op != "sort":
            filters.append((column, METRICS_COMPARISONS[op], _metrics_value(column, raw)))
        elif raw in ("asc", "desc"):
            sorts.append((column, raw == "desc"))
        else:
            raise ApiError(400, f"Malformed query: {key}={raw}")
    rows = _metrics_candidates(request.world, filters)
    for column, compare, value in filters:  # SQL semantics: NULL matches no comparison
        rows = [row for row in rows if row[column] is not None and compare(row[column], value)]
    rows = sorted(rows, key=lambda row: row["__id"])
    for column, descending in reversed(sorts):  # the first sort argument is the primary order
        rows.sort(key=lambda row, column=column: _nulls_last(row[column]), reverse=descending)
    start = (page - 1) * page_size
    return {
        "data": rows[start : start + page_size],
        "links": {
            "next": request.page_url(page + 1, page_size) if start + page_size < len(rows) else None,
            "prev": request.page_url(page - 1, page_size) if page > 1 else None,
        },
        "meta": {"page": page, "page_size": page_size, "total": len(rows)},
    }


def _not_found(request: _Request) -> dict:
    raise ApiError(404, f"The requested URL {request.path} was not found on the server.")


def _route(path: str) -> tuple[str, Callable[[_Request], dict]]:
    """The endpoint label and the function answering a path (trailing slash optional)."""
    parts = [unquote(part) for part in path.strip("/").split("/")]
    match parts:
        case ["api", "1", "organizations", key]:
            return "organization", lambda request: _organization(request, key)
        case ["api", "1", "datasets"]:
            return "datasets", _datasets
        case ["api", "1", "datasets", key]:
            return "dataset", lambda request: _dataset(request, key)
        case ["api", "1", "discussions"]:
            return "discussions", _discussions
        case ["api", "1", "reuses"]:
            return "reuses", _reuses
        case ["api", model, "data"] if model in METRICS_COLUMNS:
            return f"metrics/{model}", lambda request: _metrics(request, model)
        case ["reuse-sites", "gone", *_]:
            return "reuse_site", _not_found
        case ["reuse-sites", *_]:
            return "reuse_site", lambda request: {"site": "a reuse's own site, alive"}
    return "not_found", _not_found


class _Handler(JsonHandler):
    """Answers GET requests with JSON; keeps connections alive (HTTP/1.1)."""

    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True  # headers and body are two writes: avoid the delayed-ACK stall
    server: LocalHTTPServer

    def do_GET(self) -> None:
        portal = self.server.owner
        url = urlsplit(self.path)
        label, answer = _route(url.path)
        portal.record(label)
        if portal.latency > 0:
            time.sleep(portal.latency)
        host = self.headers.get("Host") or "{}:{}".format(*self.server.server_address[:2])
        request = _Request(portal.world, f"http://{host}", url.path, parse_qsl(url.query, keep_blank_values=True))
        status = 200
        with portal.world.lock:
            injected = portal.world.injected_failure(label, url.path, [value for _, value in request.query])
            try:
                if injected:
                    raise ApiError(injected, "injected failure")
                payload = answer(request)
            except ApiError as error:
                status, payload = error.status, {"message": error.message}
            except Exception as error:  # a bug here, or a world mutated into an unexpected shape
                traceback.print_exc()
                status, payload = 500, {"message": f"Internal Server Error: {error!r}"}
        self.send_json(status, payload)


class PortalServer(LocalServer):
    """Serves a `World` on 127.0.0.1 (ephemeral port) from a daemon thread.

    ``with PortalServer(world, latency=0.1) as server:`` then point clients at ``server.url`` for both the
    udata API and the metrics API. Each request sleeps `latency` seconds before it is answered.
    """

    handler = _Handler

    def __init__(self, world: World, latency: float = 0.0) -> None:
        self.world = world
        self.latency = latency
        super().__init__()

    @property
    def request_count(self) -> int:
        """Requests received since the start (or the last `reset_counts`)."""
        return sum(self.counts().values())

    @property
    def requests_by_endpoint(self) -> Counter[str]:
        """A snapshot of the request counts by endpoint label (``datasets``, ``metrics/datasets``, ...)."""
        return self.counts()
