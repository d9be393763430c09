"""Partitions of the raw layer: daily dates x the dynamic set of followed datasets."""

from __future__ import annotations

import datetime as dt

import dagster as dg

DATASET_DIMENSION = "dataset"
DATE_DIMENSION = "date"
datasets_partitions = dg.DynamicPartitionsDefinition(name="datasets")


def dataset_date_partitions(start_date: dt.date) -> dg.MultiPartitionsDefinition:
    """(dataset, date) partitions; the date dimension runs from ``start_date`` to today included."""
    return dg.MultiPartitionsDefinition(
        {
            DATE_DIMENSION: dg.DailyPartitionsDefinition(start_date=start_date.isoformat(), end_offset=1),
            DATASET_DIMENSION: datasets_partitions,
        }
    )


RANGE_START_TAG = "dagster/asset_partition_range_start"
RANGE_END_TAG = "dagster/asset_partition_range_end"


def day_range_tags(dataset_keys: list[str], date: dt.date) -> dict[str, str]:
    """Run tags that select every dataset partition of one date: one run for the whole day."""
    day = date.isoformat()
    return {
        RANGE_START_TAG: str(dg.MultiPartitionKey({DATASET_DIMENSION: dataset_keys[0], DATE_DIMENSION: day})),
        RANGE_END_TAG: str(dg.MultiPartitionKey({DATASET_DIMENSION: dataset_keys[-1], DATE_DIMENSION: day})),
    }


def run_date(tags: dict[str, str]) -> dt.date | None:
    """The logical date of a run launched with ``day_range_tags``, or None."""
    start = tags.get(RANGE_START_TAG)
    if not start or "|" not in start:
        return None
    keys = dict(zip(sorted((DATASET_DIMENSION, DATE_DIMENSION)), start.split("|"), strict=True))  # Dagster's order
    return dt.date.fromisoformat(keys[DATE_DIMENSION])
