"""The weekly digest: one HTML and one Markdown page per organization, for the producer's team.

`write_digests` reads the published read-only DuckDB copy and writes, for the ISO week of the report date,
``<slug>-<YYYY>-W<WW>.html``, ``.md`` and the ``<slug>-<YYYY>-W<WW>-<chart>.svg`` charts the Markdown links
(the HTML inlines them). Queries (`load_inputs`), figures (`build_context`), charts (`render_charts`) and
templates (`render_html`, `render_markdown`) are separate so that each can be tested on its own.

Tables published later than the first digest (survey, event, reuser and link-check tables, the newer columns of
reporting.reuses) are optional: `load_inputs` looks them up in information_schema first, and a section whose
table is missing or has nothing for the organization is left out.
"""

import datetime as dt
import io
import os
import re
import statistics
import uuid
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlsplit
from zoneinfo import ZoneInfo

import dagster as dg
import duckdb
import jinja2
import matplotlib as mpl
from markupsafe import Markup, escape
from matplotlib import ticker
from matplotlib.figure import Figure

from usage_pipeline.ingest.partitions import run_date
from usage_pipeline.ingest.schedules import TIMEZONE

DIGEST_KEY = dg.AssetKey(["published", "weekly_digest"])
REPORTS_DIR = "reports"
TEMPLATES = Path(__file__).parent / "templates"
WEEK = 7
DAILY_CHART_DAYS = 56  # the last 8 weeks
MONTHLY_CHART_MONTHS = 12
ANSWER_MONTHS = 3
TOP_DATASETS = 5
HISTORY_DAYS = DAILY_CHART_DAYS + 31  # daily rows read: the chart, and room for a delta that covers a gap
EVENT_DAYS = 90  # community events shown: those of the last 90 days
EVENT_WINDOW_DAYS = 14  # reporting.event_impact compares the 14 days from the event with the 14 days before
SURVEY_NEEDS = 10  # needs of the week's survey answers shown, the latest first
NEEDS_CHARACTERS = 280  # a longer needs text is shortened
PEOPLE_DATASETS = 3  # most viewed datasets whose reusers are suggested for an interview
PEOPLE_PER_DATASET = 3
DEFAULT_PORTAL = "https://www.data.gouv.fr"
LOCAL_TIME = ZoneInfo(TIMEZONE)  # the days of the digest are days in Paris

Row = dict[str, Any]
THEME_HINTS = {  # what each discussion theme covers, in the reader's words
    "accessibility": "cannot get to the data: dead links, failing downloads or API",
    "freshness": "data not up to date, questions about the next update",
    "reliability": "wrong or doubtful values, inconsistencies, duplicates",
    "usability": "format, encoding, meaning of columns, documentation",
    "other": "thanks, requests for new data, licensing, anything else",
}


@dataclass(frozen=True)
class Organization:
    """A producer: the datasets it publishes get one digest."""

    id: str
    name: str
    slug: str


@dataclass
class DigestInputs:
    """What the published tables say about one organization, as rows (column name -> value)."""

    organization: Organization
    datasets: list[Row] = field(default_factory=list)  # dataset_id, title, page_url, status
    first_snapshots: dict[str, dt.date] = field(default_factory=dict)  # dataset_id -> first snapshot date
    daily: list[Row] = field(default_factory=list)  # dataset_usage_daily rows, by dataset and date
    monthly: list[Row] = field(default_factory=list)  # month, visits, downloads, is_complete (organization sums)
    awaiting: list[Row] = field(default_factory=list)  # discussions_awaiting_answer rows, oldest wait first
    reuses: list[Row] = field(default_factory=list)  # reuses rows first seen during the week
    themes: list[Row] = field(default_factory=list)  # month, theme, discussions (organization sums)
    response_times: list[Row] = field(default_factory=list)  # response_times rows of the last months
    # reporting.reuses rows checked or removed during the week; None when the file has no link checks (older file)
    reuse_links: list[Row] | None = None
    surveys: list[Row] = field(default_factory=list)  # survey_summary rows, most answers first
    survey_needs: list[Row] = field(default_factory=list)  # the week's answers saying what is missing, latest first
    survey_needs_total: int = 0  # how many answers of the week said what is missing (survey_needs holds <= 10)
    events: list[Row] = field(default_factory=list)  # event_impact rows of the last 90 days
    candidates: list[Row] = field(default_factory=list)  # interview_candidates rows, the first 3 of each dataset


# ---------------------------------------------------------------------------------------------- dates and numbers


def week_label(day: dt.date) -> str:
    """The ISO week containing ``day``, as ``YYYY-Www``."""
    year, week, _ = day.isocalendar()
    return f"{year}-W{week:02d}"


def month_of(day: dt.date, back: int = 0) -> str:
    """``YYYY-MM`` of the month ``back`` months before the month of ``day``."""
    index = day.year * 12 + day.month - 1 - back
    return f"{index // 12:04d}-{index % 12 + 1:02d}"


def number(value: float | None, digits: int = 0) -> str:
    """``12,345`` (or ``12.5``); an em dash for no value."""
    return "—" if value is None else f"{value:,.{digits}f}"


def percent(value: float | None) -> str:
    """A share as ``75%``; an em dash for no value."""
    return "—" if value is None else f"{value:.0%}"


def date_text(value: dt.date | dt.datetime | None) -> str:
    """``20 Nov 2026``."""
    return "—" if value is None else f"{value.day} {value:%b %Y}"


def month_name(value: str) -> str:
    """``2026-11`` as ``November 2026``."""
    return dt.date.fromisoformat(f"{value}-01").strftime("%B %Y")


def daily_gains(rows: Iterable[Row]) -> dict[str, dict[dt.date, tuple[float, float]]]:
    """Views and downloads gained per dataset and day.

    A delta that covers several days (no snapshot in between) is spread evenly over them; a dataset's first
    snapshot has no delta and gains nothing.
    """
    gains: dict[str, dict[dt.date, tuple[float, float]]] = defaultdict(dict)
    for row in rows:
        if row["views_delta"] is None and row["downloads_delta"] is None:
            continue
        span = max(int(row.get("days_since_previous") or 1), 1)
        views = (row["views_delta"] or 0) / span
        downloads = (row["downloads_delta"] or 0) / span
        for back in range(span):
            gains[row["dataset_id"]][row["date"] - dt.timedelta(days=back)] = (views, downloads)
    return gains


def window_sum(per_day: dict[dt.date, tuple[float, float]], start: dt.date, end: dt.date) -> tuple[int, int]:
    """Views and downloads gained from ``start`` to ``end`` included, rounded."""
    views = sum(value[0] for day, value in per_day.items() if start <= day <= end)
    downloads = sum(value[1] for day, value in per_day.items() if start <= day <= end)
    return round(views), round(downloads)


def change(value: int | None, previous: int | None) -> Row:
    """How ``value`` compares with ``previous``: short text (tables), sentence, direction (up, down, flat, none)."""
    if value is None or previous is None:
        return {"short": "not enough history yet", "text": "not enough history yet to compare", "direction": "none"}
    diff = value - previous
    if diff == 0:
        return {"short": "no change", "text": "same as the 7 days before", "direction": "flat"}
    sign = "+" if diff > 0 else "−"
    short = f"{sign}{abs(diff):,}"
    short += f" ({sign}{abs(diff) / previous:.0%})" if previous else " (none before)"
    return {"short": short, "text": f"{short} vs the 7 days before", "direction": "up" if diff > 0 else "down"}


def counter_at(rows: list[Row], column: str, day: dt.date) -> int | None:
    """A cumulative counter at the latest of ``rows`` (one dataset's, by date) dated ``day`` or before."""
    value = None
    for row in rows:
        if row["date"] <= day:
            value = row[column]
    return value


def weighted_median(values: Iterable[tuple[float, int]]) -> float | None:
    """Median of ``(value, weight)`` pairs, each value counted ``weight`` times."""
    expanded = [value for value, weight in values for _ in range(max(weight, 0)) if value is not None]
    return statistics.median(expanded) if expanded else None


# ----------------------------------------------------------------------------------------------------- the context


def _windows(report_date: dt.date) -> tuple[dt.date, dt.date, dt.date, dt.date]:
    """The last 7 days up to ``report_date`` and the 7 days before: start, end, previous start, previous end."""
    start = report_date - dt.timedelta(days=WEEK - 1)
    return start, report_date, start - dt.timedelta(days=WEEK), start - dt.timedelta(days=1)


def _measured(first_snapshot: dt.date | None, window_start: dt.date) -> bool:
    """Whether gains are known for every day from ``window_start`` (a snapshot exists the day before or earlier)."""
    return first_snapshot is not None and first_snapshot < window_start


def headline_figures(
    by_dataset: dict[str, list[Row]],
    gains: dict[str, dict[dt.date, tuple[float, float]]],
    first_snapshots: dict[str, dt.date],
    report_date: dt.date,
) -> Row:
    """Views and downloads of the last 7 days (with the 7 days before when measured), followers and reuses.

    ``by_dataset``: each dataset's daily rows up to ``report_date``, by date; ``gains``: their `daily_gains`.
    """
    start, end, previous_start, previous_end = _windows(report_date)
    tracked_since = min(first_snapshots.values(), default=None)
    as_of = max((rows[-1]["date"] for rows in by_dataset.values() if rows), default=None)
    has_week = as_of is not None and as_of >= start and tracked_since is not None and tracked_since < end
    has_before = has_week and _measured(tracked_since, previous_start)
    figures: Row = {"as_of": as_of, "tracked_since": tracked_since}
    for index, metric in enumerate(("views", "downloads")):
        value = sum(window_sum(per_day, start, end)[index] for per_day in gains.values()) if has_week else None
        previous = (
            sum(window_sum(per_day, previous_start, previous_end)[index] for per_day in gains.values())
            if has_before
            else None
        )
        figures[metric] = {
            "value": value,
            "change": change(value, previous),
            "partial_since": tracked_since if has_week and not _measured(tracked_since, start) else None,
        }
    live = [rows for rows in by_dataset.values() if rows and rows[-1]["date"] >= start]  # seen during the week
    followers = sum(counter_at(rows, "followers", end) or 0 for rows in live) if live else None
    before = [counter_at(rows, "followers", previous_end) for rows in live]
    known_before = has_before and any(value is not None for value in before)
    figures["followers"] = {
        "value": followers,
        "change": followers - sum(value or 0 for value in before) if followers is not None and known_before else None,
    }
    figures["reuses"] = sum(counter_at(rows, "reuses", end) or 0 for rows in live) if live else None
    return figures


def top_datasets(
    gains: dict[str, dict[dt.date, tuple[float, float]]],
    datasets: dict[str, Row],
    first_snapshots: dict[str, dt.date],
    report_date: dt.date,
) -> dict[str, list[Row]]:
    """The datasets with the most views and downloads in the last 7 days, each with its change."""
    start, end, previous_start, previous_end = _windows(report_date)
    ranked = []
    for key, per_day in gains.items():
        views, downloads = window_sum(per_day, start, end)
        previous = window_sum(per_day, previous_start, previous_end)
        known = _measured(first_snapshots.get(key), previous_start)
        dataset = datasets.get(key, {})
        ranked.append(
            {
                "dataset_id": key,
                "title": dataset.get("title") or key,
                "page_url": dataset.get("page_url"),
                "views": views,
                "downloads": downloads,
                "views_change": change(views, previous[0] if known else None),
                "downloads_change": change(downloads, previous[1] if known else None),
            }
        )
    return {
        metric: sorted((row for row in ranked if row[metric] > 0), key=lambda row: (-row[metric], row["title"]))[
            :TOP_DATASETS
        ]
        for metric in ("views", "downloads")
    }


def new_reuses(
    rows: Iterable[Row], datasets: dict[str, Row], first_snapshots: dict[str, dt.date], report_date: dt.date
) -> list[Row]:
    """Reuses first seen in the last 7 days, once each, with the titles of the datasets they use.

    A reuse first seen on a dataset's first snapshot was already there when tracking started: it is news only
    if it was also published during the week.
    """
    start, end, _, _ = _windows(report_date)
    found: dict[str, Row] = {}
    for row in sorted(rows, key=lambda row: (row["first_seen_date"], row["reuse_id"], row["dataset_id"])):
        first_seen, created = row["first_seen_date"], row.get("created_at")
        created_day = created.date() if isinstance(created, dt.datetime) else created
        already_there = first_seen == first_snapshots.get(row["dataset_id"]) and not (
            created_day and created_day >= start
        )
        if not start <= first_seen <= end or already_there:
            continue
        reuse = found.setdefault(row["reuse_id"], {**row, "datasets": []})
        title = datasets.get(row["dataset_id"], {}).get("title") or row["dataset_id"]
        if title not in reuse["datasets"]:
            reuse["datasets"].append(title)
    return list(found.values())


def theme_table(rows: Iterable[Row], report_date: dt.date) -> Row:
    """Discussions opened per theme in the month of ``report_date`` and the month before, most frequent first."""
    this_month, last_month = month_of(report_date), month_of(report_date, 1)
    counts: dict[str, dict[str, int]] = defaultdict(lambda: {this_month: 0, last_month: 0})
    for row in rows:
        if row["month"] in (this_month, last_month):
            counts[row["theme"]][row["month"]] += int(row["discussions"] or 0)
    themes = [
        {"theme": theme, "count": count[this_month], "previous": count[last_month]} for theme, count in counts.items()
    ]
    themes.sort(key=lambda row: (-row["count"], -row["previous"], row["theme"]))
    return {"month": this_month, "previous_month": last_month, "rows": themes, "hints": THEME_HINTS}


def answer_summary(rows: Iterable[Row], report_date: dt.date) -> Row:
    """Answer rate and times of the discussions opened in the last 3 months, from reporting.response_times rows.

    Counts add up exactly; the median of several datasets or months is the median of their medians, each
    weighted by its answered discussions (``median_is_exact`` is False then); the data.gouv.fr indicator (mean
    of capped delays) is the answered-weighted mean, exact.
    """
    first_month, last_month = month_of(report_date, ANSWER_MONTHS - 1), month_of(report_date)
    kept = [row for row in rows if first_month <= row["month"] <= last_month]
    opened = sum(int(row["discussions_opened"] or 0) for row in kept)
    answered = sum(int(row["answered"] or 0) for row in kept)
    medians = [
        (row["median_days_to_first_answer"], int(row["answered"] or 0))
        for row in kept
        if row["median_days_to_first_answer"] is not None
    ]
    capped = [
        (row["mean_days_to_first_answer_capped"], int(row["answered"] or 0))
        for row in kept
        if row.get("mean_days_to_first_answer_capped") is not None
    ]
    capped_weight = sum(weight for _, weight in capped)
    return {
        "first_month": first_month,
        "last_month": last_month,
        "opened": opened,
        "answered": answered,
        "share": answered / opened if opened else None,
        "median_days": weighted_median(medians),
        "median_is_exact": len(medians) <= 1,
        "kpi_days": sum(value * weight for value, weight in capped) / capped_weight if capped_weight else None,
    }


def local_day(value: dt.date | dt.datetime | None) -> dt.date | None:
    """The day of ``value`` in Paris (a date is kept as it is)."""
    if isinstance(value, dt.datetime):
        return (value.astimezone(LOCAL_TIME) if value.tzinfo else value).date()
    return value


def shorten(text: str | None, limit: int) -> str:
    """``text`` on one line, cut at a word boundary with an ellipsis when longer than ``limit`` characters."""
    text = " ".join((text or "").split())
    if len(text) <= limit:
        return text
    cut = text[: limit - 1]
    return (cut.rsplit(" ", 1)[0] if " " in cut else cut).rstrip(",;:.") + "…"


def portal_base(page_url: str | None) -> str:
    """The portal's scheme and host, from a dataset page address when it has one, else data.gouv.fr's."""
    url = safe_url(page_url)
    parts = urlsplit(url) if url else None
    return f"{parts.scheme}://{parts.netloc}" if parts and parts.netloc else DEFAULT_PORTAL


def profile_url(base: str, reuser_type: str | None, slug: str | None) -> str | None:
    """A reuser's public page: ``<base>/users/<slug>`` or ``<base>/organizations/<slug>``; None when unknown."""
    folder = {"user": "users", "organization": "organizations"}.get(reuser_type or "")
    if not folder or not slug or not slug.strip():
        return None
    return f"{base}/{folder}/{quote(slug.strip(), safe='')}"


def _listed(row: Row, datasets: dict[str, Row]) -> bool:
    """Whether a reuses row is still on its dataset: not removed, on a dataset still published."""
    dataset = datasets.get(row["dataset_id"])
    return row.get("removed_date") is None and dataset is not None and dataset.get("status") != "gone"


def reuse_problems(rows: Iterable[Row] | None, datasets: dict[str, Row], report_date: dt.date) -> Row | None:
    """Reuses still listed whose address failed its last 3 checks, and reuses removed from a dataset this week.

    Each reuse once, with the titles of the datasets concerned; ``checked``: the listed reuses whose address was
    checked at least once. None when the published file has no link checks.
    """
    if rows is None:
        return None
    start, end, _, _ = _windows(report_date)
    broken: dict[str, Row] = {}
    removed: dict[str, Row] = {}
    checked: set[str] = set()
    for row in sorted(rows, key=lambda row: (row.get("title") or "", row["reuse_id"], row["dataset_id"])):
        title = datasets.get(row["dataset_id"], {}).get("title") or row["dataset_id"]
        removed_day = row.get("removed_date")
        if _listed(row, datasets) and row.get("link_checked_at") is not None:
            checked.add(row["reuse_id"])
            if row.get("link_broken"):
                author = f"the author ({row['owner_name']})" if row.get("owner_name") else "the author"
                reuse = broken.setdefault(
                    row["reuse_id"],
                    {
                        **row,
                        "datasets": [],
                        "checked_on": local_day(row["link_checked_at"]),
                        "hint": f"Tell {author}, or remove the reuse from the dataset.",
                    },
                )
                if title not in reuse["datasets"]:
                    reuse["datasets"].append(title)
        elif removed_day is not None and start <= removed_day <= end:
            reuse = removed.setdefault(row["reuse_id"], {**row, "datasets": []})
            reuse["removed_date"] = min(reuse["removed_date"], removed_day)
            if title not in reuse["datasets"]:
                reuse["datasets"].append(title)
    return {"checked": len(checked), "broken": list(broken.values()), "removed": list(removed.values())}


def survey_results(
    summary: Iterable[Row], needs: Iterable[Row], needs_total: int, datasets: dict[str, Row]
) -> Row | None:
    """What the surveys say about the organization's datasets (all answers so far), and the needs of the week's
    answers (the latest ``SURVEY_NEEDS``); None when no survey answer is about them."""
    rows = [
        {
            "dataset_id": row["dataset_id"],
            "title": datasets.get(row["dataset_id"], {}).get("title") or row.get("dataset_title") or row["dataset_id"],
            "page_url": datasets.get(row["dataset_id"], {}).get("page_url"),
            "responses": int(row["responses"] or 0),
            "mean_satisfaction": row.get("mean_satisfaction"),
            "satisfied_share": row.get("satisfied_share"),
            "themes": row.get("top_needs_themes") or None,
            "last_response": local_day(row.get("last_response_at")),
        }
        for row in summary
    ]
    if not rows:
        return None
    rows.sort(key=lambda row: (-row["responses"], row["title"]))
    latest = sorted(needs, key=lambda row: row["submitted_at"], reverse=True)[:SURVEY_NEEDS]
    return {
        "datasets": rows,
        "needs": [
            {
                "text": shorten(row["needs"], NEEDS_CHARACTERS),
                "theme": row.get("needs_theme") or "other",
                "dataset": datasets.get(row["dataset_id"], {}).get("title")
                or row.get("dataset_title")
                or row["dataset_id"],
                "submitted": local_day(row["submitted_at"]),
            }
            for row in latest
        ],
        "needs_total": max(needs_total, len(latest)),
        "responses": sum(row["responses"] for row in rows),
        "last_response": max((row["last_response"] for row in rows if row["last_response"]), default=None),
    }


def window_figure(before: int | None, after: int | None, days_before: int | None, days_after: int | None) -> Row:
    """One metric of an event, 14 days before against 14 days from it: each side None without any snapshot."""
    before = None if not days_before else int(before or 0)
    after = None if not days_after else int(after or 0)
    complete = days_before == EVENT_WINDOW_DAYS and days_after == EVENT_WINDOW_DAYS
    return {"before": before, "after": after, "change": change(after, before) if complete else None}


def event_table(rows: Iterable[Row], datasets: dict[str, Row], report_date: dt.date) -> list[Row]:
    """Community events of the last 90 days up to ``report_date``, newest first, each with its datasets' figures.

    ``open_until``: the last of the 14 days from the event, when it is after ``report_date`` (still counting).
    """
    first = report_date - dt.timedelta(days=EVENT_DAYS - 1)
    events: dict[tuple, Row] = {}
    for row in sorted(rows, key=lambda row: (row["event_date"], row["title"] or "", row["dataset_id"])):
        if not first <= row["event_date"] <= report_date:
            continue
        key = (row["event_date"], row["title"])
        last_day = row["event_date"] + dt.timedelta(days=EVENT_WINDOW_DAYS - 1)
        event = events.setdefault(
            key,
            {
                "date": row["event_date"],
                "title": row["title"] or "(untitled)",
                "kind": row.get("kind"),
                "open_until": last_day if last_day > report_date else None,  # the 14 days from it are not over
                "rows": [],
            },
        )
        dataset = datasets.get(row["dataset_id"], {})
        days_before, days_after = row.get("days_observed_before") or 0, row.get("days_observed_after") or 0
        event["rows"].append(
            {
                "dataset_id": row["dataset_id"],
                "title": dataset.get("title") or row["dataset_id"],
                "page_url": dataset.get("page_url"),
                "days_before": days_before,
                "days_after": days_after,
                "views": window_figure(row.get("views_before"), row.get("views_after"), days_before, days_after),
                "downloads": window_figure(
                    row.get("downloads_before"), row.get("downloads_after"), days_before, days_after
                ),
                "discussions": {
                    "before": row.get("discussions_before") or 0,
                    "after": row.get("discussions_after") or 0,
                },
                "reuses": {"before": row.get("reuses_before") or 0, "after": row.get("reuses_after") or 0},
            }
        )
    return sorted(events.values(), key=lambda event: (event["date"], event["title"]), reverse=True)


def people_to_talk_to(
    candidates: Iterable[Row],
    datasets: dict[str, Row],
    gains: dict[str, dict[dt.date, tuple[float, float]]],
    latest_views: dict[str, int],
    report_date: dt.date,
) -> list[Row]:
    """The first 3 interview candidates of the most viewed datasets that have some (at most 3 datasets).

    Datasets are ranked by their views of the last 7 days, then by their views since publication.
    """
    start, end, _, _ = _windows(report_date)
    by_dataset: dict[str, list[Row]] = defaultdict(list)
    for row in candidates:
        if row["dataset_id"] in datasets and datasets[row["dataset_id"]].get("status") != "gone":
            by_dataset[row["dataset_id"]].append(row)
    ranked = sorted(
        by_dataset,
        key=lambda key: (
            -window_sum(gains.get(key, {}), start, end)[0],
            -(latest_views.get(key) or 0),
            datasets[key].get("title") or key,
        ),
    )
    people = []
    for key in ranked[:PEOPLE_DATASETS]:
        dataset = datasets[key]
        base = portal_base(dataset.get("page_url"))
        rows = sorted(by_dataset[key], key=lambda row: row["rank"])[:PEOPLE_PER_DATASET]
        people.append(
            {
                "dataset_id": key,
                "title": dataset.get("title") or key,
                "page_url": dataset.get("page_url"),
                "people": [
                    {
                        "name": row.get("name") or row.get("slug") or "(unnamed)",
                        "type": row.get("reuser_type") or "user",
                        "url": profile_url(base, row.get("reuser_type"), row.get("slug")),
                        "why": row.get("why") or "",
                    }
                    for row in rows
                ],
            }
        )
    return people


def chart_series(
    monthly_rows: Iterable[Row], gains: dict[str, dict[dt.date, tuple[float, float]]], report_date: dt.date
) -> Row:
    """The charts' data: months (from the first with figures, up to 12) and the last 56 days' gains."""
    by_month = {row["month"]: row for row in monthly_rows}
    months = [month_of(report_date, back) for back in range(MONTHLY_CHART_MONTHS - 1, -1, -1)]
    months = months[next((i for i, month in enumerate(months) if month in by_month), len(months)) :]
    monthly = [
        {
            "month": month,
            "visits": int(by_month[month]["visits"] or 0) if month in by_month else None,
            "downloads": int(by_month[month]["downloads"] or 0) if month in by_month else None,
            "complete": bool(by_month[month]["is_complete"]) if month in by_month else True,
        }
        for month in months
    ]
    start = report_date - dt.timedelta(days=WEEK - 1)
    daily = []
    for back in range(DAILY_CHART_DAYS - 1, -1, -1):
        day = report_date - dt.timedelta(days=back)
        values = [per_day[day] for per_day in gains.values() if day in per_day]
        daily.append(
            {
                "date": day,
                "views": sum(value[0] for value in values) if values else None,
                "downloads": sum(value[1] for value in values) if values else None,
                "in_week": day >= start,
            }
        )
    return {"monthly": monthly, "daily": daily}


def build_context(inputs: DigestInputs, report_date: dt.date) -> Row:
    """Every figure and list of one organization's digest for the week of ``report_date`` (no I/O)."""
    start, end, previous_start, previous_end = _windows(report_date)
    iso_monday = report_date - dt.timedelta(days=report_date.weekday())
    datasets = {row["dataset_id"]: row for row in inputs.datasets}
    by_dataset: dict[str, list[Row]] = defaultdict(list)
    for row in sorted(inputs.daily, key=lambda row: (row["dataset_id"], row["date"])):
        if row["date"] <= end:
            by_dataset[row["dataset_id"]].append(row)
    gains = daily_gains(row for rows in by_dataset.values() for row in rows)
    firsts = {key: day for key, day in inputs.first_snapshots.items() if key in datasets and day <= end}
    headline = headline_figures(by_dataset, gains, firsts, report_date)
    reuses = new_reuses(inputs.reuses, datasets, firsts, report_date)
    top = top_datasets(gains, datasets, firsts, report_date)
    problems = reuse_problems(inputs.reuse_links, datasets, report_date)
    latest_views = {key: rows[-1]["views"] for key, rows in by_dataset.items() if rows}
    return {
        "organization": inputs.organization,
        "report_date": report_date,
        "week": week_label(report_date),
        "iso_week": {"start": iso_monday, "end": iso_monday + dt.timedelta(days=6)},
        "window": {"start": start, "end": end},
        "previous_window": {"start": previous_start, "end": previous_end},
        "as_of": headline["as_of"],
        "tracked_since": headline["tracked_since"],
        "datasets_count": sum(1 for row in inputs.datasets if row.get("status") != "gone"),
        "headline": {
            "views": headline["views"],
            "downloads": headline["downloads"],
            "followers": headline["followers"],
            "reuses": {
                "value": headline["reuses"],
                "new": len(reuses),
                "broken": len(problems["broken"]) if problems else None,
            },
            "open_questions": {
                "value": len(inputs.awaiting),
                "oldest_days": max((row["waiting_days"] or 0 for row in inputs.awaiting), default=None),
            },
        },
        "top_views": top["views"],
        "top_downloads": top["downloads"],
        "awaiting": list(inputs.awaiting),
        "new_reuses": reuses,
        "reuse_problems": problems,
        "themes": theme_table(inputs.themes, report_date),
        "answers": answer_summary(inputs.response_times, report_date),
        "surveys": survey_results(inputs.surveys, inputs.survey_needs, inputs.survey_needs_total, datasets),
        "events": event_table(inputs.events, datasets, report_date),
        "people": people_to_talk_to(inputs.candidates, datasets, gains, latest_views, report_date),
        "series": chart_series(inputs.monthly, gains, report_date),
    }


# ---------------------------------------------------------------------------------------------------------- charts

_INK, _MUTED, _ACCENT, _ACCENT_LIGHT, _GRID = "#1f2933", "#616e7c", "#2f5fb3", "#a9bfe6", "#e4e7eb"
_DOWNLOADS, _DOWNLOADS_LIGHT = "#c05621", "#f0c3a3"
_RC = {
    "svg.fonttype": "none",  # real text: smaller files, selectable, rendered with the reader's fonts
    "font.family": "sans-serif",
    "font.sans-serif": ["DejaVu Sans", "Helvetica", "Arial", "Liberation Sans"],
    "font.size": 9,
    "axes.edgecolor": _GRID,
    "axes.labelcolor": _INK,
    "xtick.color": _MUTED,
    "ytick.color": _MUTED,
    "axes.titlesize": 10,
    "axes.titleweight": "bold",
    "axes.titlelocation": "left",
}


def _style(axes: Any) -> None:
    axes.spines[["top", "right", "left"]].set_visible(False)
    axes.grid(axis="y", color=_GRID, linewidth=0.8)
    axes.set_axisbelow(True)
    axes.tick_params(length=0)
    axes.yaxis.set_major_formatter(ticker.FuncFormatter(lambda value, _: f"{value:,.0f}"))
    axes.yaxis.set_major_locator(ticker.MaxNLocator(nbins=4, integer=True, min_n_ticks=2))


def _svg(figure: Figure, salt: str) -> str:
    """The figure as an SVG document, by matplotlib's non-interactive SVG backend (no pyplot, no GUI).

    No date in the metadata and ids salted per chart: the same figures give the same bytes, and two charts
    inlined in one HTML page never share an id.
    """
    with mpl.rc_context({"svg.hashsalt": salt}):
        buffer = io.StringIO()
        figure.savefig(buffer, format="svg", metadata={"Date": None}, bbox_inches="tight")
    return buffer.getvalue()


def monthly_chart(monthly: list[Row], salt: str) -> str:
    """Bars of the monthly visits and downloads (the current, partial month lighter), as an SVG document."""
    with mpl.rc_context(_RC):
        figure = Figure(figsize=(7.2, 4.0), layout="constrained")
        top, bottom = figure.subplots(2, 1, sharex=True)
        ticks = [dt.date.fromisoformat(f"{row['month']}-01").strftime("%b\n%Y") for row in monthly]
        positions = range(len(monthly))
        for axes, column, title, colors in (
            (top, "visits", "Visits of your dataset pages per month", (_ACCENT, _ACCENT_LIGHT)),
            (bottom, "downloads", "Downloads per month", (_DOWNLOADS, _DOWNLOADS_LIGHT)),
        ):
            bars = axes.bar(
                positions,
                [row[column] or 0 for row in monthly],
                color=[colors[0] if row["complete"] else colors[1] for row in monthly],
                width=0.7,
            )
            axes.set_title(title, color=_INK)
            _style(axes)
            values = [number(row[column]) if row[column] is not None else "" for row in monthly]
            axes.bar_label(bars, labels=values, fontsize=7, color=_MUTED, padding=2)
            axes.margins(y=0.2)
        bottom.set_xticks(list(positions), ticks)
        return _svg(figure, f"{salt}-monthly")


def daily_chart(daily: list[Row], salt: str) -> str:
    """Bars of the views and downloads gained per day (the last 7 days darker), as an SVG document."""
    with mpl.rc_context(_RC):
        figure = Figure(figsize=(7.2, 4.0), layout="constrained")
        top, bottom = figure.subplots(2, 1, sharex=True)
        days = [row["date"] for row in daily]
        for axes, column, title, colors in (
            (top, "views", "Views gained per day", (_ACCENT, _ACCENT_LIGHT)),
            (bottom, "downloads", "Downloads gained per day", (_DOWNLOADS, _DOWNLOADS_LIGHT)),
        ):
            axes.bar(
                days,
                [row[column] or 0 for row in daily],
                color=[colors[0] if row["in_week"] else colors[1] for row in daily],
                width=0.8,
            )
            axes.set_title(title, color=_INK)
            _style(axes)
        mondays = [day for day in days if day.weekday() == 0]
        bottom.set_xticks(mondays, [f"{day.day} {day:%b}" for day in mondays])
        bottom.set_xlim(days[0] - dt.timedelta(days=1), days[-1] + dt.timedelta(days=1))
        return _svg(figure, f"{salt}-daily")


def render_charts(context: Row) -> list[Row]:
    """The digest's charts: name, title, note and SVG document; a chart without data is left out."""
    salt = f"{context['organization'].slug}-{context['week']}"
    charts = []
    monthly = context["series"]["monthly"]
    if monthly:
        charts.append(
            {
                "name": "monthly",
                "title": (
                    f"Visits and downloads per month, {month_name(monthly[0]['month'])} to "
                    f"{month_name(monthly[-1]['month'])}"
                ),
                "note": "Lighter bar: the current month, still being counted." if not monthly[-1]["complete"] else "",
                "svg": monthly_chart(monthly, salt),
            }
        )
    daily = context["series"]["daily"]
    if any(row["views"] is not None for row in daily):
        charts.append(
            {
                "name": "daily",
                "title": f"Views and downloads gained per day, the 8 weeks to {date_text(daily[-1]['date'])}",
                "note": "Darker bars: the last 7 days. No bar: not tracked yet, or nothing gained that day.",
                "svg": daily_chart(daily, salt),
            }
        )
    return charts


def inline_svg(document: str, label: str) -> Markup:
    """An SVG document as an element for HTML: prolog and doctype dropped, described for screen readers."""
    element = document[document.index("<svg") :]
    return Markup(element.replace("<svg ", f'<svg role="img" aria-label="{escape(label)}" ', 1))


# ------------------------------------------------------------------------------------------------------- templates


def safe_url(url: str | None) -> str | None:
    """``url`` if it is an http(s) address (never a javascript: or data: link), else None."""
    if not url or urlsplit(url.strip()).scheme.lower() not in ("http", "https"):
        return None
    return url.strip()


_MARKDOWN_SPECIAL = re.compile(r"([\\`*_{}\[\]<>()#+!|~&])")


def md_text(value: Any) -> str:
    """Text for Markdown: one line, every character that could become markup or HTML backslash-escaped."""
    return _MARKDOWN_SPECIAL.sub(r"\\\1", " ".join(str(value).split()))


def md_url(url: str | None) -> str | None:
    """An http(s) address usable as a Markdown link target (spaces, parentheses and brackets encoded)."""
    url = safe_url(url)
    return quote(url, safe=":/?#@!$&'*+,;=%-._~") if url else None


def _environment(autoescape: bool) -> jinja2.Environment:
    environment = jinja2.Environment(
        loader=jinja2.FileSystemLoader(TEMPLATES),
        autoescape=autoescape,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
        undefined=jinja2.StrictUndefined,
    )
    environment.filters.update(
        number=number,
        percent=percent,
        day=date_text,
        month_name=month_name,
        safe_url=safe_url,
        md=md_text,
        md_url=md_url,
    )
    return environment


_HTML = _environment(autoescape=True)
_MARKDOWN = _environment(autoescape=False)


def render_html(context: Row, charts: list[Row]) -> str:
    """The HTML digest, charts inline."""
    inline = [{**chart, "element": inline_svg(chart["svg"], chart["title"])} for chart in charts]
    return _HTML.get_template("digest.html.j2").render(**context, charts=inline)


def render_markdown(context: Row, charts: list[Row]) -> str:
    """The Markdown digest; each chart has a ``file`` it links to."""
    return _MARKDOWN.get_template("digest.md.j2").render(**context, charts=charts)


# ------------------------------------------------------------------------------------------------------------- I/O


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
    "interview_candidates": ("dataset_id", "rank", "reuser_type", "name", "slug", "why"),
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
    first_month, this_month = month_of(report_date, MONTHLY_CHART_MONTHS), month_of(report_date)
    week_start = report_date - dt.timedelta(days=WEEK - 1)
    tables = reporting_columns(conn)
    owner = "owner_name" if "owner_name" in tables["reuses"] else "null as owner_name"
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
            select discussion_id, dataset_title, title, url, asker, opened_at, waiting_since, waiting_days, theme
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
            [key, month_of(report_date, 1), this_month],
        ),
        response_times=_rows(
            conn,
            """
            select dataset_id, month, discussions_opened, answered, median_days_to_first_answer,
                mean_days_to_first_answer_capped
            from reporting.response_times
            where organization_id = ? and month between ? and ?
            """,
            [key, month_of(report_date, ANSWER_MONTHS - 1), this_month],
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
        # The week's days in Paris, as instants: the same answers whatever the session's time zone.
        since = dt.datetime.combine(week_start, dt.time(), LOCAL_TIME)
        until = dt.datetime.combine(report_date + dt.timedelta(days=1), dt.time(), LOCAL_TIME)
        needs = _rows(
            conn,
            f"""
            select {", ".join(_OPTIONAL["survey_responses"])}, count(*) over () as total
            from reporting.survey_responses
            where dataset_id in ({_ORG_DATASETS}) and submitted_at >= ? and submitted_at < ?
                and nullif(trim(needs), '') is not null
            order by submitted_at desc, dataset_id
            limit {SURVEY_NEEDS}
            """,
            [key, since, until],
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
    return inputs


def file_stem(organization: Organization, report_date: dt.date) -> str:
    """``<slug>-<YYYY>-W<WW>``, the slug reduced to characters safe in a file name."""
    slug = re.sub(r"[^A-Za-z0-9._-]+", "-", organization.slug).strip(".-") or "organization"
    return f"{slug}-{week_label(report_date)}"


def write_atomically(path: Path, text: str) -> None:
    """Write ``text`` to a temporary file beside ``path``, then rename it over ``path``."""
    temporary = path.with_name(f".{path.name}.{uuid.uuid4().hex[:12]}.tmp")
    try:
        temporary.write_text(text, encoding="utf-8")
        os.replace(temporary, path)
    finally:
        temporary.unlink(missing_ok=True)


def write_digests(published_db: Path, reports_dir: Path, report_date: dt.date) -> list[Path]:
    """Write every organization's digest for the ISO week of ``report_date``; returns the files written."""
    if not published_db.exists():
        raise FileNotFoundError(f"no published database at {published_db}")
    reports_dir.mkdir(parents=True, exist_ok=True)
    written: list[Path] = []
    with duckdb.connect(str(published_db), read_only=True) as conn:
        for organization in load_organizations(conn):
            context = build_context(load_inputs(conn, organization, report_date), report_date)
            stem = file_stem(organization, report_date)
            charts = [{**chart, "file": f"{stem}-{chart['name']}.svg"} for chart in render_charts(context)]
            for chart in charts:
                write_atomically(reports_dir / chart["file"], chart["svg"])
                written.append(reports_dir / chart["file"])
            for suffix, text in ((".html", render_html(context, charts)), (".md", render_markdown(context, charts))):
                write_atomically(reports_dir / f"{stem}{suffix}", text)
                written.append(reports_dir / f"{stem}{suffix}")
    return written


# ---------------------------------------------------------------------------------------------------------- asset


def build_digest_asset(published_dir: Path, deps: Sequence[dg.AssetKey]) -> dg.AssetsDefinition:
    """The weekly digest asset: reads ``published_dir``/usage.duckdb, writes ``published_dir``/reports/."""
    reports_dir = published_dir / REPORTS_DIR

    @dg.asset(
        key=DIGEST_KEY,
        deps=list(deps),
        group_name="published",
        kinds={"python", "html"},
        description=(
            "A weekly digest per organization for the producer's team, readable without any tool: "
            f"{reports_dir}/<organization slug>-<ISO year>-W<week>.html (charts inline, no external asset, "
            "e-mailable) and .md (with the <...>-<chart>.svg charts beside it). Headline figures of the last 7 "
            "days, monthly and daily trends, top datasets, questions waiting for an answer, new reuses, reuses "
            "whose address is broken or removed this week, themes and answer times, and when their tables are "
            "published: survey results, community events of the last 90 days and reusers to interview. "
            "Rewritten by every run: the week's files show the latest figures."
        ),
    )
    def weekly_digest(context: dg.AssetExecutionContext) -> dg.MaterializeResult:
        report_date = run_date(context.run.tags) or dt.date.today()
        paths = write_digests(published_dir / "usage.duckdb", reports_dir, report_date)
        pages = [path for path in paths if path.suffix == ".html"]
        context.log.info(f"{len(pages)} digests for {week_label(report_date)} written to {reports_dir}")
        return dg.MaterializeResult(
            metadata={
                "report_date": report_date.isoformat(),
                "week": week_label(report_date),
                "organizations": len(pages),
                "files": dg.MetadataValue.json([str(path) for path in paths]),
                "path": dg.MetadataValue.path(str(reports_dir)),
            }
        )

    return weekly_digest
