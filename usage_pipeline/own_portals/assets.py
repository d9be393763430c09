"""The own portals' raw layer: catalog counters, daily usage, reuses, comments and twins, for each portal."""

import asyncio
import datetime as dt
import json
from dataclasses import dataclass, field
from typing import Any

import dagster as dg
import duckdb
import polars as pl
from dagster_duckdb import DuckDBResource

from usage_pipeline.data_dir import DataDir
from usage_pipeline.ingest.assets import RAW_SNAPSHOT_KEY, WAREHOUSE_POOL
from usage_pipeline.ingest.partitions import run_date
from usage_pipeline.own_portals.ckan import CkanError, CkanPortal
from usage_pipeline.own_portals.config import OwnPortal, load_portals
from usage_pipeline.own_portals.ods import MonitoringSkipped, OdsPortal, OwnPortalError
from usage_pipeline.own_portals.twins import PortalDataset, find_twin
from usage_pipeline.portal.client import PortalClient
from usage_pipeline.portal.resource import UdataResource
from usage_pipeline.warehouse import Column, create_table, registered, transaction

OWN_PORTALS_KEY = dg.AssetKey(["raw", "own_portal_snapshot"])
OWN_PORTALS_REACHABLE = "own_portals_reachable"
MONITORING_HISTORY_DAYS = 365  # the first fetch goes as far back as the portal keeps (3 to 12 months)
MONITORING_OVERLAP_DAYS = 3  # later fetches take the last days again: the portal may still add late calls

_DATE = Column("DATE", "The run's logical date.")
_PORTAL = Column("VARCHAR", "The portal's name in portals.yaml.")
_PORTAL_DATASET = Column("VARCHAR", "The dataset's id on that portal.")


TABLES: dict[str, tuple[str, dict[str, Column]]] = {
    "raw.own_portal_datasets": (
        "One row per own-portal dataset and snapshot date: the catalog entry as the portal returned it "
        "(Opendatasoft counters download_count, api_call_count, reuse_count, popularity_score; CKAN tracking).",
        {
            "snapshot_date": _DATE,
            "portal": _PORTAL,
            "portal_dataset_id": _PORTAL_DATASET,
            "payload": Column("JSON", "The entry."),
        },
    ),
    "raw.own_portal_usage_daily": (
        "Opendatasoft monitoring (ods-api-monitoring) aggregated per dataset, day, kind of call and bot flag. "
        "Kept for good: the portal itself keeps only 3 to 12 months.",
        {
            "portal": _PORTAL,
            "portal_dataset_id": _PORTAL_DATASET,
            "day": Column("DATE", "The day of the calls."),
            "kind": Column("VARCHAR", "view, download or api (Opendatasoft's documented rule)."),
            "is_bot": Column("BOOLEAN", "Whether Opendatasoft flagged the calls as bot traffic."),
            "calls": Column("BIGINT", "Number of calls."),
            "fetched_on": _DATE,
        },
    ),
    "raw.own_portal_reuses": (
        "Reuses the own portal lists for a dataset (Opendatasoft reuses, CKAN showcases), per snapshot date.",
        {
            "snapshot_date": _DATE,
            "portal": _PORTAL,
            "portal_dataset_id": _PORTAL_DATASET,
            "payload": Column("JSON", "The reuse."),
        },
    ),
    "raw.own_portal_comments": (
        "Comments on own-portal datasets (CKAN with ckanext-comments), per snapshot date.",
        {
            "snapshot_date": _DATE,
            "portal": _PORTAL,
            "portal_dataset_id": _PORTAL_DATASET,
            "payload": Column("JSON", "The comment."),
        },
    ),
    "raw.dataset_twins": (
        "Each followed data.gouv.fr dataset linked to its twin on an own portal, per snapshot date.",
        {
            "snapshot_date": _DATE,
            "dataset_id": Column("VARCHAR", "data.gouv.fr dataset id."),
            "portal": _PORTAL,
            "portal_dataset_id": _PORTAL_DATASET,
            "method": Column("VARCHAR", "harvest_metadata, resource_url or title: how the twin was found."),
        },
    ),
    "raw.own_portal_status": (
        "What each fetch of an own portal managed, per snapshot date: a refused key or a missing permission "
        "is recorded here (and in the own_portals_reachable check), never as a failed run.",
        {
            "snapshot_date": _DATE,
            "portal": _PORTAL,
            "part": Column("VARCHAR", "catalog, monitoring, reuses or comments."),
            "ok": Column("BOOLEAN", "Whether that part was fetched."),
            "detail": Column("VARCHAR", "Rows fetched, or why not (never a key)."),
            "monitoring_starts": Column("DATE", "First day the portal still keeps monitoring for (retention)."),
        },
    ),
}


@dataclass
class PortalFetch:
    """One portal's answers for a run."""

    datasets: list[dict[str, Any]] = field(default_factory=list)
    usage: list[dict[str, Any]] = field(default_factory=list)
    usage_window: tuple[dt.date, dt.date] | None = None  # the days the monitoring fetch covered, both included
    reuses: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    comments: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    status: list[dict[str, Any]] = field(default_factory=list)


def create_own_portal_tables(conn: duckdb.DuckDBPyConnection) -> None:
    for table, (description, columns) in TABLES.items():
        create_table(conn, table, description, columns)


def catalog_entries(portal: OwnPortal, datasets: list[dict[str, Any]]) -> list[PortalDataset]:
    """What twins are matched on, from the portal's catalog (ODS `dataset_id`, CKAN `id` and `name`)."""
    if portal.kind == "ods":
        return [
            PortalDataset(str(d["dataset_id"]), (), str(d.get("title") or "")) for d in datasets if d.get("dataset_id")
        ]
    return [PortalDataset(str(d["id"]), (str(d.get("name") or ""),), str(d.get("title") or "")) for d in datasets]


def portal_dataset_id(portal: OwnPortal, dataset: dict[str, Any]) -> str:
    return str(dataset["dataset_id"] if portal.kind == "ods" else dataset["id"])


async def fetch_portal(
    portal: OwnPortal, client: PortalClient, day: dt.date, window: tuple[dt.date, dt.date]
) -> PortalFetch:
    """Everything one portal tells; a part that fails is recorded in ``status``, the others still come."""
    result = PortalFetch()

    def record(part: str, ok: bool, detail: str, starts: dt.date | None = None) -> None:
        result.status.append({"part": part, "ok": ok, "detail": detail, "monitoring_starts": starts})

    if portal.kind == "ods":
        ods = OdsPortal(client, portal.url, portal.api_key(), portal.name, public_domain=portal.domain)
        try:
            result.datasets = await ods.catalog()
            record("catalog", True, f"{len(result.datasets)} datasets")
        except OwnPortalError as error:
            record("catalog", False, str(error))
            return result
        try:
            monitoring_since, until = window
            usage, starts = await ods.monitoring(monitoring_since, until)
            result.usage = [u.__dict__ for u in usage]
            result.usage_window = window
            gap = f"; the portal keeps monitoring from {starts} only" if starts and starts > monitoring_since else ""
            record("monitoring", True, f"{len(usage)} rows from {monitoring_since}{gap}", starts)
        except (MonitoringSkipped, OwnPortalError) as error:
            record("monitoring", False, getattr(error, "reason", None) or str(error))
        try:
            result.reuses = await ods.reuses([portal_dataset_id(portal, d) for d in result.datasets])
            record("reuses", True, f"{sum(map(len, result.reuses.values()))} reuses")
        except OwnPortalError as error:
            record("reuses", False, str(error))
        return result
    ckan = CkanPortal(client, portal.url, portal.api_key(), portal.name)
    try:
        result.datasets = await ckan.datasets()
        record("catalog", True, f"{len(result.datasets)} datasets")
        result.reuses = await ckan.showcases()
        record("reuses", True, f"{sum(map(len, result.reuses.values()))} showcases")
        result.comments = await ckan.comments([d["id"] for d in result.datasets])
        record("comments", True, f"{sum(map(len, result.comments.values()))} comments")
    except CkanError as error:
        record("catalog" if not result.datasets else "reuses", False, str(error))
    return result


def _rows(day: dt.date, portal: str, items: dict[str, list[dict[str, Any]]]) -> list[dict[str, Any]]:
    return [
        {
            "snapshot_date": day,
            "portal": portal,
            "portal_dataset_id": key,
            "payload": json.dumps(item, ensure_ascii=False),
        }
        for key, values in items.items()
        for item in values
    ]


def write_portal(
    conn: duckdb.DuckDBPyConnection,
    portal: OwnPortal,
    day: dt.date,
    fetched: PortalFetch,
    live_datasets: list[dict[str, Any]],
) -> dict[str, int]:
    """Replace the portal's rows of ``day`` (and its monitoring days of ``usage_window``) in one transaction."""
    catalog = catalog_entries(portal, fetched.datasets)
    twins = [twin for dataset in live_datasets if (twin := find_twin(dataset, portal, catalog))] if catalog else []
    frames = {
        "raw.own_portal_datasets": _rows(
            day, portal.name, {portal_dataset_id(portal, d): [d] for d in fetched.datasets}
        ),
        "raw.own_portal_reuses": _rows(day, portal.name, fetched.reuses),
        "raw.own_portal_comments": _rows(day, portal.name, fetched.comments),
        "raw.dataset_twins": [{"snapshot_date": day, **twin.__dict__} for twin in twins],
        "raw.own_portal_status": [{"snapshot_date": day, "portal": portal.name, **s} for s in fetched.status],
    }
    counts = {}
    with transaction(conn):
        for table, rows in frames.items():
            if table != "raw.own_portal_status" and not fetched.datasets:
                continue  # the catalog failed: keep what the day had
            conn.execute(f"DELETE FROM {table} WHERE snapshot_date = ? AND portal = ?", [day, portal.name])
            counts[table] = _insert(conn, table, rows)
        if fetched.usage_window is not None:
            conn.execute(
                "DELETE FROM raw.own_portal_usage_daily WHERE portal = ? AND day BETWEEN ? AND ?",
                [portal.name, *fetched.usage_window],
            )
            rows = [{"portal": portal.name, **usage, "fetched_on": day} for usage in fetched.usage]
            counts["raw.own_portal_usage_daily"] = _insert(conn, "raw.own_portal_usage_daily", rows)
    return counts


def _insert(conn: duckdb.DuckDBPyConnection, table: str, rows: list[dict[str, Any]]) -> int:
    if not rows:
        return 0
    columns = list(TABLES[table][1])
    with registered(conn, "own_portal_rows", pl.DataFrame(rows).select(columns)):
        conn.execute(f"INSERT INTO {table} ({', '.join(columns)}) SELECT * FROM own_portal_rows")
    return len(rows)


@dg.asset(
    key=OWN_PORTALS_KEY,
    deps=[RAW_SNAPSHOT_KEY],
    description=(
        "The producer's own Opendatasoft or CKAN portals ($USAGE_DATA_DIR/portals.yaml; nothing to do without it): "
        "catalog counters, daily usage with the bot/human split (Opendatasoft monitoring, kept beyond the portal's "
        "own retention), reuses, comments, and each followed data.gouv.fr dataset linked to its twin there."
    ),
    group_name="raw",
    pool=WAREHOUSE_POOL,
    kinds={"python", "duckdb"},
    check_specs=[
        dg.AssetCheckSpec(
            OWN_PORTALS_REACHABLE, asset=OWN_PORTALS_KEY, description="Every part of every portal was fetched"
        )
    ],
)
def own_portal_snapshot(
    context: dg.AssetExecutionContext, udata: UdataResource, warehouse: DuckDBResource, data_dir: DataDir
):
    """Fetch every portal of portals.yaml and replace its rows of the run's date."""
    portals = load_portals(data_dir.portals_file)
    day = run_date(context.run.tags) or dt.date.today()
    with warehouse.get_connection() as conn:
        create_own_portal_tables(conn)
        live = [
            json.loads(row[0])
            for row in conn.execute(
                "SELECT payload FROM raw.dataset_snapshots WHERE http_status = 200 "
                "QUALIFY row_number() OVER (PARTITION BY dataset_id ORDER BY snapshot_date DESC) = 1"
            ).fetchall()
        ]
        last_days = dict(
            conn.execute("SELECT portal, max(day) FROM raw.own_portal_usage_daily GROUP BY portal").fetchall()
        )
    failures: list[str] = []
    for portal in portals:
        fetched = asyncio.run(_fetch(portal, udata, day, monitoring_window(day, last_days.get(portal.name))))
        with warehouse.get_connection() as conn:
            counts = write_portal(conn, portal, day, fetched, live)
        failures += [f"{portal.name} {s['part']}: {s['detail']}" for s in fetched.status if not s["ok"]]
        context.log.info(f"{portal.name} ({portal.kind}): {counts}; " + "; ".join(s["detail"] for s in fetched.status))
    for failure in failures:
        context.log.warning(failure)
    yield dg.MaterializeResult(metadata={"portals": len(portals), "problems": dg.MetadataValue.json(failures)})
    yield dg.AssetCheckResult(
        check_name=OWN_PORTALS_REACHABLE,
        passed=not failures,
        severity=dg.AssetCheckSeverity.WARN,
        metadata={"problems": dg.MetadataValue.json(failures)},
    )


def monitoring_window(day: dt.date, last_stored: dt.date | None) -> tuple[dt.date, dt.date]:
    """Days to fetch (and replace): from the last stored day minus an overlap, or a year back the first time,
    to the run's date — or to the last stored day when a past date is refreshed, so that no stored day is lost."""
    if last_stored is None:
        return day - dt.timedelta(days=MONITORING_HISTORY_DAYS), day
    return last_stored - dt.timedelta(days=MONITORING_OVERLAP_DAYS), max(day, last_stored)


async def _fetch(portal: OwnPortal, udata: UdataResource, day: dt.date, window: tuple[dt.date, dt.date]) -> PortalFetch:
    async with PortalClient(
        concurrency=udata.concurrency, timeout=udata.timeout, max_elapsed=udata.max_elapsed
    ) as client:
        return await fetch_portal(portal, client, day, window)
