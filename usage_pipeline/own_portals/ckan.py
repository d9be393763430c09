"""A producer's own CKAN portal read through its action API: datasets with page views, showcases, comments.

The API facts used here, with their public sources, are in docs/ckan.md (cited by section title below: "Action
API envelope", "Authentication", "`status_show`", "Datasets and paging", "Page views", "Reuses: ckanext-showcase",
"Comments: ckanext-comments and ckanext-issues"). Every request goes through the shared `PortalClient` (retries,
backoff, bounded concurrency); the API token is sent in the ``Authorization`` header, bare ("Authentication"),
and never appears in a log line or an error message.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import re
from collections.abc import Iterable, Mapping
from typing import Any

from usage_pipeline.portal.client import NotFound, PortalClient, PortalError

log = logging.getLogger(__name__)

ROWS_MAX = 1000  # `ckan.search.rows_max` default: package_search never returns more rows per page
SHOWCASE_SEARCH_CAP = 100  # ckanext-showcase's list actions run a package_search with rows=100
ISSUES_PAGE = 100
TRACKING_IN_SEARCH = (2, 11)  # from CKAN 2.11 the `tracking` plugin adds tracking_summary to searches
EXTENSION_TRACKING = "tracking"
EXTENSION_SHOWCASE = "showcase"
EXTENSION_COMMENTS = "comments"
EXTENSION_ISSUES = "issues"
_VERSION = re.compile(r"^\s*(\d+)\.(\d+)")
_ERROR_MESSAGE = re.compile(r'"message"\s*:\s*"((?:[^"\\]|\\.)*)"')


class CkanError(RuntimeError):
    """A CKAN action failed: the message names the portal, the action and CKAN's error, never the API token."""

    def __init__(self, message: str, *, portal: str, action: str, status: int | None = None) -> None:
        super().__init__(message)
        self.portal = portal
        self.action = action
        self.status = status


def parse_version(version: str | None) -> tuple[int, int] | None:
    """``(major, minor)`` of a ``ckan_version`` such as ``2.10.9`` or ``2.13.0a0``; None when hidden or unreadable."""
    match = _VERSION.match(version or "")
    return (int(match[1]), int(match[2])) if match else None


def ckan_error_text(error: Any) -> str:
    """CKAN's ``error`` object as one line: its ``message`` (and ``__type``), or a validation error's fields."""
    if not isinstance(error, Mapping):
        return str(error) if error else "no error given"
    kind = error.get("__type")
    message = error.get("message")
    if not message:  # validation errors carry `{field: [problems]}` instead of a message
        details = [
            f"{key}: {'; '.join(map(str, value)) if isinstance(value, list) else value}"
            for key, value in error.items()
            if key not in ("__type", "message")
        ]
        message = ", ".join(details) or "no message"
    return f"{kind}: {message}" if kind else str(message)


def _tracking(value: Any) -> dict[str, int] | None:
    """``{"total", "recent"}`` of a `tracking_summary` (docs/ckan.md, "Page views"), None when absent."""
    if not isinstance(value, Mapping):
        return None
    return {"total": int(value.get("total") or 0), "recent": int(value.get("recent") or 0)}


def _extras(value: Any) -> dict[str, Any]:
    """CKAN's ``extras`` list of ``{key, value}`` as a dict (DCAT's `identifier`, `guid`, `uri` live there)."""
    if isinstance(value, Mapping):
        return dict(value)
    return {item["key"]: item.get("value") for item in value or () if isinstance(item, Mapping) and "key" in item}


class CkanPortal:
    """One CKAN portal: `status`, `datasets`, `showcases` and `comments` through the action API (docs/ckan.md).

    `status_show` is read once and cached: its ``extensions`` decide which calls are made, its ``ckan_version``
    which call returns page views (docs/ckan.md, "`status_show`" and "Page views").
    """

    def __init__(
        self,
        client: PortalClient,
        url: str,
        api_token: str | None,
        name: str,
        *,
        page_size: int = ROWS_MAX,
    ) -> None:
        self.client = client
        self.url = url.rstrip("/")
        self.name = name
        self.page_size = max(1, min(page_size, ROWS_MAX))
        self._token = api_token or None
        self._status: dict | None = None
        self._dataset_ids: list[str] | None = None

    def __repr__(self) -> str:
        return f"CkanPortal(name={self.name!r}, url={self.url!r}, token={'set' if self._token else 'none'})"

    # -- transport -------------------------------------------------------------------------------------------------

    def _error(self, action: str, problem: str, status: int | None = None) -> CkanError:
        message = f"CKAN portal {self.name!r} ({self.url}): action {action} failed: {problem}"
        if self._token:
            message = message.replace(self._token, "***")
        return CkanError(message, portal=self.name, action=action, status=status)

    async def _get_json(self, url: str, params: dict[str, Any] | None) -> Any:
        """`PortalClient.get_json`, with the bare token in ``Authorization`` when one is set (docs/ckan.md)."""
        headers = {"Authorization": self._token} if self._token else None
        return await self.client.get_json(url, params, headers=headers)

    async def _action(self, action: str, params: dict[str, Any] | None = None, *, missing_ok: bool = False) -> Any:
        """The ``result`` of ``GET /api/3/action/<action>``, after checking ``success`` ("Action API envelope").

        ``missing_ok``: a 404 (CKAN's "Not Found Error", e.g. a dataset without a comment thread) answers None.
        """
        url = f"{self.url}/api/3/action/{action}"
        try:
            envelope = await self._get_json(url, params)
        except NotFound as error:
            if missing_ok:
                return None
            raise self._error(action, f"HTTP {error.status}, not found", error.status) from None
        except PortalError as error:
            raise self._http_error(action, error) from None
        if not isinstance(envelope, Mapping) or "success" not in envelope:
            raise self._error(action, "the answer is not a CKAN action API envelope (no `success` key)")
        if envelope["success"] is not True:
            raise self._error(action, f"CKAN answered success=false: {ckan_error_text(envelope.get('error'))}")
        return envelope.get("result")

    def _http_error(self, action: str, error: PortalError) -> CkanError:
        """A CkanError for an HTTP error status: 403 names the token problem, others CKAN's message when readable."""
        text = str(error)
        found = _ERROR_MESSAGE.search(text)
        detail = text
        if found:
            with contextlib.suppress(ValueError):
                detail = json.loads(f'"{found[1]}"')
        if error.status == 403:
            if self._token:
                return self._error(action, f"token refused (HTTP 403: {detail})", 403)
            return self._error(action, f"access denied without an API token (HTTP 403: {detail})", 403)
        status = f"HTTP {error.status}" if error.status else "no answer"
        return self._error(action, f"{status}: {detail}", error.status)

    # -- status ----------------------------------------------------------------------------------------------------

    async def status(self) -> dict:
        """`status_show` (docs/ckan.md): ``ckan_version`` (None when hidden), ``extensions`` and the site fields."""
        if self._status is None:
            result = await self._action("status_show")
            if not isinstance(result, Mapping):
                raise self._error("status_show", "the result is not an object")
            status = dict(result)
            status["ckan_version"] = status.get("ckan_version") or None
            status["extensions"] = [str(name) for name in status.get("extensions") or ()]
            self._status = status
        return self._status

    async def _has(self, extension: str) -> bool:
        return extension in (await self.status())["extensions"]

    # -- datasets --------------------------------------------------------------------------------------------------

    async def _search_all(self) -> list[dict]:
        """Every public dataset through `package_search` pages (``rows``, ``start``; "Datasets and paging").

        Sorted by id so that pages do not shift when a dataset is modified during the walk; pages advance by the
        number of rows actually returned (the portal may cap ``rows``); a dataset seen twice is kept once.
        """
        found: dict[str, dict] = {}
        start = 0
        while True:
            result = await self._action(
                "package_search", {"q": "*:*", "rows": self.page_size, "start": start, "sort": "id asc"}
            )
            if not isinstance(result, Mapping):
                raise self._error("package_search", "the result is not an object")
            rows = result.get("results") or []
            for row in rows:
                found.setdefault(row["id"], row)
            start += len(rows)
            if not rows or start >= int(result.get("count") or 0):
                return list(found.values())

    def _dataset(self, package: Mapping[str, Any], tracking: dict[str, int] | None) -> dict:
        organization = package.get("organization") or {}
        return {
            "id": package["id"],
            "name": package.get("name"),
            "title": package.get("title"),
            "url": package.get("url") or None,
            "page_url": f"{self.url}/dataset/{package.get('name') or package['id']}",
            "organization": organization.get("name") if isinstance(organization, Mapping) else None,
            "metadata_created": package.get("metadata_created"),
            "metadata_modified": package.get("metadata_modified"),
            "extras": _extras(package.get("extras")),
            "tracking": tracking,
        }

    async def _shown_tracking(self, dataset_id: str) -> dict[str, int] | None:
        """``package_show?include_tracking=true`` (CKAN ≤ 2.10, "Page views"); None if gone or without tracking."""
        package = await self._action("package_show", {"id": dataset_id, "include_tracking": "true"}, missing_ok=True)
        return _tracking(package.get("tracking_summary")) if isinstance(package, Mapping) else None

    async def datasets(self) -> list[dict]:
        """Every public dataset, with its page views when the portal tracks them (docs/ckan.md, "Page views").

        Keys: ``id, name, title, url`` (the package's own link, None when empty), ``page_url``, ``organization``,
        ``metadata_created, metadata_modified`` (naive UTC ISO strings), ``extras`` (a dict) and ``tracking``:
        ``{"total", "recent"}`` or None when the portal gives none. Which call returns it:

        - plugin ``tracking`` listed (CKAN ≥ 2.11): in each `package_search` result, no extra call;
        - version ≥ 2.11 without the plugin: no tracking, no extra call;
        - version ≤ 2.10, or hidden: ``package_show?include_tracking=true`` per dataset (search never carries it).
          With a hidden version the first dataset is probed: no `tracking_summary` there means none at all.
          On ≤ 2.10 tracking is a config switch, invisible in `status_show`: ``{0, 0}`` may mean "disabled".
        """
        status = await self.status()
        packages = await self._search_all()
        self._dataset_ids = [package["id"] for package in packages]
        version = parse_version(status["ckan_version"])
        if EXTENSION_TRACKING in status["extensions"]:
            return [self._dataset(package, _tracking(package.get("tracking_summary"))) for package in packages]
        if (version is not None and version >= TRACKING_IN_SEARCH) or not packages:
            return [self._dataset(package, None) for package in packages]
        first = await self._shown_tracking(packages[0]["id"])
        if first is None and version is None:
            log.info("CKAN portal %r (version hidden) returns no tracking_summary: no page views", self.name)
            return [self._dataset(package, None) for package in packages]
        rest = await asyncio.gather(*(self._shown_tracking(package["id"]) for package in packages[1:]))
        return [self._dataset(package, tracking) for package, tracking in zip(packages, [first, *rest], strict=True)]

    # -- showcases -------------------------------------------------------------------------------------------------

    def _showcase(self, showcase: Mapping[str, Any]) -> dict:
        extras = _extras(showcase.get("extras"))
        return {
            "id": showcase["id"],
            "name": showcase.get("name"),
            "title": showcase.get("title"),
            "url": showcase.get("url") or None,
            "page_url": f"{self.url}/showcase/{showcase.get('name') or showcase['id']}",
            "notes": showcase.get("notes"),
            "author": showcase.get("author"),
            "image_url": showcase.get("image_url") or extras.get("image_url"),
            "created_at": showcase.get("metadata_created"),  # the association has no date: a proxy
            "metadata_modified": showcase.get("metadata_modified"),
        }

    async def _all_dataset_ids(self) -> list[str]:
        if self._dataset_ids is None:
            self._dataset_ids = [package["id"] for package in await self._search_all()]
        return self._dataset_ids

    async def showcases(self) -> dict[str, list[dict]]:
        """Dataset id -> the showcases (reuses) that use it, from ckanext-showcase (docs/ckan.md); {} when absent.

        `ckanext_showcase_list` (every active showcase, unpaged), then `ckanext_showcase_package_list` per showcase.
        That list stops at 100 datasets: a showcase that reaches the cap is completed with
        `ckanext_package_showcase_list` on every dataset.
        """
        if not await self._has(EXTENSION_SHOWCASE):
            return {}
        listed = await self._action("ckanext_showcase_list") or []
        showcases = {item["id"]: self._showcase(item) for item in listed}
        packages = await asyncio.gather(
            *(self._action("ckanext_showcase_package_list", {"showcase_id": key}) for key in showcases)
        )
        by_dataset: dict[str, dict[str, dict]] = {}
        capped: set[str] = set()
        for showcase_id, datasets in zip(showcases, packages, strict=True):
            datasets = datasets or []
            if len(datasets) >= SHOWCASE_SEARCH_CAP:
                capped.add(showcase_id)
            for dataset in datasets:
                by_dataset.setdefault(dataset["id"], {})[showcase_id] = showcases[showcase_id]
        if capped:
            log.info(
                "CKAN portal %r: %d showcase(s) at the 100-dataset cap, asking per dataset", self.name, len(capped)
            )
            dataset_ids = await self._all_dataset_ids()
            per_dataset = await asyncio.gather(
                *(self._action("ckanext_package_showcase_list", {"package_id": key}) for key in dataset_ids)
            )
            for dataset_id, found in zip(dataset_ids, per_dataset, strict=True):
                for showcase in found or []:
                    if showcase["id"] in capped:
                        by_dataset.setdefault(dataset_id, {})[showcase["id"]] = showcases[showcase["id"]]
        return {
            dataset_id: sorted(items.values(), key=lambda item: (item["created_at"] or "", item["id"]))
            for dataset_id, items in by_dataset.items()
        }

    # -- comments --------------------------------------------------------------------------------------------------

    @staticmethod
    def _comment(comment: Mapping[str, Any]) -> dict:
        author = comment.get("author")
        return {
            "id": comment["id"],
            "extension": EXTENSION_COMMENTS,
            "title": None,
            "content": comment.get("content"),
            "author": (author.get("name") if isinstance(author, Mapping) else None) or comment.get("author_id"),
            "created_at": comment.get("created_at"),
            "modified_at": comment.get("modified_at"),
            "reply_to_id": comment.get("reply_to_id"),
            "status": comment.get("state"),
            "comment_count": None,
        }

    @staticmethod
    def _issue(issue: Mapping[str, Any]) -> dict:
        user = issue.get("user")
        return {
            "id": str(issue["id"]),
            "extension": EXTENSION_ISSUES,
            "title": issue.get("title"),
            "content": issue.get("description"),
            "author": user.get("name") if isinstance(user, Mapping) else user,
            "created_at": issue.get("created"),
            "modified_at": issue.get("updated"),
            "reply_to_id": None,
            "status": issue.get("status"),
            "comment_count": issue.get("comment_count"),
        }

    async def _thread(self, dataset_id: str) -> list[dict]:
        """ckanext-comments: the dataset's thread, flat (docs/ckan.md); an uncommented dataset has no thread (404)."""
        params = {"subject_id": dataset_id, "subject_type": "package", "include_comments": "true"}
        thread = await self._action("comments_thread_show", {**params, "include_author": "true"}, missing_ok=True)
        comments = (thread or {}).get("comments") or []
        return sorted(
            (self._comment(item) for item in comments), key=lambda item: (item["created_at"] or "", item["id"])
        )

    async def _issues(self, dataset_id: str) -> list[dict]:
        """ckanext-issues: every issue of the dataset, open or closed, paged by ``limit``/``offset`` (docs/ckan.md)."""
        issues: list[dict] = []
        while True:
            params = {"dataset_id": dataset_id, "limit": ISSUES_PAGE, "offset": len(issues), "sort": "oldest"}
            result = await self._action("issue_search", params, missing_ok=True) or {}
            page = result.get("results") or []
            issues += [self._issue(item) for item in page]
            if len(page) < ISSUES_PAGE:
                return issues

    async def comments(self, dataset_ids: Iterable[str]) -> dict[str, list[dict]]:
        """Dataset id -> its comments (only datasets that have some), {} without a comments extension (docs/ckan.md).

        ckanext-comments (``comments``) is preferred; ckanext-issues (``issues``, old CKAN only) is the fallback, one
        entry per issue with its ``comment_count``. Both are detected in `status_show` before any call.
        Anonymous callers only see approved comments / visible issues.
        """
        if await self._has(EXTENSION_COMMENTS):
            fetch = self._thread
        elif await self._has(EXTENSION_ISSUES):
            fetch = self._issues
        else:
            return {}
        ids = list(dict.fromkeys(dataset_ids))
        found = await asyncio.gather(*(fetch(dataset_id) for dataset_id in ids))
        return {dataset_id: items for dataset_id, items in zip(ids, found, strict=True) if items}
