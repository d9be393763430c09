"""Checks of the raw snapshot, evaluated on a run's incoming rows before they replace anything in raw.*.

Hard checks (ERROR) reject the failing datasets' rows (they go to quarantine.*, raw keeps its previous
state) and block the models and the publication of the run. Soft checks (WARN) only report.
"""

import datetime as dt
from zoneinfo import ZoneInfo

import dagster as dg
import pandas as pd
from great_expectations import expectations as gxe

from usage_pipeline.checks.validation import Check, RunScope

REUSE_TYPES = ("api", "application", "idea", "news_article", "paper", "post", "visualization", "hardware")
COUNTERS = ("views", "downloads", "followers", "reuses", "discussions")
ISO_DATETIME = r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(?:\.\d+)?(?:Z|[+-]\d{2}:?\d{2})?$"
MONTH = r"^\d{4}-(?:0[1-9]|1[0-2])$"
JUMP_FACTOR = 10
CLOCK_SKEW = dt.timedelta(hours=1)  # a message stamped by the portal's clock a little ahead of ours is not "future"
JUMP_WINDOW_DAYS = 28

DATASET_SNAPSHOTS_VALID = "dataset_snapshots_valid"
RESOURCES_VALID = "resources_valid"
DISCUSSIONS_VALID = "discussions_valid"
REUSES_VALID = "reuses_valid"
MONTHLY_METRICS_VALID = "monthly_metrics_valid"
COUNTERS_NEVER_DECREASE = "counters_never_decrease"
NO_SUDDEN_JUMPS = "no_sudden_jumps"
DISCUSSION_COUNTS_AGREE = "discussion_counts_agree"
FOLLOWED_ENTRIES_RESOLVE = "followed_entries_resolve"
PORTAL_PARTS_FETCHED = "portal_parts_fetched"
SNAPSHOTS_FRESH = "snapshots_fresh"


def _not_future(column: str, scope: RunScope, *, date: bool = False) -> gxe.Expectation:
    """Not after the run's date, or not after now give or take the portal's clock (CLOCK_SKEW)."""
    bound = pd.Timestamp(scope.run_date) if date else pd.Timestamp(scope.now + CLOCK_SKEW)
    return gxe.ExpectColumnValuesToBeBetween(column=column, max_value=bound)


# Whether a row is about one of the run's datasets, computed in SQL: a value set of thousands of ids would be
# copied into every expectation result (and the check's metadata) by Great Expectations.
KNOWN_DATASET = "dataset_id in (select unnest($dataset_ids::VARCHAR[])) as known_dataset"


def _known_dataset(scope: RunScope) -> gxe.Expectation:
    return gxe.ExpectColumnValuesToBeInSet(column="known_dataset", value_set=[True])


def _dataset_snapshot_expectations(scope: RunScope) -> list[gxe.Expectation]:
    live = {"row_condition": "http_status==200", "condition_parser": "pandas"}
    return [
        gxe.ExpectColumnValuesToNotBeNull(column="dataset_id"),
        gxe.ExpectCompoundColumnsToBeUnique(column_list=["dataset_id", "snapshot_date"]),
        gxe.ExpectColumnValuesToBeInSet(column="http_status", value_set=[200, 404, 410]),
        _not_future("snapshot_date", scope, date=True),
        gxe.ExpectColumnPairValuesToBeEqual(column_A="payload_id", column_B="dataset_id", **live),
        *(gxe.ExpectColumnValuesToNotBeNull(column=counter, **live) for counter in COUNTERS),
        *(gxe.ExpectColumnValuesToBeBetween(column=counter, min_value=0) for counter in COUNTERS),
        gxe.ExpectColumnValuesToMatchRegex(column="created_at_text", regex=ISO_DATETIME),
        _not_future("created_at", scope),
    ]


def raw_checks(discussion_count_tolerance: int) -> list[Check]:
    """The raw snapshot's checks, hard then soft."""
    typed_counters = ", ".join(
        f"try_cast(payload ->> '$.metrics.{source}' as bigint) as {name}"
        for name, source in zip(
            COUNTERS, ("views", "resources_downloads", "followers", "reuses", "discussions"), strict=True
        )
    )
    return [
        Check(
            DATASET_SNAPSHOTS_VALID,
            "One snapshot per dataset and date, an allowed HTTP status, the dataset's own id in the payload, "
            "counters present, integer and >= 0, a well-formed creation date, nothing in the future.",
            f"""
            select dataset_id, snapshot_date, http_status, payload ->> '$.id' as payload_id, {typed_counters},
                payload ->> '$.created_at' as created_at_text,
                try_cast(payload ->> '$.created_at' as timestamptz) as created_at
            from incoming_dataset_snapshots
            """,
            _dataset_snapshot_expectations,
            raw_table="dataset_snapshots",
        ),
        Check(
            RESOURCES_VALID,
            "Every resource of a live dataset has an id, appears once, and its download counter is >= 0.",
            """
            with resources as (
                select dataset_id, snapshot_date, unnest(payload -> '$.resources[*]') as resource
                from incoming_dataset_snapshots
                where http_status = 200
            )
            select dataset_id, snapshot_date, resource ->> '$.id' as resource_id,
                coalesce(try_cast(resource ->> '$.metrics.views' as bigint), 0) as downloads
            from resources
            """,
            lambda scope: [
                gxe.ExpectColumnValuesToNotBeNull(column="resource_id"),
                gxe.ExpectCompoundColumnsToBeUnique(column_list=["resource_id", "dataset_id", "snapshot_date"]),
                gxe.ExpectColumnValuesToBeBetween(column="downloads", min_value=0),
            ],
            raw_table="dataset_snapshots",
        ),
        Check(
            DISCUSSIONS_VALID,
            "Every discussion has an id, appears once per dataset and date, is about a followed dataset (its "
            "subject), has at least one message, and well-formed dates that are not in the future.",
            f"""
            select dataset_id, snapshot_date, discussion_id, payload ->> '$.subject.id' as subject_id,
                payload ->> '$.created' as created_text,
                try_cast(payload ->> '$.created' as timestamptz) as created_at,
                json_array_length(payload -> '$.discussion') as n_messages,
                (select max(try_cast(m ->> '$.posted_on' as timestamptz))
                    from unnest(payload -> '$.discussion[*]') as t(m)) as last_message_at
                , {KNOWN_DATASET}
            from incoming_discussions
            """,
            lambda scope: [
                gxe.ExpectColumnValuesToNotBeNull(column="discussion_id"),
                gxe.ExpectCompoundColumnsToBeUnique(column_list=["discussion_id", "dataset_id", "snapshot_date"]),
                _known_dataset(scope),
                gxe.ExpectColumnPairValuesToBeEqual(column_A="subject_id", column_B="dataset_id"),
                gxe.ExpectColumnValuesToMatchRegex(column="created_text", regex=ISO_DATETIME),
                gxe.ExpectColumnValuesToBeBetween(column="n_messages", min_value=1),
                _not_future("created_at", scope),
                _not_future("last_message_at", scope),
            ],
            raw_table="discussions",
        ),
        Check(
            REUSES_VALID,
            "Every reuse has an id, appears once per dataset and date, has an allowed type, references the "
            "followed dataset it was listed on, and a well-formed creation date not in the future.",
            f"""
            select dataset_id, snapshot_date, reuse_id, payload ->> '$.type' as type,
                coalesce(list_contains(json_extract_string(payload, '$.datasets[*].id'), dataset_id), false)
                    as references_dataset,
                payload ->> '$.created_at' as created_text,
                try_cast(payload ->> '$.created_at' as timestamptz) as created_at
                , {KNOWN_DATASET}
            from incoming_reuses
            """,
            lambda scope: [
                gxe.ExpectColumnValuesToNotBeNull(column="reuse_id"),
                gxe.ExpectCompoundColumnsToBeUnique(column_list=["reuse_id", "dataset_id", "snapshot_date"]),
                gxe.ExpectColumnValuesToBeInSet(column="type", value_set=list(REUSE_TYPES)),
                _known_dataset(scope),
                gxe.ExpectColumnValuesToBeInSet(column="references_dataset", value_set=[True]),
                gxe.ExpectColumnValuesToMatchRegex(column="created_text", regex=ISO_DATETIME),
                _not_future("created_at", scope),
            ],
            raw_table="reuses",
        ),
        Check(
            MONTHLY_METRICS_VALID,
            "Monthly metrics rows: months YYYY-MM not after the run's month, one row per dataset, month and "
            "organization, visits and downloads >= 0 (null means 0), about a followed dataset.",
            f"""
            select dataset_id, snapshot_date, metric_month,
                try_strptime(metric_month || '-01', '%Y-%m-%d') as month_start,
                payload ->> '$.organization_id' as organization_id,
                try_cast(payload ->> '$.monthly_visit' as bigint) as visits,
                try_cast(payload ->> '$.monthly_download_resource' as bigint) as downloads
                , {KNOWN_DATASET}
            from incoming_metrics_monthly
            """,
            lambda scope: [
                gxe.ExpectColumnValuesToMatchRegex(column="metric_month", regex=MONTH),
                gxe.ExpectColumnValuesToBeBetween(
                    column="month_start", max_value=pd.Timestamp(scope.run_date.replace(day=1))
                ),
                gxe.ExpectCompoundColumnsToBeUnique(
                    column_list=["dataset_id", "snapshot_date", "metric_month", "organization_id"]
                ),
                gxe.ExpectColumnValuesToBeBetween(column="visits", min_value=0),
                gxe.ExpectColumnValuesToBeBetween(column="downloads", min_value=0),
                _known_dataset(scope),
            ],
            raw_table="metrics_monthly",
        ),
        Check(
            COUNTERS_NEVER_DECREASE,
            "A cumulative counter (views, downloads, followers) below the dataset's previous snapshot: the "
            "portal may have reset it. The snapshot is kept; deltas will be negative that day.",
            f"""
            with incoming as (
                select dataset_id, snapshot_date, {typed_counters}
                from incoming_dataset_snapshots where http_status = 200
            ),
            previous as (
                select dataset_id, {typed_counters}
                from raw.dataset_snapshots
                where http_status = 200 and snapshot_date < $run_date
                qualify row_number() over (partition by dataset_id order by snapshot_date desc) = 1
            )
            select incoming.dataset_id, counter, current, previous
            from incoming join previous using (dataset_id),
            lateral (values ('views', incoming.views, previous.views),
                            ('downloads', incoming.downloads, previous.downloads),
                            ('followers', incoming.followers, previous.followers)) as t(counter, current, previous)
            """,
            lambda scope: [
                gxe.ExpectColumnPairValuesAToBeGreaterThanB(
                    column_A="current", column_B="previous", or_equal=True, ignore_row_if="either_value_is_missing"
                )
            ],
            severity=dg.AssetCheckSeverity.WARN,
        ),
        Check(
            NO_SUDDEN_JUMPS,
            f"Views or downloads per day since the previous snapshot above {JUMP_FACTOR} times the dataset's "
            f"median daily growth over the previous {JUMP_WINDOW_DAYS} days (a bot, a link in the news, or an error).",
            f"""
            with snapshots as (
                select dataset_id, snapshot_date, {typed_counters}
                from raw.dataset_snapshots
                where http_status = 200 and snapshot_date < $run_date
                union all
                select dataset_id, snapshot_date, {typed_counters}
                from incoming_dataset_snapshots where http_status = 200
            ),
            daily as (
                select dataset_id, snapshot_date, counter, (value - lag(value) over w)
                    / nullif(snapshot_date - lag(snapshot_date) over w, 0) as per_day
                from snapshots, lateral (values ('views', views), ('downloads', downloads)) as t(counter, value)
                window w as (partition by dataset_id, counter order by snapshot_date)
            ),
            baseline as (
                select dataset_id, counter, median(per_day) as median_per_day
                from daily
                where snapshot_date < $run_date and snapshot_date >= $run_date - {JUMP_WINDOW_DAYS}
                group by all
            )
            select daily.dataset_id, daily.counter, daily.per_day, baseline.median_per_day,
                daily.per_day / nullif(baseline.median_per_day, 0) as ratio
            from daily join baseline using (dataset_id, counter)
            where daily.snapshot_date = $run_date
            """,
            lambda scope: [gxe.ExpectColumnValuesToBeBetween(column="ratio", max_value=JUMP_FACTOR)],
            severity=dg.AssetCheckSeverity.WARN,
        ),
        Check(
            DISCUSSION_COUNTS_AGREE,
            f"The dataset's discussions counter and the discussions fetched differ by more than "
            f"{discussion_count_tolerance} (the counter is recomputed asynchronously, or a page went missing).",
            """
            select snapshots.dataset_id,
                try_cast(snapshots.payload ->> '$.metrics.discussions' as bigint) as counter,
                count(discussions.discussion_id) as fetched,
                abs(counter - fetched) as difference
            from incoming_dataset_snapshots as snapshots
            left join incoming_discussions as discussions using (dataset_id, snapshot_date)
            where snapshots.http_status = 200
            group by snapshots.dataset_id, snapshots.payload
            """,
            lambda scope: [
                gxe.ExpectColumnValuesToBeBetween(column="difference", max_value=discussion_count_tolerance)
            ],
            severity=dg.AssetCheckSeverity.WARN,
        ),
        Check(
            FOLLOWED_ENTRIES_RESOLVE,
            "Every organization and dataset named in USAGE_ORGANIZATIONS and USAGE_DATASETS still answers under "
            "that id or slug. One that answers 404/410 is recorded (reporting.followed_entries) and, when the id "
            "it resolved to before still answers, followed by that id; the other datasets are snapshotted anyway.",
            "select kind, configured_as, resolved_id, http_status, status, detail from incoming_followed_entries",
            lambda scope: [gxe.ExpectColumnValuesToBeInSet(column="status", value_set=["active"])],
            severity=dg.AssetCheckSeverity.WARN,
            dataset_column="configured_as",
        ),
        Check(
            PORTAL_PARTS_FETCHED,
            "Every part of the portal answered (a dataset, a batch of discussions, a dataset's reuses, the metrics "
            "API...). A part that failed after every retry keeps its previous rows and is fetched again next run.",
            "select subject, part, url, http_status, error from incoming_fetch_failures",
            lambda scope: [gxe.ExpectTableRowCountToEqual(value=0)],
            severity=dg.AssetCheckSeverity.WARN,
            dataset_column="subject",
        ),
    ]


def freshness_check(expected_by_hour: int, timezone: str) -> Check:
    """Followed, live datasets with no snapshot for ``$run_date`` (the caller runs it once the hour has passed)."""
    return Check(
        SNAPSHOTS_FRESH,
        f"Every followed dataset that is not gone has a snapshot for today after {expected_by_hour}:00 "
        f"({timezone}): otherwise the daily run did not happen or missed it.",
        """
        with followed as (select unnest($dataset_ids::VARCHAR[]) as dataset_id),
        latest as (
            select dataset_id, max(snapshot_date) as last_snapshot_date,
                arg_max(http_status, snapshot_date) as last_status
            from raw.dataset_snapshots group by dataset_id
        )
        select followed.dataset_id, latest.last_snapshot_date
        from followed left join latest using (dataset_id)
        where coalesce(latest.last_status, 200) = 200
            and coalesce(latest.last_snapshot_date, date '1970-01-01') < $run_date
        """,
        lambda scope: [gxe.ExpectTableRowCountToEqual(value=0)],
        severity=dg.AssetCheckSeverity.WARN,
    )


def local_now(timezone: str) -> dt.datetime:
    """The time where the producer is."""
    return dt.datetime.now(ZoneInfo(timezone))
