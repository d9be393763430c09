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


def day_range_tags(dataset_keys: list[str], date: dt.date) -> dict[str, str]:
    """Run tags that select every dataset partition of one date: one run for the whole day."""
    day = date.isoformat()
    return {
        "dagster/asset_partition_range_start": str(
            dg.MultiPartitionKey({DATASET_DIMENSION: dataset_keys[0], DATE_DIMENSION: day})
        ),
        "dagster/asset_partition_range_end": str(
            dg.MultiPartitionKey({DATASET_DIMENSION: dataset_keys[-1], DATE_DIMENSION: day})
        ),
    }
