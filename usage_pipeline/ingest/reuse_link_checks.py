"""Reuse link health: do the reuses (apps, visualisations, articles) referenced on the datasets still live?

Every day the `raw/reuse_link_checks` asset requests the own address of each reuse of the latest snapshot
(``payload ->> '$.url'`` in raw.reuses) and appends the answer to ``raw.reuse_link_checks``.

Rules:

* **HEAD first, GET to confirm.** A URL is asked with HEAD (redirects followed and recorded). When HEAD is
  refused or fails — any status ≥ 400 except 401 and 429 (so 403, 405, 501 and also 404, 500: some servers
  only route GET), or the connection is reset — it is asked again with a streamed GET that reads no body. So a
  "broken" verdict always rests on a GET. A timeout, a DNS, connection or TLS failure is not retried.
* **Alive** (``ok``): the final status is 2xx or 3xx (a redirect chain ending in 2xx is ok; a 3xx that is not
  followed, like 304, is an answer too), or 401/403 (the site answers, behind a login or a bot filter) or 429
  (the site answers, rate-limited). Anything else, or no answer at all, is not ok. One failed check is no proof:
  the reporting flags a reuse after several failed check days in a row.
* **Polite.** At most ``concurrency`` checks in flight; the checks of one host (the host of the reuse's URL)
  run one after the other, ``per_host_delay`` seconds apart (from the end of one to the start of the next).
  The requests of one check (HEAD, GET, redirects) follow each other without pause, as a browser's would.
* **Never raises for a reuser's site**: every failure becomes a row with an ``error`` and ``ok = false``.
* **At most one check a day per URL.** URLs already checked on the run's date are skipped (unless the run's
  config asks ``recheck``: their rows of that date are then replaced); a reuse whose URL was checked earlier
  that day for another reuse gets that result. A URL shared by several reuses is requested once.
"""

import asyncio
import datetime as dt
import itertools
import json
import ssl
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import NamedTuple

import dagster as dg
import duckdb
import httpx
import polars as pl
from dagster_duckdb import DuckDBResource

from usage_pipeline.ingest.assets import RAW_SNAPSHOT_KEY, WAREHOUSE_POOL
from usage_pipeline.ingest.partitions import run_date
from usage_pipeline.portal.client import USER_AGENT
from usage_pipeline.warehouse import Column, create_table, registered, table_schema, transaction

LINK_CHECKS_KEY = dg.AssetKey(["raw", "reuse_link_checks"])
LINK_CHECKS_TABLE = "raw.reuse_link_checks"
MAX_REDIRECTS = 10
ALIVE_ERROR_STATUSES = frozenset({401, 403, 429})  # the site answers, but restricted or rate-limited
NO_GET_AFTER_HEAD = frozenset({401, 429})  # a GET would not tell more (and 429 asks us to slow down)
MAX_ERROR_TEXT = 300
ACCEPT = "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8"

LINK_CHECKS_DESCRIPTION = (
    "One row per reuse, URL and check date: whether the reuse's own address (payload ->> '$.url' of the latest "
    "snapshot in raw.reuses) answered when checked that day. Appended daily, earlier days are kept (the history); "
    "running a check date again replaces that date's rows of the URLs it checks again. A URL is requested at "
    "most once a day, first with HEAD, then with a streamed GET (no body read) when HEAD is refused or fails; "
    "redirects are followed and recorded; a URL shared by several reuses is requested once and its result "
    "written for each. ok = final status 2xx/3xx, or 401/403/429 (alive but restricted or rate-limited); no "
    "answer (timeout, DNS, connection, TLS) leaves http_status null and sets error. One failed check is no proof "
    "of a dead site (maintenance, a hiccup): call a reuse broken after several failed check days in a row."
)
LINK_CHECKS_COLUMNS = {
    "check_date": Column("DATE", "The run's logical date: the day of the check (at most one check a day per URL)."),
    "reuse_id": Column("VARCHAR", "data.gouv.fr reuse id."),
    "url": Column("VARCHAR", "The reuse's own address as the portal gives it (payload ->> '$.url' in raw.reuses)."),
    "checked_at": Column("TIMESTAMP WITH TIME ZONE", "When the check started."),
    "http_status": Column(
        "INTEGER", "The final HTTP status, after redirects (the GET's when HEAD was refused); null: no answer."
    ),
    "final_url": Column("VARCHAR", "The address that gave the final answer, after redirects; null: no answer."),
    "redirects": Column(
        "JSON",
        'The redirects followed, in order: [{"status": 301, "location": "https://..."}] (absolute locations); '
        "[] when none or when there was no answer.",
    ),
    "ok": Column(
        "BOOLEAN",
        "The reuse looks alive: final status 2xx or 3xx, or 401/403 (behind a login or a bot filter) or 429 "
        "(rate-limited). False for any other status (404, 410, 5xx...) and when there was no answer.",
    ),
    "error": Column(
        "VARCHAR",
        "Why there was no answer, '<kind>: <detail>' with kind timeout, dns, tls, connection, protocol, "
        f"redirects (more than {MAX_REDIRECTS}), invalid_url or error; null when an HTTP status came back.",
    ),
    "elapsed_ms": Column("INTEGER", "Milliseconds the check took (HEAD, then GET if needed, redirects included)."),
}

_LATEST_REUSES = """
select distinct reuse_id, trim(payload ->> '$.url') as url
from raw.reuses
where snapshot_date = (select max(snapshot_date) from raw.reuses)
"""


class Redirect(NamedTuple):
    """One redirect followed: its status and the absolute address it pointed to."""

    status: int
    location: str


@dataclass(frozen=True)
class LinkCheck:
    """The outcome of checking one URL."""

    url: str
    checked_at: dt.datetime
    http_status: int | None
    final_url: str | None
    redirects: tuple[Redirect, ...]
    ok: bool
    error: str | None
    elapsed_ms: int
    method: str | None = None  # the method of the final answer: HEAD, or GET when HEAD was refused

    def redirects_json(self) -> str:
        """The redirect chain as the JSON stored in raw.reuse_link_checks."""
        return json.dumps([{"status": r.status, "location": r.location} for r in self.redirects])


def is_alive(status: int) -> bool:
    """The rule for ``ok``: 2xx/3xx, or 401/403/429 (the site answers, restricted or rate-limited)."""
    return 200 <= status < 400 or status in ALIVE_ERROR_STATUSES


def describe_error(error: BaseException) -> str:
    """'<kind>: <detail>' for a failed request (kinds: timeout, dns, tls, connection, protocol, redirects, ...)."""
    detail = str(error) or type(error).__name__
    causes = []
    cause: BaseException | None = error
    while cause is not None and len(causes) < 10:
        causes.append(cause)
        cause = cause.__cause__ or cause.__context__
    text = " ".join(str(c) for c in causes).lower()
    if isinstance(error, httpx.TimeoutException | TimeoutError):
        kind = "timeout"
    elif isinstance(error, httpx.TooManyRedirects):
        kind = "redirects"
    elif isinstance(error, httpx.InvalidURL | httpx.UnsupportedProtocol):
        kind = "invalid_url"
    elif any(isinstance(c, ssl.SSLError) for c in causes) or "[ssl" in text or "certificate verify" in text:
        kind = "tls"
    elif any(
        marker in text
        for marker in ("name or service not known", "nodename nor servname", "name resolution", "getaddrinfo")
    ):
        kind = "dns"
    elif isinstance(error, httpx.ConnectError | httpx.NetworkError):
        kind = "connection"
    elif isinstance(error, httpx.ProtocolError):
        kind = "protocol"
    else:
        kind = "error"
        detail = f"{type(error).__name__}: {detail}"
    return f"{kind}: {detail}"[:MAX_ERROR_TEXT]


def _failure(error: Exception, deadline: float | None) -> str:
    if type(error) is TimeoutError and deadline is not None:  # the attempt's deadline, not one of httpx's timeouts
        return f"timeout: no answer within {deadline:g}s"
    return describe_error(error)


def _validate(url: str) -> str | None:
    """Why ``url`` cannot be requested, or None."""
    try:
        parsed = httpx.URL(url)
    except (httpx.InvalidURL, ValueError, TypeError) as error:
        return f"invalid_url: {error}"[:MAX_ERROR_TEXT]
    if parsed.scheme not in ("http", "https") or not parsed.host:
        return f"invalid_url: not an http(s) address: {url!r}"[:MAX_ERROR_TEXT]
    return None


def _chain(response: httpx.Response) -> tuple[Redirect, ...]:
    """The redirects that led to ``response``: (status, absolute next address) per hop."""
    hops = [*response.history, response]
    return tuple(Redirect(hop.status_code, str(nxt.request.url)) for hop, nxt in itertools.pairwise(hops))


async def _attempt(
    client: httpx.AsyncClient, method: str, url: str, deadline: float | None
) -> tuple[int, str, tuple[Redirect, ...]]:
    """One request (redirects followed), reading no body: (final status, final URL, redirects)."""
    async with asyncio.timeout(deadline), client.stream(method, url, follow_redirects=True) as response:
        return response.status_code, str(response.url), _chain(response)


async def check_url(client: httpx.AsyncClient, url: str, *, deadline: float | None = None) -> LinkCheck:
    """Check one URL: HEAD, then a streamed GET when HEAD is refused or fails; never raises for the site.

    ``deadline`` bounds each attempt (HEAD, GET), redirects included, in seconds; None leaves only the
    client's timeouts.
    """
    checked_at = dt.datetime.now(dt.UTC)
    started = time.perf_counter()

    def done(
        status: int | None, final_url: str | None, redirects: tuple[Redirect, ...], error: str | None, method: str
    ) -> LinkCheck:
        return LinkCheck(
            url=url,
            checked_at=checked_at,
            http_status=status,
            final_url=final_url,
            redirects=redirects,
            ok=status is not None and is_alive(status),
            error=error,
            elapsed_ms=round((time.perf_counter() - started) * 1000),
            method=method if status is not None else None,
        )

    invalid = _validate(url)
    if invalid:
        return done(None, None, (), invalid, "HEAD")
    try:
        status, final_url, redirects = await _attempt(client, "HEAD", url, deadline)
        if status < 400 or status in NO_GET_AFTER_HEAD:
            return done(status, final_url, redirects, None, "HEAD")
    except (httpx.ReadError, httpx.RemoteProtocolError, httpx.WriteError):
        pass  # reset or dropped on HEAD: some servers only speak GET
    except Exception as error:  # a reuser's site must never fail the run
        return done(None, None, (), _failure(error, deadline), "HEAD")
    try:
        status, final_url, redirects = await _attempt(client, "GET", url, deadline)
    except Exception as error:
        return done(None, None, (), _failure(error, deadline), "GET")
    return done(status, final_url, redirects, None, "GET")


@dataclass
class _Host:
    """The checks of one host: one at a time, ``delay`` seconds apart."""

    lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    free_at: float = float("-inf")


async def check_urls(
    urls: Iterable[str],
    *,
    concurrency: int = 8,
    per_host_delay: float = 1.0,
    timeout: float = 15.0,
    user_agent: str = USER_AGENT,
    transport: httpx.AsyncBaseTransport | None = None,
    on_result: Callable[[LinkCheck], None] | None = None,
) -> list[LinkCheck]:
    """Check each distinct URL once (first-seen order kept); never raises for a site.

    At most ``concurrency`` checks in flight; the checks of one host run one after the other with
    ``per_host_delay`` seconds between the end of one and the start of the next. ``timeout`` applies to each
    network operation and to each attempt (HEAD or GET, redirects included). ``on_result`` sees each check as
    it completes (progress logs).
    """
    distinct = list(dict.fromkeys(urls))
    slots = asyncio.Semaphore(max(1, concurrency))
    hosts: dict[str, _Host] = {}
    loop = asyncio.get_running_loop()

    async def one(client: httpx.AsyncClient, url: str) -> LinkCheck:
        if _validate(url) is not None:
            result = await check_url(client, url)  # answers at once, without a request
            if on_result is not None:
                on_result(result)
            return result
        host = hosts.setdefault(httpx.URL(url).host, _Host())
        async with host.lock:
            pause = host.free_at - loop.time()
            if pause > 0:
                await asyncio.sleep(pause)  # outside the slots: a waiting host does not hold a slot
            try:
                async with slots:
                    result = await check_url(client, url, deadline=timeout)
            finally:
                host.free_at = loop.time() + per_host_delay
        if on_result is not None:
            on_result(result)
        return result

    async with httpx.AsyncClient(
        timeout=httpx.Timeout(timeout),
        headers={"User-Agent": user_agent, "Accept": ACCEPT},
        limits=httpx.Limits(max_connections=max(1, concurrency), max_keepalive_connections=max(1, concurrency)),
        follow_redirects=True,
        max_redirects=MAX_REDIRECTS,
        transport=transport,
    ) as client:
        return list(await asyncio.gather(*(one(client, url) for url in distinct)))


class LinkChecksConfig(dg.Config):
    """Run options of the reuse link checks."""

    recheck: bool = False
    """Check again the URLs already checked on the run's date (their rows of that date are replaced)."""


def check_rows(check_date: dt.date, pairs: list[tuple[str, str]], checks: list[LinkCheck]) -> pl.DataFrame:
    """Rows of raw.reuse_link_checks: one per (reuse_id, url) pair whose URL was checked."""
    by_url = {check.url: check for check in checks}
    rows = [
        {
            "check_date": check_date,
            "reuse_id": reuse_id,
            "url": url,
            "checked_at": check.checked_at,
            "http_status": check.http_status,
            "final_url": check.final_url,
            "redirects": check.redirects_json(),
            "ok": check.ok,
            "error": check.error,
            "elapsed_ms": check.elapsed_ms,
        }
        for reuse_id, url in pairs
        if (check := by_url.get(url)) is not None
    ]
    schema = {
        "check_date": pl.Date,
        "reuse_id": pl.String,
        "url": pl.String,
        "checked_at": pl.Datetime("us", "UTC"),
        "http_status": pl.Int32,
        "final_url": pl.String,
        "redirects": pl.String,
        "ok": pl.Boolean,
        "error": pl.String,
        "elapsed_ms": pl.Int32,
    }
    return pl.DataFrame(rows, schema=schema)


def create_link_checks_table(conn: duckdb.DuckDBPyConnection) -> None:
    """Create raw.reuse_link_checks if missing, with its catalog comments."""
    conn.execute("CREATE SCHEMA IF NOT EXISTS raw")
    create_table(conn, LINK_CHECKS_TABLE, LINK_CHECKS_DESCRIPTION, LINK_CHECKS_COLUMNS)


def latest_reuse_urls(conn: duckdb.DuckDBPyConnection) -> list[tuple[str, str]]:
    """The distinct (reuse_id, url) of the latest snapshot in raw.reuses (reuses without a URL left out)."""
    exists = conn.execute(
        "SELECT count(*) FROM duckdb_tables() WHERE schema_name = 'raw' AND table_name = 'reuses'"
    ).fetchone()[0]
    if not exists:
        return []
    rows = conn.execute(_LATEST_REUSES).fetchall()
    return sorted((reuse_id, url) for reuse_id, url in rows if reuse_id and url)


def write_checks(conn: duckdb.DuckDBPyConnection, check_date: dt.date, rows: pl.DataFrame) -> int:
    """Replace ``check_date``'s rows of the checked URLs by ``rows``, in one transaction; returns rows written."""
    columns = ", ".join(f"{name}::{column.type} AS {name}" for name, column in LINK_CHECKS_COLUMNS.items())
    with transaction(conn), registered(conn, "link_check_rows", rows):
        conn.execute(
            f"DELETE FROM {LINK_CHECKS_TABLE} WHERE check_date = ? AND url IN (SELECT url FROM link_check_rows)",
            [check_date],
        )
        conn.execute(f"INSERT INTO {LINK_CHECKS_TABLE} SELECT {columns} FROM link_check_rows")
    return rows.height


def copy_checks_of_the_day(conn: duckdb.DuckDBPyConnection, check_date: dt.date, pairs: list[tuple[str, str]]) -> int:
    """Give (reuse_id, url) pairs without a row on ``check_date`` the result their URL already got that day."""
    if not pairs:
        return 0
    frame = pl.DataFrame(pairs, schema={"reuse_id": pl.String, "url": pl.String}, orient="row")
    columns = ", ".join(name for name in LINK_CHECKS_COLUMNS if name not in ("check_date", "reuse_id", "url"))
    with registered(conn, "unchecked_pairs", frame):
        return conn.execute(
            f"""
            INSERT INTO {LINK_CHECKS_TABLE}
            SELECT ?::DATE, pairs.reuse_id, pairs.url, done.* EXCLUDE (url)
            FROM unchecked_pairs AS pairs
            JOIN (
                SELECT url, {columns} FROM {LINK_CHECKS_TABLE} WHERE check_date = ?
                QUALIFY row_number() OVER (PARTITION BY url ORDER BY checked_at DESC, reuse_id) = 1
            ) AS done USING (url)
            WHERE NOT EXISTS (
                SELECT 1 FROM {LINK_CHECKS_TABLE} AS t
                WHERE t.check_date = ? AND t.reuse_id = pairs.reuse_id AND t.url = pairs.url
            )
            """,
            [check_date, check_date, check_date],
        ).fetchone()[0]


class ReuseLinkChecker(dg.ConfigurableResource):
    """How the reuses' own addresses are checked: at most ``concurrency`` at once, ``per_host_delay`` seconds apart
    on one host, ``timeout`` seconds per URL. ``enabled=False`` (USAGE_LINK_CHECKS=0: offline machines, tests)
    only creates the table."""

    enabled: bool = True
    concurrency: int = 8
    per_host_delay: float = 1.0
    timeout: float = 15.0


@dg.asset(
    key=LINK_CHECKS_KEY,
    deps=[RAW_SNAPSHOT_KEY],
    description=(
        "Whether each reuse referenced on the followed datasets (latest snapshot of raw.reuses) still answers "
        "at its own address: one check a day per URL (HEAD, GET when HEAD is refused, redirects followed), "
        f"a few at once and apart on one host (resource link_checker), appended to {LINK_CHECKS_TABLE}. A reuser's "
        "site failing is a row (ok = false, error), never a failed run."
    ),
    group_name="raw",
    pool=WAREHOUSE_POOL,
    kinds={"python", "duckdb"},
    metadata={
        "grain": "check_date, reuse_id, url",
        "dagster/column_schema": table_schema(LINK_CHECKS_COLUMNS),
    },
)
def reuse_link_checks(
    context: dg.AssetExecutionContext,
    config: LinkChecksConfig,
    warehouse: DuckDBResource,
    link_checker: ReuseLinkChecker,
) -> dg.MaterializeResult:
    """Check the URLs not checked yet on the run's date and append their results."""
    check_date = run_date(context.run.tags) or dt.date.today()
    with warehouse.get_connection() as conn:
        create_link_checks_table(conn)
        if not link_checker.enabled:
            context.log.info("reuse link checks are disabled (USAGE_LINK_CHECKS=0)")
            return dg.MaterializeResult(metadata={"enabled": False})
        pairs = latest_reuse_urls(conn)
        done_today = {
            row[0]
            for row in conn.execute(
                f"SELECT DISTINCT url FROM {LINK_CHECKS_TABLE} WHERE check_date = ?", [check_date]
            ).fetchall()
        }
    urls = sorted({url for _, url in pairs})
    to_check = urls if config.recheck else [url for url in urls if url not in done_today]
    context.log.info(
        f"{check_date}: {len(pairs)} reuses, {len(urls)} distinct URLs; {len(urls) - len(to_check)} already "
        f"checked that day, checking {len(to_check)}"
    )
    progress = {"done": 0, "broken": 0}
    step = max(1, min(50, len(to_check) // 10))

    def on_result(check: LinkCheck) -> None:
        progress["done"] += 1
        progress["broken"] += not check.ok
        if progress["done"] % step == 0 or progress["done"] == len(to_check):
            context.log.info(f"checked {progress['done']}/{len(to_check)} URLs, {progress['broken']} broken")

    checks = asyncio.run(
        check_urls(
            to_check,
            concurrency=link_checker.concurrency,
            per_host_delay=link_checker.per_host_delay,
            timeout=link_checker.timeout,
            user_agent=USER_AGENT,
            on_result=on_result,
        )
    )
    checked = set(to_check)
    rows = check_rows(check_date, [pair for pair in pairs if pair[1] in checked], checks)
    with warehouse.get_connection() as conn:
        written = write_checks(conn, check_date, rows)
        copied = copy_checks_of_the_day(conn, check_date, [pair for pair in pairs if pair[1] not in checked])
        total = conn.execute(f"SELECT count(*) FROM {LINK_CHECKS_TABLE}").fetchone()[0]
    broken = [check for check in checks if not check.ok]
    no_answer = sum(check.http_status is None for check in checks)
    if broken:
        context.log.warning(
            f"{len(broken)} of {len(checks)} URLs checked are broken ({no_answer} without an answer), e.g. "
            + "; ".join(f"{c.url} → {c.http_status or c.error}" for c in broken[:5])
        )
    context.log.info(f"{written} rows written for {len(checks)} URLs checked, {copied} copied from earlier checks")
    return dg.MaterializeResult(
        metadata={
            "dagster/row_count": total,
            "check_date": check_date.isoformat(),
            "reuses": len(pairs),
            "urls": len(urls),
            "checked": len(checks),
            "skipped_already_checked": len(urls) - len(to_check),
            "ok": len(checks) - len(broken),
            "broken": len(broken),
            "no_answer": no_answer,
            "rows_written": written + copied,
            "broken_sample": dg.MetadataValue.json(
                [{"url": c.url, "http_status": c.http_status, "error": c.error} for c in broken[:20]]
            ),
        }
    )
