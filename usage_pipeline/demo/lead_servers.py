"""Local stand-ins for the lead sources' APIs, in their documented response shapes (docs/reuse-leads.md).

`GitHubServer`: ``/search/code`` and ``/search/repositories`` (Bearer token required, ``items`` with
``text_matches``, pagination by ``Link`` header, a search rate limit answered 403 with ``X-RateLimit-Remaining:
0``, 422 on a query GitHub refuses). `HalServer`: HAL's Solr ``/search/`` (``response.numFound/start/docs``,
``fl`` field selection, ``start``/``rows`` paging). Both match the quoted phrases of ``q`` in their documents.
"""

import copy
import re
import threading
import time
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit

from usage_pipeline.demo.local_server import JsonHandler, LocalServer
from usage_pipeline.demo.portal_server import World

SEARCH_LIMIT = 30  # GitHub's search requests per minute for an authenticated user
MAX_QUERY = 256  # GitHub refuses longer search queries


def phrases(query: str) -> list[str]:
    """The quoted phrases of a search query, lower case."""
    return [phrase.lower() for phrase in re.findall(r'"([^"]+)"', query)]


class _GitHubHandler(JsonHandler):
    server: Any

    def do_GET(self) -> None:
        owner: GitHubServer = self.server.owner
        parts = urlsplit(self.path)
        query = dict(parse_qsl(parts.query))
        endpoint = parts.path.rstrip("/").removeprefix("/search/")
        owner.record(endpoint)
        if self.headers.get("Authorization") != f"Bearer {owner.token}":
            self.send_json(401, {"message": "Requires authentication"})
            return
        if endpoint not in ("code", "repositories"):
            self.send_json(404, {"message": "Not Found"})
            return
        remaining = owner.take()
        headers = {
            "X-RateLimit-Limit": str(SEARCH_LIMIT),
            "X-RateLimit-Remaining": str(max(remaining, 0)),
            "X-RateLimit-Reset": str(int(time.time()) + 60),
            "X-RateLimit-Resource": "code_search" if endpoint == "code" else "search",
        }
        q = query.get("q", "")
        if owner.retry_after is not None:  # GitHub's secondary rate limit
            self.send(429, {"message": "You have exceeded a secondary rate limit."}, {"Retry-After": owner.retry_after})
        elif remaining < 0:
            self.send(403, {"message": "API rate limit exceeded for user."}, headers)
        elif not q.strip() or len(q) > MAX_QUERY or not phrases(q):
            self.send(422, {"message": "Validation Failed", "errors": [{"code": "invalid", "field": "q"}]}, headers)
        else:
            items = owner.search(endpoint, q)
            per_page, page = int(query.get("per_page", 30)), int(query.get("page", 1))
            start = (page - 1) * per_page
            if start + per_page < len(items):
                args = urlencode({**query, "page": page + 1})
                headers["Link"] = f'<{owner.url}/search/{endpoint}?{args}>; rel="next"'
            body = {"total_count": len(items), "incomplete_results": False, "items": items[start : start + per_page]}
            self.send(200, body, headers)

    def send(self, status: int, body: dict, headers: dict[str, str]) -> None:
        self._extra_headers = headers  # sent by end_headers, with the JSON headers
        self.send_json(status, body)

    def end_headers(self) -> None:
        for name, value in getattr(self, "_extra_headers", {}).items():
            self.send_header(name, value)
        super().end_headers()


class GitHubServer(LocalServer):
    """``repositories``: ``{"full_name", "description", "readme", "files": {path: content}}``; ``remaining``:
    search requests left before the rate limit answers 403 (None: no limit)."""

    handler = _GitHubHandler

    def __init__(self, repositories: list[dict], token: str = "demo-token", remaining: int | None = None) -> None:
        super().__init__()
        self.repositories = repositories
        self.token = token
        self.remaining = remaining
        self.retry_after: str | None = None  # set: every search answers 429 with this Retry-After
        self._lock = threading.Lock()

    def take(self) -> int:
        """One search request: how many are left after it (negative: over the limit)."""
        with self._lock:
            if self.remaining is None:
                return SEARCH_LIMIT
            self.remaining -= 1
            return self.remaining

    def search(self, endpoint: str, query: str) -> list[dict]:
        wanted = phrases(query)
        items = []
        for repo in self.repositories:
            owner_login = repo["full_name"].split("/")[0]
            ref = {
                "full_name": repo["full_name"],
                "html_url": f"https://github.com/{repo['full_name']}",
                "description": repo.get("description"),
                "owner": {"login": owner_login},
            }
            if endpoint == "repositories":
                text = f"{repo.get('description') or ''}\n{repo.get('readme') or ''}"
                if any(phrase in text.lower() for phrase in wanted):
                    items.append({**ref, "text_matches": [{"fragment": text[:200]}]})
                continue
            for path, content in sorted(repo.get("files", {}).items()):
                hit = next((phrase for phrase in wanted if phrase in content.lower()), None)
                if hit:
                    at = content.lower().index(hit)
                    items.append(
                        {
                            "name": path.rsplit("/", 1)[-1],
                            "path": path,
                            "html_url": f"{ref['html_url']}/blob/main/{path}",
                            "repository": ref,
                            "text_matches": [{"fragment": content[max(0, at - 60) : at + 100]}],
                        }
                    )
        return items


class _HalHandler(JsonHandler):
    server: Any

    def do_GET(self) -> None:
        owner: HalServer = self.server.owner
        parts = urlsplit(self.path)
        query = dict(parse_qsl(parts.query))
        owner.record("search")
        if parts.path.rstrip("/") != "/search":
            self.send_json(404, {"error": {"msg": "not found", "code": 404}})
            return
        try:
            rows, start = int(query.get("rows", 30)), int(query.get("start", 0))
        except ValueError:
            self.send_json(400, {"error": {"msg": "rows and start must be integers", "code": 400}})
            return
        if rows > 10000:
            self.send_json(400, {"error": {"msg": "rows cannot exceed 10000", "code": 400}})
            return
        fields = [name for name in query.get("fl", "docid,label_s,uri_s").split(",") if name]
        found = [doc for doc in owner.documents if owner.matches(doc, query.get("q", ""))]
        docs = [{name: doc[name] for name in fields if name in doc} for doc in found[start : start + rows]]
        self.send_json(200, {"response": {"numFound": len(found), "start": start, "docs": docs}})


class HalServer(LocalServer):
    """``documents``: HAL records (``docid``, ``uri_s``, ``title_s``, ``authFullName_s``, ``abstract_s``) with a
    ``fulltext`` searched like HAL's full-text field."""

    handler = _HalHandler

    def __init__(self, documents: list[dict]) -> None:
        super().__init__()
        self.documents = documents

    @staticmethod
    def matches(doc: dict, query: str) -> bool:
        text = " ".join(str(value) for key, value in doc.items() if key != "docid").lower()
        return any(phrase in text for phrase in phrases(query))


def citing_works(world: World) -> tuple[list[dict], list[dict], list[dict]]:
    """Works that cite the world's datasets without being declared as their reuses, for the demo and the tests:
    GitHub repositories (one citing a dataset's page in code, one a resource's stable link, one naming a slug in
    its README), a HAL publication citing a page, and a portal reuse naming a dataset's title, linked to none."""
    entries = [world.entries[key] for key in sorted(world.entries) if key not in world.deleted]
    first, second, third = (entries[index % len(entries)] for index in range(3))
    page = "https://www.data.gouv.fr/fr/datasets/{}/".format
    resource = first["resources"][0]["id"] if first["resources"] else first["dataset"]["id"]
    repositories = [
        {
            "full_name": "collectif-velo/carte-des-donnees",
            "description": "Une carte interactive construite sur des données ouvertes",
            "files": {"src/sources.py": f'SOURCE = "{page(first["dataset"]["slug"])}"  # jeu de données\n'},
        },
        {
            "full_name": "etudiant-data/projet-tutore",
            "description": "Projet de fin d'études",
            "files": {"notebooks/analyse.ipynb": f'pd.read_csv("https://www.data.gouv.fr/fr/datasets/r/{resource}")'},
        },
        {
            "full_name": "civic-tech-lab/tableau-de-bord",
            "description": f"Tableau de bord à partir de {second['dataset']['slug']}",
            "readme": f"Données : {page(second['dataset']['slug'])}",
        },
    ]
    documents = [
        {
            "docid": 4242,
            "uri_s": "https://hal.science/hal-04242424",
            "title_s": ["Usages des données ouvertes territoriales"],
            "authFullName_s": ["Camille Martin", "Louis Bernard"],
            "abstract_s": [f"Nous exploitons le jeu de données {page(third['dataset']['slug'])} publié en open data."],
        }
    ]
    model = next((reuse for entry in entries for reuse in entry["reuses"]), None)
    unlinked = []
    if model is not None:
        unlinked.append(
            {
                **copy.deepcopy(model),
                "id": "6b1e5a1e5a1e5a1e5a1e5a1e",
                "slug": "application-non-liee",
                "title": "Application mobile des usagers",
                "description": f"Construite avec « {second['dataset']['title']} », sans le déclarer.",
                "url": "https://appli.example.org/usagers",
                "datasets": [],
            }
        )
    return repositories, documents, unlinked
