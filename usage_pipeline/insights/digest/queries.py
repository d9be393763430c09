"""What a digest reads from the published DuckDB copy, one organization at a time.

Tables published later than the first digest (survey, event, reuser and link-check tables, the newer columns of
reporting.reuses) are optional: `load_inputs` looks them up in information_schema first, and a section whose
table is missing or has nothing for the organization is left out.
"""

import datetime as dt
from collections import defaultdict
from collections.abc import Iterable, Sequence
from typing import Any

import duckdb

from usage_pipeline.dates import month_key
from usage_pipeline.insights.digest.figures import (
    ANSWER_MONTHS,
    DAILY_CHART_DAYS,
    EVENT_DAYS,
    MONTHLY_CHART_MONTHS,
    PEOPLE_PER_DATASET,
    SURVEY_NEEDS,
    WEEK,
    DigestInputs,
    Organization,
    Row,
)

HISTORY_DAYS = DAILY_CHART_DAYS + 31  # daily rows read: the chart, and room for a delta that covers a gap


def _rows(conn: duckdb.DuckDBPyConnection, sql: str, params: Sequence[Any]) -> list[Row]:
    cursor = conn.execute(sql, list(params))
    names = [column[0] for column in cursor.description]
    return [dict(zip(names, values, strict=True)) for values in cursor.fetchall()]


_ORG_DATASETS = "select dataset_id from reporting.datasets where organization_id = ?"
_LINK_COLUMNS = ("link_checked_at", "link_ok", "link_broken", "removed_date")
_OPTIONAL = {  # optional reporting tables and the columns the digest reads from them
    "survey_summary": ("dataset_id", "dataset_title", "responses", "mean_satisfaction", "satisfied_share",
                       "top_needs_themes", "last_response_at"),
    "survey_responses": ("dataset_id", "dataset_title", "submitted_at", "needs", "needs_theme"),
    "event_impact": ("event_date", "title", "kind", "dataset_id", "views_before", "views_after", "downloads_before",
                     "downloads_after", "discussions_before", "discussions_after", "reuses_before", "reuses_after",
                     "days_observed_before", "days_observed_after"),
    "interview_candidates": (
        "dataset_id", "rank", "reuser_type", "name", "slug",
        "reuses_published", "reuse_types", "discussions_opened", "replies_posted", "last_activity_at",
    ),
    "reuse_leads": ("dataset_id", "source", "url", "title", "author", "matched", "first_seen_date", "status"),
}  # fmt: skip


def reporting_columns(conn: duckdb.DuckDBPyConnection) -> dict[str, set[str]]:
    """The columns of each table of the reporting schema, from information_schema (an older file has fewer)."""
    tables: dict[str, set[str]] = defaultdict(set)
    for table, column in conn.execute(
        "select table_name, column_name from information_schema.columns where table_schema = 'reporting'"
    ).fetchall():
        tables[table].add(column)
    return tables


def _has(tables: dict[str, set[str]], table: str, columns: Iterable[str]) -> bool:
    return table in tables and set(columns) <= tables[table]


def load_organizations(conn: duckdb.DuckDBPyConnection) -> list[Organization]:
    """Organizations publishing at least one dataset still on the portal."""
    rows = conn.execute(
        """
        select organization_id, min(organization_name), min(organization_slug)
        from reporting.datasets
        where organization_id is not null and status <> 'gone'
        group by organization_id
        order by organization_id
        """
    ).fetchall()
    return [Organization(id=key, name=name or slug or key, slug=slug or key) for key, name, slug in rows]


def load_inputs(conn: duckdb.DuckDBPyConnection, organization: Organization, report_date: dt.date) -> DigestInputs:
    """Read what the digest of ``organization`` for ``report_date`` needs from the reporting tables."""
    key = organization.id
    first_month, this_month = month_key(report_date, MONTHLY_CHART_MONTHS), month_key(report_date)
    week_start = report_date - dt.timedelta(days=WEEK - 1)
    tables = reporting_columns(conn)
    owner = "owner_name" if "owner_name" in tables["reuses"] else "null as owner_name"
    review = "theme_needs_review" if "theme_needs_review" in tables["discussions_awaiting_answer"] else "false"
    firsts = conn.execute(
        f"select dataset_id, min(date) from reporting.dataset_usage_daily where dataset_id in ({_ORG_DATASETS}) "
        "group by dataset_id",
        [key],
    ).fetchall()
    inputs = DigestInputs(
        organization=organization,
        datasets=_rows(
            conn,
            "select dataset_id, title, page_url, status from reporting.datasets where organization_id = ? "
            "order by dataset_id",
            [key],
        ),
        first_snapshots=dict(firsts),
        daily=_rows(
            conn,
            f"""
            select dataset_id, date, views, downloads, followers, reuses, views_delta, downloads_delta,
                days_since_previous
            from reporting.dataset_usage_daily
            where dataset_id in ({_ORG_DATASETS}) and date <= ? and date > ?
            order by dataset_id, date
            """,
            [key, report_date, report_date - dt.timedelta(days=HISTORY_DAYS)],
        ),
        monthly=_rows(
            conn,
            f"""
            select month, sum(visits) as visits, sum(downloads) as downloads, bool_and(is_complete) as is_complete
            from reporting.dataset_usage_monthly
            where dataset_id in ({_ORG_DATASETS}) and month > ? and month <= ?
            group by month
            order by month
            """,
            [key, first_month, this_month],
        ),
        awaiting=_rows(
            conn,
            f"""
            select discussion_id, dataset_title, title, url, asker, opened_at, waiting_since, waiting_days, theme,
                {review} as theme_needs_review
            from reporting.discussions_awaiting_answer
            where dataset_id in ({_ORG_DATASETS})
            order by waiting_since, discussion_id
            """,
            [key],
        ),
        reuses=_rows(
            conn,
            f"""
            select reuse_id, dataset_id, title, type, url, page_url, {owner}, created_at, first_seen_date
            from reporting.reuses
            where dataset_id in ({_ORG_DATASETS}) and first_seen_date between ? and ?
            order by first_seen_date, reuse_id, dataset_id
            """,
            [key, week_start, report_date],
        ),
        themes=_rows(
            conn,
            f"""
            select month, theme, sum(discussions) as discussions
            from reporting.discussion_themes
            where dataset_id in ({_ORG_DATASETS}) and month between ? and ?
            group by month, theme
            """,
            [key, month_key(report_date, 1), this_month],
        ),
        response_times=_rows(
            conn,
            """
            select dataset_id, month, discussions_opened, answered, median_days_to_first_answer,
                mean_days_to_first_answer_capped
            from reporting.response_times
            where organization_id = ? and month between ? and ?
            """,
            [key, month_key(report_date, ANSWER_MONTHS - 1), this_month],
        ),
    )
    if _has(tables, "reuses", _LINK_COLUMNS):
        inputs.reuse_links = _rows(
            conn,
            f"""
            select reuse_id, dataset_id, title, type, url, page_url, {owner}, link_checked_at, link_ok, link_broken,
                removed_date
            from reporting.reuses
            where dataset_id in ({_ORG_DATASETS}) and (link_checked_at is not null or removed_date between ? and ?)
            order by reuse_id, dataset_id
            """,
            [key, week_start, report_date],
        )
    if _has(tables, "survey_summary", _OPTIONAL["survey_summary"]):
        inputs.surveys = _rows(
            conn,
            f"""
            select {", ".join(_OPTIONAL["survey_summary"])}
            from reporting.survey_summary
            where dataset_id in ({_ORG_DATASETS}) and responses > 0
            order by responses desc, dataset_id
            """,
            [key],
        )
    if inputs.surveys and _has(tables, "survey_responses", _OPTIONAL["survey_responses"]):
        needs = _rows(
            conn,
            f"""
            select {", ".join(_OPTIONAL["survey_responses"])}, count(*) over () as total
            from reporting.survey_responses
            where dataset_id in ({_ORG_DATASETS})
                and submitted_at >= ?::date::timestamptz and submitted_at < ?::date::timestamptz  -- reader's days
                and nullif(trim(needs), '') is not null
            order by submitted_at desc, dataset_id
            limit {SURVEY_NEEDS}
            """,
            [key, week_start, report_date + dt.timedelta(days=1)],
        )
        inputs.survey_needs, inputs.survey_needs_total = needs, needs[0]["total"] if needs else 0
    if _has(tables, "event_impact", _OPTIONAL["event_impact"]):
        inputs.events = _rows(
            conn,
            f"""
            select {", ".join(_OPTIONAL["event_impact"])}
            from reporting.event_impact
            where dataset_id in ({_ORG_DATASETS}) and event_date between ? and ?
            order by event_date desc, title, dataset_id
            """,
            [key, report_date - dt.timedelta(days=EVENT_DAYS - 1), report_date],
        )
    if _has(tables, "interview_candidates", _OPTIONAL["interview_candidates"]):
        inputs.candidates = _rows(
            conn,
            f"""
            select {", ".join(_OPTIONAL["interview_candidates"])}
            from reporting.interview_candidates
            where dataset_id in ({_ORG_DATASETS}) and rank <= ?
            order by dataset_id, rank
            """,
            [key, PEOPLE_PER_DATASET],
        )
    if _has(tables, "reuse_leads", _OPTIONAL["reuse_leads"]):
        inputs.leads = _rows(
            conn,
            f"""
            select {", ".join(_OPTIONAL["reuse_leads"])}
            from reporting.reuse_leads
            where dataset_id in ({_ORG_DATASETS}) and status = 'new' and first_seen_date <= ?
            order by first_seen_date desc, source, url
            """,
            [key, report_date],
        )
    return inputs
