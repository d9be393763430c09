"""Reuse link health: what each answer means, politeness (bounded concurrency, one host at a time), the asset."""

import asyncio
import datetime as dt
import itertools
import json
import socket
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import urlsplit

import dagster as dg
import duckdb
import httpx
import pytest
from dagster_duckdb import DuckDBResource

from usage_pipeline.ingest.assets import RAW_SNAPSHOT_KEY, WAREHOUSE_POOL
from usage_pipeline.ingest.partitions import day_range_tags
from usage_pipeline.ingest.reuse_link_checks import (
    LINK_CHECKS_COLUMNS,
    LINK_CHECKS_KEY,
    LINK_CHECKS_TABLE,
    LinkCheck,
    Redirect,
    ReuseLinkChecker,
    check_url,
    check_urls,
    describe_error,
    is_alive,
    reuse_link_checks,
)
from usage_pipeline.portal.client import USER_AGENT

CLIENT_TIMEOUT = 0.3  # seconds: /slow answers far later
SLOW = 10.0  # seconds /slow would wait before answering (cut short when the server stops)
HOLD = 0.1  # seconds /hold takes to answer
BIG_BODY = 64 * 1024 * 1024  # bytes /big announces on GET: a check must not read them
RUN_DATE = dt.date(2020, 1, 15)  # never today


@dataclass(frozen=True)
class Seen:
    """A request the site answered: server-side monotonic times of its arrival and of its answer."""

    method: str
    host: str
    path: str
    started: float
    answered: float
    user_agent: str


class Site:
    """A local web site on 127.0.0.1 whose paths answer like reusers' sites do; records every request."""

    def __init__(self) -> None:
        self.seen: list[Seen] = []
        self.in_flight = 0
        self.max_in_flight = 0
        self.big_bytes_sent = 0
        self.big_done = threading.Event()
        self.stopping = threading.Event()
        self._lock = threading.Lock()
        site = self

        class Handler(BaseHTTPRequestHandler):
            def do_HEAD(self) -> None:
                self._handle("HEAD")

            def do_GET(self) -> None:
                self._handle("GET")

            def _handle(self, method: str) -> None:
                self.method = method
                self.started = time.monotonic()
                self.answered = False
                with site._lock:
                    site.in_flight += 1
                    site.max_in_flight = max(site.max_in_flight, site.in_flight)
                try:
                    self._route(method, urlsplit(self.path).path)
                except OSError:
                    pass  # the client gave up (timeout, or a GET closed without reading the body)
                finally:
                    self._answer_now()

            def _answer_now(self) -> None:
                """Record the request as answered, before the answer leaves: the client cannot be faster."""
                if self.answered:
                    return
                self.answered = True
                with site._lock:
                    site.in_flight -= 1
                    site.seen.append(
                        Seen(
                            self.method,
                            self.headers.get("Host", ""),
                            urlsplit(self.path).path,
                            self.started,
                            time.monotonic(),
                            self.headers.get("User-Agent", ""),
                        )
                    )

            def _route(self, method: str, path: str) -> None:
                if path == "/ok":
                    self._send(method, 200)
                elif path == "/moved":
                    self._send(method, 301, location="/ok")
                elif path == "/chain":
                    self._send(method, 302, location="/moved")
                elif path == "/loop":
                    self._send(method, 302, location="/loop")
                elif path == "/missing":
                    self._send(method, 404)
                elif path == "/error":
                    self._send(method, 500)
                elif path == "/forbidden":
                    self._send(method, 403)
                elif path == "/no-head":
                    self._send(method, 405 if method == "HEAD" else 200)
                elif path == "/reset-head":
                    if method == "HEAD":
                        self.close_connection = True  # hang up without an answer
                        return
                    self._send(method, 200)
                elif path == "/big":
                    self._big(method)
                elif path == "/slow":
                    site.stopping.wait(SLOW)
                    self._send(method, 200)
                elif path == "/hold":
                    time.sleep(HOLD)
                    self._send(method, 200)
                else:
                    self._send(method, 404)

            def _send(self, method: str, status: int, location: str | None = None) -> None:
                body = f"status {status}\n".encode()
                self._answer_now()
                self.send_response(status)
                self.send_header("Content-Type", "text/plain")
                self.send_header("Content-Length", str(len(body)))
                if location:
                    self.send_header("Location", location)
                self.end_headers()
                if method == "GET":
                    self.wfile.write(body)

            def _big(self, method: str) -> None:
                self._answer_now()
                self.send_response(405 if method == "HEAD" else 200)
                self.send_header("Content-Length", str(BIG_BODY if method == "GET" else 0))
                self.end_headers()
                if method == "GET":
                    chunk = b"\0" * 65536
                    try:
                        for _ in range(BIG_BODY // len(chunk)):
                            self.wfile.write(chunk)
                            site.big_bytes_sent += len(chunk)
                    finally:
                        site.big_done.set()

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.server.server_address[1]
        self.base = f"http://127.0.0.1:{self.port}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def requests_for(self, path: str) -> list[str]:
        """The methods of the requests the site answered on ``path``, in order."""
        with self._lock:
            return [seen.method for seen in self.seen if seen.path == path]

    def on_host(self, host: str) -> list[Seen]:
        """The requests of one host, by start time."""
        with self._lock:
            return sorted((seen for seen in self.seen if seen.host == host), key=lambda seen: seen.started)


@pytest.fixture
def site() -> Iterator[Site]:
    server = Site()
    server.thread.start()
    try:
        yield server
    finally:
        server.stopping.set()  # wakes the handlers still sleeping on /slow
        server.server.shutdown()
        server.server.server_close()
        server.thread.join(timeout=5)


class Loopback(httpx.AsyncBaseTransport):
    """Sends every request to the local site whatever its host name (kept in the Host header): many hosts."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.inner = httpx.AsyncHTTPTransport()

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        local = httpx.Request(
            request.method,
            request.url.copy_with(scheme="http", host="127.0.0.1", port=self.port),
            headers=request.headers,
            stream=request.stream,
            extensions=request.extensions,
        )
        return await self.inner.handle_async_request(local)

    async def aclose(self) -> None:
        await self.inner.aclose()


def refused_url() -> str:
    """An address on 127.0.0.1 where nothing listens."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    return f"http://127.0.0.1:{port}/gone"


def check(url: str, timeout: float = CLIENT_TIMEOUT, deadline: float | None = None) -> LinkCheck:
    async def run() -> LinkCheck:
        async with httpx.AsyncClient(timeout=timeout) as client:
            return await check_url(client, url, deadline=deadline)

    return asyncio.run(run())


def test_the_ok_rule() -> None:
    assert [is_alive(s) for s in (200, 204, 301, 304, 401, 403, 429)] == [True] * 7
    assert [is_alive(s) for s in (400, 404, 405, 410, 451, 500, 502, 503)] == [False] * 8


def test_error_kinds() -> None:
    assert describe_error(httpx.ConnectError("[Errno -2] Name or service not known")) == (
        "dns: [Errno -2] Name or service not known"
    )
    assert describe_error(httpx.ConnectError("All connection attempts failed")).startswith("connection:")
    assert describe_error(httpx.ReadTimeout("")) == "timeout: ReadTimeout"
    assert describe_error(TimeoutError()) == "timeout: TimeoutError"
    assert describe_error(RuntimeError("odd")) == "error: RuntimeError: odd"
    assert len(describe_error(httpx.RemoteProtocolError("x" * 1000))) == 300


def test_each_answer_is_recognised(site: Site) -> None:
    base = site.base
    alive = check(f"{base}/ok")
    assert (alive.http_status, alive.final_url, alive.redirects, alive.ok, alive.error, alive.method) == (
        200,
        f"{base}/ok",
        (),
        True,
        None,
        "HEAD",
    )
    assert alive.elapsed_ms >= 0 and alive.checked_at.tzinfo is not None
    assert site.requests_for("/ok") == ["HEAD"], "a HEAD answer is enough"

    moved = check(f"{base}/moved")
    assert (moved.http_status, moved.final_url, moved.ok, moved.error) == (200, f"{base}/ok", True, None)
    assert moved.redirects == (Redirect(301, f"{base}/ok"),)
    assert json.loads(moved.redirects_json()) == [{"status": 301, "location": f"{base}/ok"}]

    chain = check(f"{base}/chain")
    assert chain.redirects == ((302, f"{base}/moved"), (301, f"{base}/ok")) and chain.ok

    missing = check(f"{base}/missing")
    assert (missing.http_status, missing.final_url, missing.ok, missing.error) == (404, f"{base}/missing", False, None)
    assert missing.method == "GET" and site.requests_for("/missing") == ["HEAD", "GET"], "broken is confirmed by GET"

    failing = check(f"{base}/error")
    assert (failing.http_status, failing.ok, failing.error) == (500, False, None)

    restricted = check(f"{base}/forbidden")
    assert (restricted.http_status, restricted.ok, restricted.method) == (403, True, "GET")

    no_head = check(f"{base}/no-head")
    assert (no_head.http_status, no_head.final_url, no_head.ok, no_head.method) == (200, f"{base}/no-head", True, "GET")
    assert site.requests_for("/no-head") == ["HEAD", "GET"]

    reset = check(f"{base}/reset-head")
    assert (reset.http_status, reset.ok, reset.error, reset.method) == (200, True, None, "GET")
    assert site.requests_for("/reset-head") == ["HEAD", "GET"]

    big = check(f"{base}/big")
    assert (big.http_status, big.ok) == (200, True)
    assert site.big_done.wait(10), "the server notices the closed connection on its next writes"
    assert site.big_bytes_sent < BIG_BODY, "the GET fallback reads no body"

    slow = check(f"{base}/slow")
    assert (slow.http_status, slow.final_url, slow.redirects, slow.ok, slow.method) == (None, None, (), False, None)
    assert slow.error is not None and slow.error.startswith("timeout:")
    bounded = check(f"{base}/slow", timeout=30, deadline=CLIENT_TIMEOUT)  # the deadline bounds a whole attempt
    assert (bounded.http_status, bounded.error) == (None, f"timeout: no answer within {CLIENT_TIMEOUT:g}s")

    refused = check(refused_url())
    assert refused.http_status is None and not refused.ok
    assert refused.error is not None and refused.error.startswith("connection:")

    tls = check(f"https://127.0.0.1:{site.port}/ok")  # a plain HTTP server where TLS is expected
    assert tls.http_status is None and not tls.ok and tls.error.startswith("tls:"), tls.error

    for invalid in ("not a url", "ftp://example.org/file", "javascript:alert(1)", ""):
        result = check(invalid)
        assert result.http_status is None and not result.ok and result.error.startswith("invalid_url:"), invalid


def test_check_urls_keeps_order_once_per_url_and_never_raises(site: Site) -> None:
    base = site.base
    urls = [f"{base}/loop", f"{base}/ok", "mailto:someone@example.org", f"{base}/ok", f"{base}/missing"]
    results = asyncio.run(check_urls(urls, per_host_delay=0, timeout=2))
    assert [r.url for r in results] == [f"{base}/loop", f"{base}/ok", "mailto:someone@example.org", f"{base}/missing"]
    loop, alive, mail, missing = results
    assert loop.http_status is None and loop.error.startswith("redirects:") and not loop.ok
    assert alive.ok and mail.error.startswith("invalid_url:") and missing.http_status == 404
    assert site.requests_for("/ok") == ["HEAD"], "a URL given twice is checked once"
    assert {seen.user_agent for seen in site.seen} == {USER_AGENT}


def test_concurrency_is_bounded(site: Site) -> None:
    urls = [f"http://site{i}.test/hold" for i in range(12)]  # 12 hosts: only the global limit applies
    results = asyncio.run(check_urls(urls, concurrency=3, per_host_delay=0, timeout=5, transport=Loopback(site.port)))
    assert all(r.ok and r.http_status == 200 for r in results)
    assert [r.final_url for r in results] == urls
    assert len(site.seen) == 12
    assert 1 < site.max_in_flight <= 3


def test_one_host_at_a_time(site: Site) -> None:
    urls = [f"http://{host}.test/hold?n={n}" for n in range(3) for host in ("alpha", "beta")]
    asyncio.run(check_urls(urls, concurrency=8, per_host_delay=0, timeout=5, transport=Loopback(site.port)))
    for host in ("alpha.test", "beta.test"):
        seen = site.on_host(host)
        assert len(seen) == 3
        for before, after in itertools.pairwise(seen):
            assert after.started >= before.answered, f"two requests to {host} overlap"
    assert site.max_in_flight == 2, "two hosts are checked side by side, each one request at a time"


def test_per_host_delay_between_two_checks(site: Site) -> None:
    delay = 0.2
    urls = [f"http://alpha.test/ok?n={n}" for n in range(3)]
    asyncio.run(check_urls(urls, concurrency=8, per_host_delay=delay, timeout=5, transport=Loopback(site.port)))
    seen = site.on_host("alpha.test")
    assert len(seen) == 3
    gaps = [after.started - before.answered for before, after in itertools.pairwise(seen)]
    assert all(gap >= delay * 0.95 for gap in gaps), gaps


# --- the asset ------------------------------------------------------------------------------------------------


def write_reuses(database: Path, rows: list[tuple[dt.date, str, dict]]) -> None:
    """Append (snapshot_date, reuse_id, payload) rows to raw.reuses, as the raw snapshot lands them."""
    with duckdb.connect(str(database)) as conn:
        conn.execute("CREATE SCHEMA IF NOT EXISTS raw")
        conn.execute(
            "CREATE TABLE IF NOT EXISTS raw.reuses (snapshot_date DATE, dataset_id VARCHAR, reuse_id VARCHAR, "
            "payload JSON)"
        )
        for snapshot_date, reuse_id, payload in rows:
            conn.execute(
                "INSERT INTO raw.reuses VALUES (?, 'ds-1', ?, ?::JSON)", [snapshot_date, reuse_id, json.dumps(payload)]
            )


def checks_table(database: Path) -> dict[tuple[dt.date, str], dict]:
    with duckdb.connect(str(database), read_only=True) as conn:
        cursor = conn.execute(f"SELECT * FROM {LINK_CHECKS_TABLE}")
        names = [column[0] for column in cursor.description]
        rows = [dict(zip(names, row, strict=True)) for row in cursor.fetchall()]
    table = {(row["check_date"], row["reuse_id"]): row for row in rows}
    assert len(table) == len(rows), "one row per check date and reuse"
    return table


def materialize(
    checker: ReuseLinkChecker, database: Path, day: dt.date | None, recheck: bool = False
) -> dict[str, object]:
    result = dg.materialize(
        [reuse_link_checks],
        resources={"warehouse": DuckDBResource(database=str(database)), "link_checker": checker},
        instance=dg.DagsterInstance.ephemeral(),
        tags=day_range_tags(["ds-1"], day) if day else None,
        run_config={"ops": {"raw__reuse_link_checks": {"config": {"recheck": recheck}}}},
    )
    assert result.success
    metadata = result.asset_materializations_for_node("raw__reuse_link_checks")[0].metadata
    return {name: value.value for name, value in metadata.items()}


def test_the_asset_is_declared_as_asked() -> None:
    asset = reuse_link_checks
    assert asset.key == LINK_CHECKS_KEY == dg.AssetKey(["raw", "reuse_link_checks"])
    spec = asset.specs_by_key[LINK_CHECKS_KEY]
    assert spec.group_name == "raw" and spec.description and set(spec.kinds) == {"python", "duckdb"}
    assert RAW_SNAPSHOT_KEY in asset.asset_deps[LINK_CHECKS_KEY]
    assert asset.op.pool == WAREHOUSE_POOL
    schema = spec.metadata["dagster/column_schema"]
    assert [column.name for column in schema.columns] == list(LINK_CHECKS_COLUMNS)


def test_the_asset_end_to_end(site: Site, tmp_path: Path) -> None:
    database = tmp_path / "w.duckdb"
    base = site.base
    earlier, latest = RUN_DATE - dt.timedelta(days=1), RUN_DATE
    write_reuses(
        database,
        [
            (earlier, "r-old", {"url": f"{base}/old-only"}),  # not in the latest snapshot: not checked
            (earlier, "r-ok", {"url": f"{base}/ok"}),
            (latest, "r-ok", {"url": f"{base}/ok"}),
            (latest, "r-twin", {"url": f"{base}/ok"}),  # same URL: one request, two rows
            (latest, "r-moved", {"url": f"{base}/moved"}),
            (latest, "r-missing", {"url": f"{base}/missing"}),
            (latest, "r-error", {"url": f"{base}/error"}),
            (latest, "r-slow", {"url": f"{base}/slow"}),
            (latest, "r-refused", {"url": refused_url()}),
            (latest, "r-invalid", {"url": "not a url"}),
            (latest, "r-no-url", {"title": "a reuse without an address"}),
        ],
    )
    checker = ReuseLinkChecker(concurrency=4, per_host_delay=0, timeout=CLIENT_TIMEOUT)

    metadata = materialize(checker, database, RUN_DATE)
    assert {
        k: metadata[k] for k in ("reuses", "urls", "checked", "skipped_already_checked", "broken", "no_answer")
    } == {
        "reuses": 8,
        "urls": 7,
        "checked": 7,
        "skipped_already_checked": 0,
        "broken": 5,
        "no_answer": 3,
    }
    assert metadata["rows_written"] == 8 and metadata["dagster/row_count"] == 8
    table = checks_table(database)
    assert {reuse for _, reuse in table} == {
        "r-ok",
        "r-twin",
        "r-moved",
        "r-missing",
        "r-error",
        "r-slow",
        "r-refused",
        "r-invalid",
    }
    assert {day for day, _ in table} == {RUN_DATE}
    moved = table[RUN_DATE, "r-moved"]
    assert (moved["http_status"], moved["final_url"], moved["ok"], moved["error"]) == (200, f"{base}/ok", True, None)
    assert json.loads(moved["redirects"]) == [{"status": 301, "location": f"{base}/ok"}]
    assert moved["checked_at"].tzinfo is not None and moved["elapsed_ms"] >= 0
    assert (table[RUN_DATE, "r-missing"]["http_status"], table[RUN_DATE, "r-missing"]["ok"]) == (404, False)
    assert (table[RUN_DATE, "r-error"]["http_status"], table[RUN_DATE, "r-error"]["ok"]) == (500, False)
    for reuse, kind in (("r-slow", "timeout"), ("r-refused", "connection"), ("r-invalid", "invalid_url")):
        row = table[RUN_DATE, reuse]
        assert row["http_status"] is None and row["ok"] is False and row["error"].startswith(f"{kind}:"), reuse
        assert json.loads(row["redirects"]) == []
    twin, alive = table[RUN_DATE, "r-twin"], table[RUN_DATE, "r-ok"]
    assert twin["ok"] and {k: v for k, v in twin.items() if k != "reuse_id"} == {
        k: v for k, v in alive.items() if k != "reuse_id"
    }
    assert site.requests_for("/ok").count("HEAD") == 2, "/ok once for two reuses, once after /moved"
    assert site.requests_for("/old-only") == []

    with duckdb.connect(str(database), read_only=True) as conn:
        comments = dict(
            conn.execute(
                "SELECT column_name, comment FROM duckdb_columns() "
                "WHERE schema_name = 'raw' AND table_name = 'reuse_link_checks'"
            ).fetchall()
        )
        table_comment = conn.execute(
            "SELECT comment FROM duckdb_tables() WHERE schema_name = 'raw' AND table_name = 'reuse_link_checks'"
        ).fetchone()[0]
    assert comments == {name: column.description for name, column in LINK_CHECKS_COLUMNS.items()}
    assert "several failed check days in a row" in table_comment

    # The same day again: nothing is requested, nothing is added.
    requests = len(site.seen)
    again = materialize(checker, database, RUN_DATE)
    assert (again["checked"], again["skipped_already_checked"], again["rows_written"]) == (0, 7, 0)
    assert len(site.seen) == requests and checks_table(database) == table

    # A new reuse of an already-checked URL gets that day's result; a new URL is checked.
    write_reuses(
        database,
        [(latest, "r-late", {"url": f"{base}/ok"}), (latest, "r-no-head", {"url": f"{base}/no-head"})],
    )
    late = materialize(checker, database, RUN_DATE)
    assert (late["checked"], late["rows_written"], late["dagster/row_count"]) == (1, 2, 10)
    table = checks_table(database)
    assert table[RUN_DATE, "r-late"]["checked_at"] == table[RUN_DATE, "r-ok"]["checked_at"]
    assert (table[RUN_DATE, "r-no-head"]["http_status"], table[RUN_DATE, "r-no-head"]["ok"]) == (200, True)
    assert site.requests_for("/ok").count("HEAD") == 2

    # recheck: the day's rows of the checked URLs are replaced, not duplicated.
    recheck = materialize(checker, database, RUN_DATE, recheck=True)
    assert (recheck["checked"], recheck["dagster/row_count"]) == (8, 10)
    rechecked = checks_table(database)
    assert rechecked.keys() == table.keys()
    assert all(rechecked[key]["checked_at"] > table[key]["checked_at"] for key in table)

    # A run without a date tag checks on today's date and keeps the history.
    today = materialize(checker, database, None)
    assert today["check_date"] == dt.date.today().isoformat() != RUN_DATE.isoformat()
    assert today["dagster/row_count"] == 20
