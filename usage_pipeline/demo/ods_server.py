"""A local Opendatasoft (Huwise) portal over an in-memory `OdsWorld`: catalog, monitoring exports, reuses.

Stdlib only, same style as `portal_server.PortalServer`. Shapes and rules follow docs/opendatasoft.md (cited by
section title below); only what `usage_pipeline.own_portals.ods` calls is served:

- ``GET /api/explore/v2.1/catalog/datasets`` — ``limit`` (default 10, max 100), ``offset`` (offset + limit
  ≤ 10 000), ``include_app_metas`` (``metas.explore``, ``metas.dcat`` only when true), ``order_by=dataset_id``;
  ``{"total_count", "results"}`` ("Catalog paging", "Catalog counters"). Restricted datasets need a valid key.
- ``GET /api/explore/v2.1/monitoring/datasets/ods-api-monitoring/exports/json`` — ``select``, ``where``,
  ``group_by``, ``limit`` (default -1 = all), ``offset``, ``timezone`` (UTC only), ``use_labels``; a bare JSON
  array ("Exports", "Monitoring datasets"). A small ODSQL subset ("ODSQL used"): ``count(*)``,
  ``min``/``max(field)``, ``AND``-joined ``timestamp >=|>|<|<= date'…'``, ``startswith(field, '…')``,
  ``field is true|false|null``, ``field = '…'``; ``group_by`` fields and
  ``date_format(timestamp, 'yyyy-MM-dd') as day``. The multivalued ``dataset_id`` yields one group per value.
  Rows older than ``retention_start`` are archived (not served). Needs a key (401 without) whose permissions
  include ``explore_monitoring`` ("Browse analytics"), else `OdsWorld.missing_permission_status` (403 by
  default; 401 as one operator reports, see "Permission").
- ``GET /api/reuses/?rows=&start=`` — ``{"nhits", "reuses"}`` newest first; 404 when reuses are disabled ("Reuses").

Auth ("Authentication"): ``Authorization: Apikey <key>`` or ``?apikey=<key>``; an unknown or expired key answers
401 everywhere. Answers never echo the key.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import random
import re
import threading
import time
import traceback
import unicodedata
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qsl, unquote, urlsplit

from usage_pipeline.demo.local_server import JsonHandler, LocalHTTPServer, LocalServer

EXPLORE = ("api", "explore", "v2.1")
MONITORING_DATASETS = ("ods-api-monitoring",)
BROWSE_ANALYTICS = "explore_monitoring"  # technical name of "Browse analytics" (docs/opendatasoft.md)
CATALOG_MAX_LIMIT = 100
CATALOG_WINDOW = 10_000

DEMO_ANALYTICS_KEY = "cle-demo-analytique-0001"  # a user holding "Browse analytics"
DEMO_READER_KEY = "cle-demo-lecture-0002"  # a valid key without "Browse analytics"
DEMO_EXPIRED_KEY = "cle-demo-expiree-0003"  # revoked: 401 everywhere


@dataclass
class OdsWorld:
    """The portal's state, read live at each request (mutate it holding `lock` while a server runs).

    ``datasets``: dataset_id → catalog item (``dataset_id``, ``dataset_uid``, ``visibility`` "domain" or
    "restricted", ``has_records``, ``features``, ``fields``, ``metas`` with ``default``, ``explore``, ``dcat``).
    ``monitoring``: raw ods-api-monitoring rows, one per API call. ``reuses``: the ``/api/reuses/``
    items, or None when the portal has the feature off. ``keys``: valid API key → permissions.
    """

    public_domain: str
    datasets: dict[str, dict] = field(default_factory=dict)
    monitoring: list[dict] = field(default_factory=list)
    retention_start: dt.date | None = None
    reuses: list[dict] | None = field(default_factory=list)
    keys: dict[str, frozenset[str]] = field(default_factory=dict)
    expired_keys: set[str] = field(default_factory=set)
    missing_permission_status: int = 403
    domain_id: str = "demo"
    lock: threading.RLock = field(default_factory=threading.RLock, repr=False, compare=False)

    def add_dataset(
        self,
        dataset_id: str,
        title: str,
        *,
        modified: str = "2026-01-15T10:00:00+00:00",
        visibility: str = "domain",
        counters: dict[str, Any] | None = None,
        dcat_identifier: str | None = None,
        publisher: str | None = None,
    ) -> dict:
        """Add a catalog dataset; ``counters`` become ``metas.explore`` (None: the portal returns none)."""
        item = {
            "dataset_id": dataset_id,
            "dataset_uid": "da_" + hashlib.sha1(dataset_id.encode()).hexdigest()[:6],
            "visibility": visibility,
            "has_records": True,
            "data_visible": True,
            "features": ["analyze"],
            "fields": [],
            "attachments": [],
            "metas": {
                "default": {
                    "title": title,
                    "modified": modified,
                    "publisher": publisher,
                    "language": "fr",
                    "timezone": "Europe/Paris",
                    "license": "Licence Ouverte v2.0 (Etalab)",
                },
                **({"explore": dict(counters)} if counters is not None else {}),
                **({"dcat": {"identifier": dcat_identifier}} if dcat_identifier else {}),
            },
        }
        self.datasets[dataset_id] = item
        return item

    def record_calls(
        self,
        dataset_id: str | None,
        day: dt.date,
        api: str,
        count: int,
        *,
        bot: bool = False,
        referer: str | None = None,
        user_agent: str = "Mozilla/5.0 (X11; Linux x86_64; rv:133.0) Gecko/20100101 Firefox/133.0",
        api_type: str = "ods_v2.1",
        in_error: bool = False,
        seed: int = 0,
    ) -> None:
        """Append ``count`` raw monitoring rows (one per call) spread over ``day`` (UTC)."""
        rng = random.Random(f"{seed}/{dataset_id}/{day}/{api}/{bot}/{referer}")
        for _ in range(count):
            moment = dt.datetime.combine(day, dt.time(), tzinfo=dt.UTC) + dt.timedelta(seconds=rng.randrange(86_400))
            self.monitoring.append(
                {
                    "timestamp": moment.isoformat(timespec="microseconds"),
                    "user_ip_addr": f"203.0.113.{rng.randrange(1, 255)}",
                    "hostname": self.public_domain,
                    "user_id": "anonymous",
                    "dataset_id": [dataset_id] if dataset_id else None,
                    "domain_id": self.domain_id,
                    "api": api,
                    "api_type": api_type,
                    "user_agent": user_agent,
                    "referer": referer,
                    "in_error": in_error,
                    "request_aborted": False,
                    "bot": bot,
                }
            )


class OdsApiError(Exception):
    """An error answer: HTTP status and an ODS-like ``{"message", "error_code"}`` body."""

    def __init__(self, status: int, message: str, error_code: str) -> None:
        super().__init__(message)
        self.status = status
        self.body = {"message": message, "error_code": error_code}


@dataclass(frozen=True)
class RecordedRequest:
    """One request the server received: endpoint label, path, query arguments, whether a key came with it."""

    label: str
    path: str
    params: dict[str, list[str]]
    with_key: bool


@dataclass
class _Request:
    world: OdsWorld
    path: str
    query: list[tuple[str, str]]
    key: str | None

    def value(self, name: str, default: str | None = None) -> str | None:
        return next((value for key, value in self.query if key == name), default)


# -- auth ---------------------------------------------------------------------------------------------------


def _permissions(request: _Request) -> frozenset[str] | None:
    """The caller's permissions; None when anonymous. An unknown or expired key is a 401."""
    if request.key is None:
        return None
    world = request.world
    if request.key in world.expired_keys or request.key not in world.keys:
        raise OdsApiError(401, "The API key used is invalid or has expired.", "InvalidAPIKey")
    return world.keys[request.key]


# -- ODSQL subset -------------------------------------------------------------------------------------------

_DATE_CMP = re.compile(r"^(\w+)\s*(>=|<=|>|<)\s*date\s*'(\d{4}[-/]\d{2}[-/]\d{2})'$", re.IGNORECASE)
_STARTSWITH = re.compile(r"""^startswith\(\s*(\w+)\s*,\s*(['"])(.*)\2\s*\)$""", re.IGNORECASE)
_IS = re.compile(r"^(\w+)\s+is\s+(not\s+)?(true|false|null)$", re.IGNORECASE)
_EQUALS = re.compile(r"""^(\w+)\s*(?:=|:)\s*(['"])(.*)\2$""")
_AGGREGATE = re.compile(r"^(count|min|max)\(\s*(\*|\w+)\s*\)(?:\s+as\s+(\w+))?$", re.IGNORECASE)
_PLAIN = re.compile(r"^(\w+)(?:\s+as\s+(\w+))?$", re.IGNORECASE)
_DATE_FORMAT = re.compile(r"""^date_format\(\s*(\w+)\s*,\s*(['"])yyyy-MM-dd\2\s*\)(?:\s+as\s+(\w+))?$""")
_OPERATORS: dict[str, Callable[[Any, Any], bool]] = {
    ">=": lambda a, b: a >= b,
    "<=": lambda a, b: a <= b,
    ">": lambda a, b: a > b,
    "<": lambda a, b: a < b,
}


def _odsql_error(message: str) -> OdsApiError:
    return OdsApiError(400, message, "ODSQLError")


def _split_top(text: str, separator: str = ",") -> list[str]:
    """Split on `separator` outside parentheses and quotes."""
    parts, depth, quote, current = [], 0, "", []
    for char in text:
        if quote:
            quote = "" if char == quote else quote
        elif char in "'\"":
            quote = char
        elif char == "(":
            depth += 1
        elif char == ")":
            depth -= 1
        elif char == separator and depth == 0:
            parts.append("".join(current).strip())
            current = []
            continue
        current.append(char)
    parts.append("".join(current).strip())
    return [part for part in parts if part]


def _timestamp(row: dict) -> dt.datetime:
    return dt.datetime.fromisoformat(row["timestamp"])


def _condition(clause: str) -> Callable[[dict], bool]:
    if match := _DATE_CMP.match(clause):
        name, op, raw = match.groups()
        if name != "timestamp":
            raise _odsql_error(f"Unsupported date comparison on {name!r}")
        bound = dt.datetime.combine(dt.date.fromisoformat(raw.replace("/", "-")), dt.time(), tzinfo=dt.UTC)
        return lambda row: _OPERATORS[op](_timestamp(row), bound)
    if match := _STARTSWITH.match(clause):
        name, _, prefix = match.groups()
        return lambda row: isinstance(row.get(name), str) and row[name].startswith(prefix)
    if match := _IS.match(clause):
        name, negated, literal = match.groups()
        expected = {"true": True, "false": False, "null": None}[literal.lower()]
        return lambda row: (row.get(name) is expected) != bool(negated)
    if match := _EQUALS.match(clause):
        name, _, literal = match.groups()

        def equals(row: dict) -> bool:
            value = row.get(name)
            return literal in value if isinstance(value, list) else value == literal

        return equals
    raise _odsql_error(f"Unsupported or invalid where clause: {clause!r}")


def _where(text: str | None) -> Callable[[dict], bool]:
    if not text:
        return lambda row: True
    clauses = [_condition(part.strip()) for part in re.split(r"\s+AND\s+", text.strip(), flags=re.IGNORECASE)]
    return lambda row: all(clause(row) for clause in clauses)


def _group_keys(text: str | None) -> list[tuple[str, str, bool]]:
    """(label, field, is_day) for each group_by expression."""
    keys = []
    for part in _split_top(text or ""):
        if match := _DATE_FORMAT.match(part):
            name, _, label = match.groups()
            keys.append((label or part, name, True))
        elif match := _PLAIN.match(part):
            name, label = match.groups()
            keys.append((label or name, name, False))
        else:
            raise _odsql_error(f"Unsupported group_by expression: {part!r}")
    return keys


def _key_values(row: dict, name: str, is_day: bool) -> list[Any]:
    if is_day:
        return [_timestamp(row).date().isoformat()]
    value = row.get(name)
    if isinstance(value, list):  # multivalued field: one group per value
        return value or [None]
    return [value]


def _aggregate(function: str, argument: str, rows: list[dict]) -> Any:
    if function.lower() == "count":
        return len(rows) if argument == "*" else sum(1 for row in rows if row.get(argument) is not None)
    values = [row[argument] for row in rows if row.get(argument) is not None]
    if not values:
        return None
    if argument == "timestamp":
        chosen = (min if function.lower() == "min" else max)(values, key=dt.datetime.fromisoformat)
        return chosen
    return (min if function.lower() == "min" else max)(values)


def _export(request: _Request, rows: list[dict]) -> list[dict]:
    timezone = request.value("timezone", "UTC")
    if timezone != "UTC":
        raise OdsApiError(400, "This demo server only knows the UTC timezone.", "InvalidTimezone")
    selected = _split_top(request.value("select") or "")
    rows = [row for row in rows if _where(request.value("where"))(row)]
    group_keys = _group_keys(request.value("group_by"))
    aggregates: list[tuple[str, str, str]] = []
    plain: list[tuple[str, str]] = []
    for expression in selected:
        if match := _AGGREGATE.match(expression):
            function, argument, label = match.groups()
            aggregates.append((label or expression, function, argument))
        elif match := _PLAIN.match(expression):
            name, label = match.groups()
            plain.append((label or name, name))
        else:
            raise _odsql_error(f"Unsupported select expression: {expression!r}")
    group_names = {name for _, name, _ in group_keys} | {label for label, _, _ in group_keys}
    if group_keys:
        for _, name in plain:
            if name not in group_names:
                raise _odsql_error(f"Field {name!r} must be in the group_by clause")
        groups: dict[tuple, list[dict]] = defaultdict(list)
        for row in rows:
            combos: list[tuple] = [()]
            for _, name, is_day in group_keys:
                combos = [(*combo, value) for combo in combos for value in _key_values(row, name, is_day)]
            for combo in combos:
                groups[combo].append(row)
        result = []
        for combo, members in sorted(groups.items(), key=lambda item: json.dumps(item[0], default=str)):
            out = {label: value for (label, _, _), value in zip(group_keys, combo, strict=True)}
            out |= {label: _aggregate(function, argument, members) for label, function, argument in aggregates}
            result.append(out)
    elif aggregates:
        result = [{label: _aggregate(function, argument, rows) for label, function, argument in aggregates}]
    else:
        result = [{label: row.get(name) for label, name in plain} if plain else dict(row) for row in rows]
    offset = _int_arg(request, "offset", 0, minimum=0)
    limit = _int_arg(request, "limit", -1, minimum=-1)
    return result[offset:] if limit == -1 else result[offset : offset + limit]


def _int_arg(request: _Request, name: str, default: int, *, minimum: int) -> int:
    raw = request.value(name)
    if raw is None:
        return default
    try:
        value = int(raw)
    except ValueError:
        raise OdsApiError(400, f"Invalid value for {name}: {raw!r}", "InvalidParameter") from None
    if value < minimum:
        raise OdsApiError(400, f"{name} must be >= {minimum}", "InvalidParameter")
    return value


# -- endpoints ----------------------------------------------------------------------------------------------


def _catalog(request: _Request) -> dict:
    permissions = _permissions(request)
    limit = _int_arg(request, "limit", 10, minimum=0)
    offset = _int_arg(request, "offset", 0, minimum=0)
    if limit > CATALOG_MAX_LIMIT:
        raise OdsApiError(400, f"limit must be <= {CATALOG_MAX_LIMIT}", "InvalidParameter")
    if offset + limit > CATALOG_WINDOW:
        raise OdsApiError(400, "You can't access more than ~10k results.", "ResultWindowTooHigh")
    order_by = request.value("order_by") or "dataset_id"
    if order_by.split()[0] != "dataset_id":
        raise _odsql_error(f"Unsupported order_by on this demo server: {order_by!r}")
    app_metas = (request.value("include_app_metas") or "false").lower() == "true"
    visible = [
        item
        for _, item in sorted(request.world.datasets.items(), reverse=order_by.upper().endswith("DESC"))
        if item["visibility"] == "domain" or permissions is not None
    ]
    results = []
    for item in visible[offset : offset + limit]:
        metas = item["metas"] if app_metas else {"default": item["metas"]["default"]}
        results.append({**item, "metas": json.loads(json.dumps(metas))})
    return {"total_count": len(visible), "results": results}


def _monitoring_export(request: _Request, dataset_id: str) -> list[dict]:
    permissions = _permissions(request)
    world = request.world
    if permissions is None:
        raise OdsApiError(401, "Authentication is required to access monitoring datasets.", "Unauthorized")
    if BROWSE_ANALYTICS not in permissions:
        raise OdsApiError(
            world.missing_permission_status,
            f"You do not have the permission to browse analytics ({BROWSE_ANALYTICS}).",
            "PermissionDenied",
        )
    if dataset_id not in MONITORING_DATASETS:
        raise OdsApiError(404, f"The dataset {dataset_id!r} does not exist.", "UnknownDataset")
    rows = world.monitoring
    if world.retention_start is not None:
        rows = [row for row in rows if _timestamp(row).date() >= world.retention_start]
    return _export(request, rows)


def _reuses(request: _Request) -> dict:
    _permissions(request)
    if request.world.reuses is None:
        raise OdsApiError(404, "Reuses are not enabled on this domain.", "NotFound")
    rows = _int_arg(request, "rows", 10, minimum=0)
    start = _int_arg(request, "start", 0, minimum=0)
    ordered = sorted(request.world.reuses, key=lambda reuse: (reuse.get("created_at") or "", reuse["id"]), reverse=True)
    return {"nhits": len(ordered), "reuses": ordered[start : start + rows]}


def _not_found(request: _Request) -> Any:
    raise OdsApiError(404, f"Unknown path {request.path}", "NotFound")


def _route(path: str) -> tuple[str, Callable[[_Request], Any]]:
    parts = tuple(unquote(part) for part in path.strip("/").split("/"))
    match parts:
        case (*prefix, "catalog", "datasets") if tuple(prefix) == EXPLORE:
            return "catalog", _catalog
        case (*prefix, "monitoring", "datasets", dataset_id, "exports", "json") if tuple(prefix) == EXPLORE:
            return "monitoring_exports", lambda request: _monitoring_export(request, dataset_id)
        case (*prefix, "monitoring", "datasets", _dataset_id, "records") if tuple(prefix) == EXPLORE:
            return "monitoring_records", _not_found  # not served: the client must aggregate with exports
        case ("api", "reuses"):
            return "reuses", _reuses
    return "not_found", _not_found


def _api_key(headers: Any, query: list[tuple[str, str]]) -> str | None:
    authorization = headers.get("Authorization") or ""
    if authorization.lower().startswith("apikey "):
        return authorization[7:].strip() or None
    return next((value for key, value in query if key == "apikey"), None) or None


class _Handler(JsonHandler):
    """Answers GET requests with JSON; keeps connections alive (HTTP/1.1)."""

    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True
    server: LocalHTTPServer

    def do_GET(self) -> None:
        ods = self.server.owner
        url = urlsplit(self.path)
        query = parse_qsl(url.query, keep_blank_values=True)
        label, answer = _route(url.path)
        key = _api_key(self.headers, query)
        params: dict[str, list[str]] = defaultdict(list)
        for name, value in query:
            if name != "apikey":
                params[name].append(value)
        ods._record(RecordedRequest(label, url.path, dict(params), key is not None))
        if ods.latency > 0:
            time.sleep(ods.latency)
        request = _Request(ods.world, url.path, [(k, v) for k, v in query if k != "apikey"], key)
        status = 200
        with ods.world.lock:
            try:
                payload = answer(request)
            except OdsApiError as error:
                status, payload = error.status, error.body
            except Exception as error:
                traceback.print_exc()
                status, payload = 500, {"message": f"Internal Server Error: {error!r}", "error_code": "InternalError"}
        self.send_json(status, payload)


class OdsServer(LocalServer):
    """Serves an `OdsWorld` on 127.0.0.1 (ephemeral port): ``with OdsServer(world) as server: server.url``."""

    handler = _Handler

    def __init__(self, world: OdsWorld, latency: float = 0.0) -> None:
        self.world = world
        self.latency = latency
        super().__init__()
        self._requests: list[RecordedRequest] = []
        self._requests_lock = threading.Lock()

    @property
    def requests(self) -> list[RecordedRequest]:
        """A snapshot of the requests received so far, in order."""
        with self._requests_lock:
            return list(self._requests)

    def _record(self, request: RecordedRequest) -> None:
        with self._requests_lock:
            self._requests.append(request)


# -- demo world ---------------------------------------------------------------------------------------------

_SUBJECTS = (
    "Qualité de l'air", "Comptages vélo", "Stationnement en ouvrage", "Arbres d'alignement", "Parcs et jardins",
    "Consommation électrique des bâtiments publics", "Collecte des déchets", "Points d'apport volontaire",
    "Horaires des bibliothèques", "Fréquentation des piscines", "Budget primitif", "Subventions aux associations",
    "Marchés publics attribués", "Bornes de recharge", "Travaux de voirie", "Arrêts de bus", "Défibrillateurs",
    "Équipements sportifs", "Écoles élémentaires", "Menus des cantines", "Permis de construire",
    "Toilettes publiques", "Fontaines à boire", "Nids-de-poule signalés",
)  # fmt: skip
_PLACES = ("de la Métropole", "de la Ville", "du Département", "intercommunal", "communal")
_PAGE_APIS = ("dataset_lookup", "records_index", "aggregate_records", "analyze_records", "lookup_dataset")
_API_APIS = ("records_index", "aggregate_records", "search_dataset_records", "record_lookup", "odata_entity")
_DOWNLOAD_APIS = (
    "download_dataset",
    "download_dataset_records",
    "download_dataset_alternative_export",
    "export_dataset",
)
_BOT_AGENTS = ("Googlebot/2.1 (+http://www.google.com/bot.html)", "Mozilla/5.0 (compatible; bingbot/2.0)")
_REUSE_KINDS = ("Carte interactive", "Tableau de bord", "Application mobile", "Article de blog", "Visualisation")
_FIRST_NAMES = ("Camille", "Léa", "Hugo", "Inès", "Théo", "Manon", "Jules", "Anaïs", "Benoît", "Élodie")
_LAST_NAMES = ("Martin", "Dubois", "Lefèvre", "Moreau", "Girard", "Mercier", "Bonnet", "Le Gall")


def _slug(text: str) -> str:
    text = unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode().lower()
    return re.sub(r"[^a-z0-9]+", "-", text).strip("-")


def generate_ods_world(
    datasets: int, days: int, seed: int, today: dt.date, public_domain: str = "data.exemple-metropole.fr"
) -> OdsWorld:
    """A plausible French metropolitan ODS portal: ``datasets`` datasets, ``days`` days of monitoring before ``today``.

    Monitoring covers ``[today - days, today - 1]`` (its `retention_start` is ``today - days``); catalog
    counters are cumulative (an older base plus the monitored calls). One dataset in seven is restricted; the
    demo keys `DEMO_ANALYTICS_KEY`, `DEMO_READER_KEY` and `DEMO_EXPIRED_KEY` are set up.
    """
    rng = random.Random(seed)
    world = OdsWorld(
        public_domain=public_domain,
        retention_start=today - dt.timedelta(days=days),
        keys={DEMO_ANALYTICS_KEY: frozenset({BROWSE_ANALYTICS}), DEMO_READER_KEY: frozenset()},
        expired_keys={DEMO_EXPIRED_KEY},
        domain_id=public_domain.split(".")[1] if public_domain.count(".") >= 2 else "demo",
    )
    base = f"https://{public_domain}"
    for index in range(datasets):
        subject = _SUBJECTS[index % len(_SUBJECTS)]
        title = f"{subject} {rng.choice(_PLACES)}" + (
            f" ({index // len(_SUBJECTS) + 1})" if index >= len(_SUBJECTS) else ""
        )
        dataset_id = _slug(title)
        popularity = rng.lognormvariate(0, 1)
        downloads = apis = 0
        for offset in range(days, 0, -1):
            day = today - dt.timedelta(days=offset)
            weekday_factor = 0.5 if day.weekday() >= 5 else 1.0
            for api in _PAGE_APIS[: rng.randint(2, 5)]:
                count = max(0, round(rng.gauss(3 * popularity * weekday_factor, 1.5)))
                page = f"{base}/explore/dataset/{dataset_id}/{rng.choice(('table', 'information', 'analyze', 'map'))}/"
                world.record_calls(dataset_id, day, api, count, referer=page, seed=seed)
                apis += count
            for api in _API_APIS[: rng.randint(1, 5)]:
                count = max(0, round(rng.gauss(2 * popularity, 2)))
                world.record_calls(dataset_id, day, api, count, seed=seed)
                bots = max(0, round(rng.gauss(popularity, 1.5)))
                world.record_calls(dataset_id, day, api, bots, bot=True, user_agent=rng.choice(_BOT_AGENTS), seed=seed)
                apis += count + bots
            api = rng.choice(_DOWNLOAD_APIS)
            count = max(0, round(rng.gauss(popularity * weekday_factor, 1)))
            world.record_calls(
                dataset_id, day, api, count, referer=f"{base}/explore/dataset/{dataset_id}/export/", seed=seed
            )
            downloads += count
        reuse_count = rng.choice((0, 0, 0, 1, 1, 2, 3))
        for number in range(reuse_count):
            created = dt.datetime.combine(today, dt.time(9), tzinfo=dt.UTC) - dt.timedelta(days=rng.randint(10, 900))
            kind = rng.choice(_REUSE_KINDS)
            first, last = rng.choice(_FIRST_NAMES), rng.choice(_LAST_NAMES)
            world.reuses.append(  # type: ignore[union-attr]
                {
                    "id": f"{dataset_id}-reuse-{number + 1}",
                    "title": f"{kind} : {subject.lower()}",
                    "url": f"https://reutilisations.example.org/{dataset_id}/{number + 1}",
                    "thumbnail": None,
                    "description": f"{kind} réalisée à partir du jeu de données « {title} ».",
                    "created_at": created.isoformat(),
                    "dataset": {"id": dataset_id, "title": title},
                    "user": {"first_name": first, "last_name": last, "username": _slug(f"{first}-{last}")},
                }
            )
        world.add_dataset(
            dataset_id,
            title,
            modified=(
                dt.datetime.combine(today, dt.time(6), tzinfo=dt.UTC) - dt.timedelta(days=rng.randint(0, 400))
            ).isoformat(),
            visibility="restricted" if index % 7 == 6 else "domain",
            publisher=f"Métropole de {public_domain.split('.')[1].split('-')[-1].capitalize()}",
            dcat_identifier=f"{base}/explore/dataset/{dataset_id}/",
            counters={
                "download_count": downloads + rng.randint(0, 5_000),
                "api_call_count": apis + rng.randint(0, 50_000),
                "reuse_count": reuse_count,
                "popularity_score": round(popularity * 10, 2),
                "attachment_download_count": rng.randint(0, 50),
                "file_field_download_count": 0,
            },
        )
    return world
