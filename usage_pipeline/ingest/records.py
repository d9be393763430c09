"""Pure functions: a crawl's answers -> the rows of the raw tables for one snapshot date."""

from __future__ import annotations

import datetime as dt
import json
from dataclasses import asdict
from typing import Any

import polars as pl

from usage_pipeline.ingest.crawl import Crawl

_SCHEMAS: dict[str, dict[str, pl.DataType]] = {
    "dataset_snapshots": {
        "snapshot_date": pl.Date(),
        "dataset_id": pl.String(),
        "http_status": pl.Int32(),
        "fetched_at": pl.Datetime("us", "UTC"),
        "payload": pl.String(),
    },
    "organizations": {"snapshot_date": pl.Date(), "organization_id": pl.String(), "payload": pl.String()},
    "discussions": {
        "snapshot_date": pl.Date(),
        "dataset_id": pl.String(),
        "discussion_id": pl.String(),
        "payload": pl.String(),
    },
    "reuses": {
        "snapshot_date": pl.Date(),
        "dataset_id": pl.String(),
        "reuse_id": pl.String(),
        "payload": pl.String(),
    },
    "metrics_monthly": {
        "snapshot_date": pl.Date(),
        "dataset_id": pl.String(),
        "metric_month": pl.String(),
        "payload": pl.String(),
    },
    "followed_entries": {
        "snapshot_date": pl.Date(),
        "kind": pl.String(),
        "configured_as": pl.String(),
        "resolved_id": pl.String(),
        "http_status": pl.Int32(),
        "status": pl.String(),
        "detail": pl.String(),
    },
    "fetch_failures": {
        "snapshot_date": pl.Date(),
        "subject": pl.String(),
        "part": pl.String(),
        "url": pl.String(),
        "http_status": pl.Int32(),
        "error": pl.String(),
    },
}
# The raw tables whose rows a failed part of the portal leaves as they were (a failed dataset: all of its own).
KEPT_BY_PART = {
    "dataset": ("dataset_snapshots", "discussions", "reuses", "metrics_monthly"),
    "discussions": ("discussions",),
    "reuses": ("reuses",),
    "metrics": ("metrics_monthly",),
}


def _json(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"))


def _frame(table: str, rows: list[dict[str, Any]]) -> pl.DataFrame:
    return pl.DataFrame(rows, schema=_SCHEMAS[table], orient="row") if rows else pl.DataFrame(schema=_SCHEMAS[table])


def raw_rows(result: Crawl, snapshot_date: dt.date, fetched_at: dt.datetime) -> dict[str, pl.DataFrame]:
    """Rows of every raw table for ``snapshot_date``, keyed by raw table name."""
    snapshots = [
        {
            "snapshot_date": snapshot_date,
            "dataset_id": dataset_id,
            "http_status": 200,
            "fetched_at": fetched_at,
            "payload": _json(dataset),
        }
        for dataset_id, dataset in result.datasets.items()
    ] + [
        {
            "snapshot_date": snapshot_date,
            "dataset_id": key,
            "http_status": status,
            "fetched_at": fetched_at,
            "payload": None,
        }
        for key, status in result.gone.items()
    ]
    return {
        "dataset_snapshots": _frame("dataset_snapshots", snapshots),
        "organizations": _frame(
            "organizations",
            [
                {"snapshot_date": snapshot_date, "organization_id": org_id, "payload": _json(organization)}
                for org_id, organization in result.organizations.items()
            ],
        ),
        "discussions": _frame(
            "discussions",
            [
                {
                    "snapshot_date": snapshot_date,
                    "dataset_id": key,
                    "discussion_id": item["id"],
                    "payload": _json(item),
                }
                for key, items in result.discussions.items()
                for item in items
            ],
        ),
        "reuses": _frame(
            "reuses",
            [
                {
                    "snapshot_date": snapshot_date,
                    "dataset_id": key,
                    "reuse_id": item["id"],
                    "payload": _json(item),
                }
                for key, items in result.reuses.items()
                for item in items
            ],
        ),
        "metrics_monthly": _frame(
            "metrics_monthly",
            [
                {
                    "snapshot_date": snapshot_date,
                    "dataset_id": key,
                    "metric_month": row["metric_month"],
                    "payload": _json(row),
                }
                for key, rows in result.metrics.items()
                for row in rows
            ],
        ),
        "followed_entries": _frame(
            "followed_entries", [{"snapshot_date": snapshot_date, **asdict(entry)} for entry in result.entries]
        ),
        "fetch_failures": _frame(
            "fetch_failures", [{"snapshot_date": snapshot_date, **asdict(failure)} for failure in result.failures]
        ),
    }


def kept_keys(result: Crawl) -> dict[str, set[str]]:
    """Per raw table, the datasets whose rows keep their previous state because their part could not be fetched."""
    kept: dict[str, set[str]] = {}
    for failure in result.failures:
        for table in KEPT_BY_PART.get(failure.part, ()):
            kept.setdefault(table, set()).add(failure.subject)
    return kept
