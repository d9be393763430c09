"""Checks of the reporting tables, run after each model is rebuilt; a failure blocks the publication."""

import pandas as pd
from great_expectations import expectations as gxe

from usage_pipeline.checks.raw import COUNTERS, MONTH, REUSE_TYPES
from usage_pipeline.checks.validation import Check, RunScope
from usage_pipeline.insights.themes import THEMES
from usage_pipeline.models import SqlModel

SCHEMA_MATCHES = "schema_matches"
VALUES_VALID = "values_valid"
DISCUSSION_STATUSES = ("closed", "answered", "awaiting_producer")
DATASET_STATUSES = ("active", "archived", "gone")
ENTRY_STATUSES = ("active", "renamed", "gone", "unreachable")
NULLABLE_GRAIN = {"quality_results": {"dataset_id"}}  # the summary row of a check names no dataset


def _at_least_zero(*columns: str) -> list[gxe.Expectation]:
    return [gxe.ExpectColumnValuesToBeBetween(column=column, min_value=0) for column in columns]


def _not_after_today(column: str, scope: RunScope) -> gxe.Expectation:
    return gxe.ExpectColumnValuesToBeBetween(column=column, max_value=pd.Timestamp(scope.now.date()))


def _not_future(column: str, scope: RunScope) -> gxe.Expectation:
    return gxe.ExpectColumnValuesToBeBetween(column=column, max_value=pd.Timestamp(scope.now))


TABLE_EXPECTATIONS = {
    "dataset_usage_daily": lambda scope: [*_at_least_zero(*COUNTERS), _not_after_today("date", scope)],
    "resource_downloads_daily": lambda scope: [*_at_least_zero("downloads"), _not_after_today("date", scope)],
    "dataset_usage_monthly": lambda scope: [
        gxe.ExpectColumnValuesToMatchRegex(column="month", regex=MONTH),
        *_at_least_zero("visits", "downloads"),
    ],
    "discussions": lambda scope: [
        gxe.ExpectColumnValuesToBeInSet(column="status", value_set=list(DISCUSSION_STATUSES)),
        gxe.ExpectColumnValuesToBeInSet(column="theme", value_set=list(THEMES)),
        gxe.ExpectColumnValuesToNotBeNull(column="dataset_id"),
        gxe.ExpectColumnValuesToBeInSet(column="dataset_known", value_set=[True]),
        _not_future("created_at", scope),
        _not_future("last_message_at", scope),
    ],
    "reuses": lambda scope: [
        gxe.ExpectColumnValuesToBeInSet(column="type", value_set=list(REUSE_TYPES)),
        _not_future("created_at", scope),
    ],
    "datasets": lambda scope: [gxe.ExpectColumnValuesToBeInSet(column="status", value_set=list(DATASET_STATUSES))],
    "followed_entries": lambda scope: [
        gxe.ExpectColumnValuesToBeInSet(column="kind", value_set=["organization", "dataset"]),
        gxe.ExpectColumnValuesToBeInSet(column="status", value_set=list(ENTRY_STATUSES)),
    ],
    "discussions_awaiting_answer": lambda scope: [
        *_at_least_zero("waiting_days"),
        gxe.ExpectColumnValuesToBeInSet(column="theme", value_set=list(THEMES)),
    ],
    "response_times": lambda scope: [
        *_at_least_zero("discussions_opened", "answered", "open_backlog_at_month_end"),
        gxe.ExpectColumnValuesToBeBetween(column="answered_share", min_value=0, max_value=1),
        gxe.ExpectColumnValuesToBeBetween(column="answered_within_7_days_share", min_value=0, max_value=1),
        gxe.ExpectColumnValuesToMatchRegex(column="month", regex=MONTH),
    ],
    "reusers": lambda scope: [
        gxe.ExpectColumnValuesToBeInSet(column="reuser_type", value_set=["user", "organization"]),
        *_at_least_zero("engagement_score", "reuses_published", "discussions_opened", "messages_posted"),
    ],
    "reuser_activity": lambda scope: [
        gxe.ExpectColumnValuesToBeInSet(column="kind", value_set=["reuse", "discussion", "message"]),
        _not_future("active_at", scope),
    ],
    "interview_candidates": lambda scope: [gxe.ExpectColumnValuesToBeBetween(column="rank", min_value=1, max_value=5)],
    "new_reuses": lambda scope: [
        gxe.ExpectColumnValuesToBeBetween(column="days_since_first_seen", min_value=0, max_value=29)
    ],
    "event_impact": lambda scope: [*_at_least_zero("days_observed_before", "days_observed_after")],
    "discussion_themes": lambda scope: [
        gxe.ExpectColumnValuesToBeInSet(column="theme", value_set=list(THEMES)),
        gxe.ExpectColumnValuesToMatchRegex(column="month", regex=MONTH),
        *_at_least_zero("discussions"),
    ],
}
EXTRA_COLUMNS = {
    "discussions": "dataset_id in (select dataset_id from reporting.datasets) as dataset_known",
}


def reporting_checks(model: SqlModel) -> list[Check]:
    """The declared schema, then the values: grain unique and present, plus the table's own rules."""
    declared = ", ".join(f"('{name}', '{column.type}')" for name, column in model.columns.items())
    nullable = NULLABLE_GRAIN.get(model.name, set())
    extra = EXTRA_COLUMNS.get(model.name)

    def values(scope: RunScope) -> list[gxe.Expectation]:
        grain = [gxe.ExpectColumnValuesToNotBeNull(column=column) for column in model.grain if column not in nullable]
        unique = (
            gxe.ExpectCompoundColumnsToBeUnique(column_list=list(model.grain))
            if len(model.grain) > 1
            else gxe.ExpectColumnValuesToBeUnique(column=model.grain[0])
        )
        return [*grain, unique, *TABLE_EXPECTATIONS.get(model.name, lambda _: [])(scope)]

    return [
        Check(
            SCHEMA_MATCHES,
            f"{model.table} has exactly the columns and DuckDB types its SQL header declares.",
            f"""
            select column_name, actual.column_type, declared.declared_type
            from (describe {model.table}) as actual
            full join (values {declared}) as declared(column_name, declared_type) using (column_name)
            """,
            lambda scope: [gxe.ExpectColumnPairValuesToBeEqual(column_A="column_type", column_B="declared_type")],
            dataset_column=None,
        ),
        Check(
            VALUES_VALID,
            f"{model.table}: one row per {', '.join(model.grain)}, ids present, values in their allowed ranges "
            "and sets, no date in the future.",
            f"select *{', ' + extra if extra else ''} from {model.table}",
            values,
            dataset_column="dataset_id" if "dataset_id" in model.columns else None,
        ),
    ]
