"""A local CKAN-compatible server: the action API calls `own_portals.ckan` makes, over an in-memory `CkanWorld`.

Stdlib only, same style as `portal_server`. Shapes follow docs/ckan.md: the envelope
``{help, success, result | error}`` ("Action API envelope"), `status_show`, `package_search` with ``rows`` /
``start`` / ``sort`` and `package_show` ("Datasets and paging"), `tracking_summary` by CKAN version ("Page
views"), ckanext-showcase's list actions ("Reuses: ckanext-showcase"), ckanext-comments' `comments_thread_show`
and ckanext-issues' `issue_search` ("Comments: ckanext-comments and ckanext-issues"). Actions of extensions that
are not listed in `CkanWorld.extensions` answer "Action name not known", as CKAN does.
"""

from __future__ import annotations

import copy
import datetime as dt
import random
import re
import threading
import traceback
import uuid
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field, fields
from typing import Any
from urllib.parse import parse_qsl, unquote, urlsplit

from usage_pipeline.demo.local_server import JsonHandler, LocalHTTPServer, LocalServer
from usage_pipeline.demo.world import FIRST_NAMES, LAST_NAMES, PLACES, THEMES, slugify

ROWS_DEFAULT = 10
ROWS_MAX = 1000
SHOWCASE_SEARCH_CAP = 100
DEFAULT_VERSION = "2.11.4"
DEFAULT_EXTENSIONS = ("activity", "tracking", "showcase", "comments", "dcat", "scheming_datasets")
EXTENSION_OF_ACTION = {
    "ckanext_showcase_list": "showcase",
    "ckanext_showcase_package_list": "showcase",
    "ckanext_package_showcase_list": "showcase",
    "comments_thread_show": "comments",
    "issue_search": "issues",
}
SORTABLE = frozenset({"id", "name", "title", "metadata_created", "metadata_modified", "views_total", "views_recent"})


def _version(value: str) -> tuple[int, int]:
    match = re.match(r"(\d+)\.(\d+)", value)
    return (int(match[1]), int(match[2])) if match else (0, 0)


@dataclass
class CkanWorld:
    """A CKAN portal's state, read live at each request (mutate it holding `lock` while a server runs).

    - `datasets`: package dicts (``id, name, title, url, notes, state, private, organization, metadata_created,
      metadata_modified, extras, tags, resources``) — no `tracking_summary`, which is `tracking[id]`
      (``{"total", "recent"}``) and is added by version as CKAN does (docs/ckan.md, "Page views").
    - `showcases`: showcase package dicts (``type: "showcase"``); `showcase_datasets`: showcase id -> dataset ids.
    - `comments`: dataset id -> the comments of its ckanext-comments thread (a key = a thread exists).
    - `issues`: dataset id -> its ckanext-issues issues.
    - `tracking_enabled`: CKAN ≤ 2.10's ``ckan.tracking_enabled`` (off: `include_tracking` gives ``{0, 0}``).
    - `api_token`: the one valid token; any other ``Authorization`` value is refused with a 403.
      `require_token`: anonymous calls are refused too (a closed portal).
    - `failing_actions`: action name -> the error message answered with HTTP 200 and ``success: false``.
    """

    datasets: list[dict] = field(default_factory=list)
    tracking: dict[str, dict] = field(default_factory=dict)
    showcases: list[dict] = field(default_factory=list)
    showcase_datasets: dict[str, list[str]] = field(default_factory=dict)
    comments: dict[str, list[dict]] = field(default_factory=dict)
    issues: dict[str, list[dict]] = field(default_factory=dict)
    version: str = DEFAULT_VERSION
    extensions: list[str] = field(default_factory=lambda: list(DEFAULT_EXTENSIONS))
    hide_version: bool = False
    tracking_enabled: bool = True
    api_token: str | None = None
    require_token: bool = False
    failing_actions: dict[str, str] = field(default_factory=dict)
    site_title: str = "Portail open data"
    lock: threading.RLock = field(default_factory=threading.RLock, repr=False, compare=False)

    def __deepcopy__(self, memo: dict) -> CkanWorld:
        """A deep copy with a lock of its own."""
        state = {item.name: getattr(self, item.name) for item in fields(self) if item.name != "lock"}
        return CkanWorld(**copy.deepcopy(state, memo))

    @property
    def tracking_in_search(self) -> bool:
        """CKAN ≥ 2.11 with the `tracking` plugin: searches and shows carry `tracking_summary` (docs/ckan.md)."""
        return _version(self.version) >= (2, 11) and "tracking" in self.extensions


class CkanApiError(Exception):
    """An error answer: HTTP status and CKAN's ``error`` object."""

    def __init__(self, status: int, error: dict) -> None:
        super().__init__(error.get("message") or str(error))
        self.status = status
        self.error = error


def _not_found(what: str = "Not found") -> CkanApiError:
    return CkanApiError(404, {"__type": "Not Found Error", "message": what})


def _invalid(**problems: str) -> CkanApiError:
    return CkanApiError(409, {"__type": "Validation Error", **{key: [value] for key, value in problems.items()}})


@dataclass
class _Request:
    world: CkanWorld
    base_url: str
    params: dict[str, str]
    authorized: bool  # a valid token was sent

    def int_param(self, name: str, default: int) -> int:
        raw = self.params.get(name)
        if raw in (None, ""):
            return default
        try:
            value = int(raw)
        except ValueError:
            raise _invalid(**{name: "Invalid integer"}) from None
        if value < 0:
            raise _invalid(**{name: "Must be a natural number"})
        return value

    def flag(self, name: str) -> bool:
        return (self.params.get(name) or "").lower() in ("true", "1", "yes")


def _visible(request: _Request, package: dict) -> bool:
    return package.get("state", "active") == "active" and (not package.get("private") or request.authorized)


def _find(items: list[dict], key: str | None) -> dict | None:
    return next((item for item in items if key and key in (item["id"], item.get("name"))), None)


def _package(request: _Request, package: dict, *, tracking: bool) -> dict:
    out = copy.deepcopy(package)
    out.setdefault("type", "dataset")
    out["num_resources"] = len(out.get("resources") or [])
    out["num_tags"] = len(out.get("tags") or [])
    if tracking:
        summary = request.world.tracking.get(package["id"], {"total": 0, "recent": 0})
        out["tracking_summary"] = {"total": summary["total"], "recent": summary["recent"]}
    return out


def _status_show(request: _Request) -> dict:
    world = request.world
    result = {
        "site_title": world.site_title,
        "site_description": "",
        "site_url": request.base_url,
        "locale_default": "fr",
        "extensions": list(world.extensions),
        "ckan_version": world.version,
    }
    if world.hide_version and not request.authorized:
        del result["ckan_version"]
    return result


def _sort_key(sort: str) -> list[tuple[str, bool]]:
    keys = []
    for part in sort.split(","):
        words = part.split()
        if not words:
            continue
        name, direction = words[0], (words[1] if len(words) > 1 else "asc").lower()
        if direction not in ("asc", "desc"):
            raise _invalid(sort=f"Invalid sort direction: {direction}")
        if name in SORTABLE:
            keys.append((name, direction == "desc"))
    return keys


def _package_search(request: _Request) -> dict:
    world = request.world
    rows = min(request.int_param("rows", ROWS_DEFAULT), ROWS_MAX)  # capped silently, like `rows_max`
    start = request.int_param("start", 0)
    found = [package for package in world.datasets if _visible(request, package)]
    found.sort(key=lambda package: package["metadata_modified"], reverse=True)  # "score desc, metadata_modified desc"

    def value(package: dict, name: str) -> Any:
        if name.startswith("views_"):
            return world.tracking.get(package["id"], {}).get(name.removeprefix("views_"), 0)
        return package.get(name) or ""

    for name, descending in reversed(_sort_key(request.params.get("sort") or "")):
        found.sort(key=lambda package, name=name: value(package, name), reverse=descending)
    page = found[start : start + rows]
    return {
        "count": len(found),
        "facets": {},
        "search_facets": {},
        "sort": request.params.get("sort") or "score desc, metadata_modified desc",
        "results": [_package(request, package, tracking=world.tracking_in_search) for package in page],
    }


def _package_show(request: _Request) -> dict:
    world = request.world
    package = _find(world.datasets, request.params.get("id"))
    if package is None or package.get("state", "active") != "active":
        raise _not_found()
    if package.get("private") and not request.authorized:
        raise CkanApiError(403, {"__type": "Authorization Error", "message": "Access denied"})
    if world.tracking_in_search:
        return _package(request, package, tracking=True)
    if _version(world.version) < (2, 11) and request.flag("include_tracking"):
        out = _package(request, package, tracking=True)
        if not world.tracking_enabled:
            out["tracking_summary"] = {"total": 0, "recent": 0}
        return out
    return _package(request, package, tracking=False)


def _showcase(showcase: dict) -> dict:
    out = copy.deepcopy(showcase)
    out["type"] = "showcase"
    return out


def _active_showcases(world: CkanWorld) -> list[dict]:
    return [showcase for showcase in world.showcases if showcase.get("state", "active") == "active"]


def _showcase_list(request: _Request) -> list[dict]:
    return [_showcase(showcase) for showcase in _active_showcases(request.world)]


def _showcase_package_list(request: _Request) -> list[dict]:
    world = request.world
    key = request.params.get("showcase_id")
    if not key:
        raise _invalid(showcase_id="Missing value")
    showcase = _find(world.showcases, key)
    if showcase is None:
        raise _invalid(showcase_id="Not found: Showcase")
    ids = set(world.showcase_datasets.get(showcase["id"], ()))
    packages = [package for package in world.datasets if package["id"] in ids and _visible(request, package)]
    return [_package(request, package, tracking=world.tracking_in_search) for package in packages][:SHOWCASE_SEARCH_CAP]


def _package_showcase_list(request: _Request) -> list[dict]:
    world = request.world
    key = request.params.get("package_id")
    if not key:
        raise _invalid(package_id="Missing value")
    package = _find(world.datasets, key)
    if package is None:
        raise _invalid(package_id="Not found: Dataset")
    showcases = [
        item for item in _active_showcases(world) if package["id"] in world.showcase_datasets.get(item["id"], ())
    ]
    return [_showcase(showcase) for showcase in showcases][:SHOWCASE_SEARCH_CAP]


def _comments_thread_show(request: _Request) -> dict:
    world = request.world
    subject_id = request.params.get("subject_id")
    if not subject_id:
        raise _invalid(subject_id="Missing value")
    if request.params.get("subject_type", "package") != "package" or subject_id not in world.comments:
        raise _not_found("Thread not found")
    comments = world.comments[subject_id]
    thread_id = str(uuid.uuid5(uuid.NAMESPACE_URL, f"thread/{subject_id}"))
    thread = {
        "id": thread_id,
        "subject_id": subject_id,
        "subject_type": "package",
        "created_at": min((item["created_at"] for item in comments), default="2020-01-01T00:00:00"),
    }
    if request.flag("include_comments"):
        shown = []
        for comment in comments:
            if comment.get("state") != "approved" and not request.authorized:
                continue  # anonymous callers see approved comments only (docs/ckan.md)
            item = {**copy.deepcopy(comment), "thread_id": thread_id, "approved": comment.get("state") == "approved"}
            if not request.flag("include_author"):
                item.pop("author", None)
            shown.append(item)
        thread["comments"] = shown
    return thread


def _issue_search(request: _Request) -> dict:
    world = request.world
    key = request.params.get("dataset_id")
    package = _find(world.datasets, key) if key else None
    if key and package is None:
        raise _invalid(dataset_id="Not found: Dataset")
    limit = request.int_param("limit", 50)
    offset = request.int_param("offset", 0)
    issues = [
        issue
        for dataset_id, items in world.issues.items()
        if package is None or dataset_id == package["id"]
        for issue in items
        if issue.get("visibility", "visible") == "visible" or request.authorized
    ]
    status = request.params.get("status")
    if status:
        issues = [issue for issue in issues if issue.get("status") == status]
    issues.sort(key=lambda issue: (issue["created"], issue["id"]), reverse=request.params.get("sort") == "newest")
    return {"count": len(issues), "results": copy.deepcopy(issues[offset : offset + limit])}


ACTIONS: dict[str, Callable[[_Request], Any]] = {
    "status_show": _status_show,
    "package_search": _package_search,
    "package_show": _package_show,
    "ckanext_showcase_list": _showcase_list,
    "ckanext_showcase_package_list": _showcase_package_list,
    "ckanext_package_showcase_list": _package_showcase_list,
    "comments_thread_show": _comments_thread_show,
    "issue_search": _issue_search,
}


class _Handler(JsonHandler):
    """Answers ``GET /api/3/action/<action>`` with CKAN's envelope; keeps connections alive (HTTP/1.1)."""

    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True
    server: LocalHTTPServer

    def _answer(self, action: str, params: dict[str, str], base_url: str) -> tuple[int, dict]:
        world = self.server.owner.world
        envelope: dict[str, Any] = {"help": f"{base_url}/api/3/action/help_show?name={action}"}
        token = self.headers.get("Authorization")
        try:
            if token is not None and token != world.api_token:
                raise CkanApiError(403, {"__type": "Authorization Error", "message": "Access denied: invalid token"})
            if token is None and world.require_token:
                raise CkanApiError(403, {"__type": "Authorization Error", "message": "Access denied"})
            handler = ACTIONS.get(action)
            needed = EXTENSION_OF_ACTION.get(action)
            if handler is None or (needed is not None and needed not in world.extensions):
                raise CkanApiError(400, {"message": f"Bad request - Action name not known: {action}"})
            if action in world.failing_actions:
                return 200, {**envelope, "success": False, "error": {"message": world.failing_actions[action]}}
            request = _Request(world, base_url, params, authorized=token is not None)
            return 200, {**envelope, "success": True, "result": handler(request)}
        except CkanApiError as error:
            return error.status, {**envelope, "success": False, "error": error.error}

    def do_GET(self) -> None:
        ckan = self.server.owner
        url = urlsplit(self.path)
        parts = [unquote(part) for part in url.path.strip("/").split("/")]
        host = self.headers.get("Host") or "{}:{}".format(*self.server.server_address[:2])
        params = dict(parse_qsl(url.query, keep_blank_values=True))
        action = parts[3] if len(parts) == 4 and parts[:3] == ["api", "3", "action"] else None
        ckan.record(action or "not_found")
        with ckan.world.lock:
            try:
                if action is None:
                    status, payload = 404, {"success": False, "error": {"message": "Not found"}}
                else:
                    status, payload = self._answer(action, params, f"http://{host}")
            except Exception as error:  # a bug here, or a world mutated into an unexpected shape
                traceback.print_exc()
                status, payload = 500, {"success": False, "error": {"message": f"Internal Server Error: {error!r}"}}
        self.send_json(status, payload)


class CkanServer(LocalServer):
    """Serves a `CkanWorld` on 127.0.0.1 (ephemeral port) from a daemon thread.

    ``with CkanServer(world) as server:`` then point a `CkanPortal` at ``server.url``.
    """

    handler = _Handler

    def __init__(self, world: CkanWorld) -> None:
        self.world = world
        super().__init__()

    @property
    def requests_by_action(self) -> Counter[str]:
        """A snapshot of the request counts by action name (``not_found`` for other paths)."""
        return self.counts()


# -- a plausible French portal --------------------------------------------------------------------------------------

SHOWCASE_PATTERNS = (
    "Carte interactive : {theme}",
    "Tableau de bord {theme_lower}",
    "Application mobile « {theme} »",
    "Article : ce que disent les données « {theme_lower} »",
    "Visualisation {theme_lower} à {place}",
)
SHOWCASE_SITES = ("carto-citoyenne.fr", "lepetitregional.fr", "data-explorer.fr", "observatoire-local.org")
COMMENT_TEXTS = (
    "Les données du mois dernier semblent manquer, est-ce normal ?",
    "Merci pour ce jeu de données très utile !",
    "Pourriez-vous ajouter une colonne avec le code INSEE ?",
    "Le fichier CSV utilise le point-virgule comme séparateur, il faudrait le préciser.",
    "Quelle est la fréquence de mise à jour prévue ?",
    "Les coordonnées GPS de plusieurs lignes sont inversées.",
)
REPLY_TEXTS = (
    "Merci pour votre signalement, nous corrigeons cela.",
    "Bonne remarque, ce sera fait lors de la prochaine mise à jour.",
)


def _uuid(rng: random.Random) -> str:
    return str(uuid.UUID(int=rng.getrandbits(128), version=4))


def _naive(when: dt.datetime) -> str:
    """CKAN's naive ISO-8601 UTC datetimes (docs/ckan.md, "Datasets and paging")."""
    return when.replace(tzinfo=None).isoformat(timespec="microseconds")


def _between(rng: random.Random, start: dt.datetime, end: dt.datetime) -> dt.datetime:
    return start + (end - start) * rng.random()


def generate_ckan_world(
    datasets: int,
    seed: int,
    today: dt.date,
    *,
    version: str = DEFAULT_VERSION,
    extensions: tuple[str, ...] | list[str] = DEFAULT_EXTENSIONS,
) -> CkanWorld:
    """A French local authority's CKAN portal: `datasets` datasets with page views, showcases and comments.

    Deterministic for a seed. Issues are generated only when ``issues`` is among `extensions`.
    """
    rng = random.Random(seed)
    place = rng.choice(PLACES)
    organization = {"id": _uuid(rng), "name": slugify(f"metropole-de-{place}"), "title": f"Métropole de {place}"}
    end = dt.datetime.combine(today, dt.time(6, 0))
    world = CkanWorld(version=version, extensions=list(extensions), site_title=f"Open data {place}")
    names: set[str] = set()
    for index in range(datasets):
        theme, tags = THEMES[index % len(THEMES)]
        title = theme if index < len(THEMES) else f"{theme} ({today.year - index // len(THEMES)})"
        name = slugify(title)
        while name in names:
            name += "-bis"
        names.add(name)
        created = _between(rng, dt.datetime(2016, 1, 1), end - dt.timedelta(days=30))
        modified = _between(rng, created, end)
        dataset_id = _uuid(rng)
        world.datasets.append(
            {
                "id": dataset_id,
                "name": name,
                "title": title,
                "type": "dataset",
                "state": "active",
                "private": False,
                "url": "",
                "notes": f"{theme} sur le territoire de la Métropole de {place}.",
                "license_id": "lov2",
                "owner_org": organization["id"],
                "organization": dict(organization),
                "metadata_created": _naive(created),
                "metadata_modified": _naive(modified),
                "tags": [{"name": tag} for tag in tags],
                "extras": [{"key": "frequency", "value": rng.choice(("annuelle", "mensuelle", "quotidienne"))}],
                "resources": [
                    {
                        "id": (resource_id := _uuid(rng)),
                        "name": f"{name}.csv",
                        "format": "CSV",
                        "url": f"https://data.{slugify(place)}.fr/dataset/{dataset_id}/resource/{resource_id}"
                        f"/download/{name}.csv",
                    }
                ],
            }
        )
        total = int(rng.lognormvariate(5.5, 1.2))
        world.tracking[dataset_id] = {"total": total, "recent": min(total, int(total * rng.uniform(0, 0.08)))}
        if "comments" in extensions and rng.random() < 0.35:
            comments: list[dict] = []
            for _ in range(rng.randint(1, 3)):
                when = _between(rng, created, end)
                author = f"{rng.choice(FIRST_NAMES)} {rng.choice(LAST_NAMES)}"
                comment = {
                    "id": _uuid(rng),
                    "content": rng.choice(COMMENT_TEXTS),
                    "author_id": _uuid(rng),
                    "author_type": "user",
                    "author": {"name": slugify(author), "fullname": author},
                    "state": "approved" if rng.random() < 0.85 else "draft",
                    "reply_to_id": None,
                    "created_at": _naive(when),
                    "modified_at": None,
                    "extras": {},
                }
                comments.append(comment)
                if rng.random() < 0.5:
                    comments.append(
                        {
                            **comment,
                            "id": _uuid(rng),
                            "content": rng.choice(REPLY_TEXTS),
                            "author": {"name": organization["name"], "fullname": organization["title"]},
                            "state": "approved",
                            "reply_to_id": comment["id"],
                            "created_at": _naive(_between(rng, when, end)),
                        }
                    )
            world.comments[dataset_id] = comments
        if "issues" in extensions and rng.random() < 0.2:
            world.issues[dataset_id] = [
                {
                    "id": 1000 * index + number,
                    "number": number,
                    "title": rng.choice(COMMENT_TEXTS)[:60],
                    "description": rng.choice(COMMENT_TEXTS),
                    "dataset_id": dataset_id,
                    "resource_id": None,
                    "user_id": _uuid(rng),
                    "assignee_id": None,
                    "status": rng.choice(("open", "closed")),
                    "resolved": None,
                    "created": _naive(created + dt.timedelta(days=number * 30)),
                    "updated": _naive(created + dt.timedelta(days=number * 30 + 2)),
                    "visibility": "visible",
                    "abuse_status": "unmoderated",
                    "user": slugify(f"{rng.choice(FIRST_NAMES)}{rng.choice(LAST_NAMES)}"),
                    "comment_count": rng.randint(0, 4),
                }
                for number in range(1, rng.randint(1, 3) + 1)
            ]
    if "showcase" in extensions:
        for _ in range(max(1, datasets // 3) if datasets else 0):
            used = rng.sample(world.datasets, k=min(len(world.datasets), rng.randint(1, 3)))
            theme = used[0]["title"]
            title = rng.choice(SHOWCASE_PATTERNS).format(theme=theme, theme_lower=theme.lower(), place=place)
            created = _between(rng, dt.datetime.fromisoformat(used[0]["metadata_created"]), end)
            author = f"{rng.choice(FIRST_NAMES)} {rng.choice(LAST_NAMES)}"
            name = slugify(title)[:90] + f"-{len(world.showcases) + 1}"
            showcase = {
                "id": _uuid(rng),
                "name": name,
                "title": title,
                "type": "showcase",
                "state": "active",
                "notes": f"Réalisé par {author} à partir des données ouvertes de la Métropole de {place}.",
                "url": f"https://{rng.choice(SHOWCASE_SITES)}/{name}",
                "author": author,
                "author_email": None,
                "metadata_created": _naive(created),
                "metadata_modified": _naive(_between(rng, created, end)),
                "tags": [],
                "extras": [{"key": "image_url", "value": f"{name}.png"}],
            }
            world.showcases.append(showcase)
            world.showcase_datasets[showcase["id"]] = [item["id"] for item in used]
    return world
