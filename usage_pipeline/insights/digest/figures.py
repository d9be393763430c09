"""Every figure and list of a digest, computed from the rows `queries.load_inputs` read: pure functions, no I/O."""

import datetime as dt
import re
import statistics
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote, urlsplit

from usage_pipeline.dates import month_key
from usage_pipeline.insights.digest.formatting import safe_url, shorten, week_label

WEEK = 7
DAILY_CHART_DAYS = 56  # the last 8 weeks
MONTHLY_CHART_MONTHS = 12
ANSWER_MONTHS = 3
TOP_DATASETS = 5
EVENT_DAYS = 90  # community events shown: those of the last 90 days
EVENT_WINDOW_DAYS = 14  # reporting.event_impact compares the 14 days from the event with the 14 days before
SURVEY_NEEDS = 10  # needs of the week's survey answers shown, the latest first
NEEDS_CHARACTERS = 280  # a longer needs text is shortened
PEOPLE_DATASETS = 3  # most viewed datasets whose reusers are suggested for an interview
PEOPLE_PER_DATASET = 3
LEAD_DATASETS = 5  # datasets whose undeclared reuses the digest lists, those with the latest leads first
LEADS_PER_DATASET = 3
DEFAULT_PORTAL = "https://www.data.gouv.fr"

Row = dict[str, Any]


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
    leads: list[Row] = field(default_factory=list)  # reuse_leads rows still `new`, the latest found first


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
    """How ``value`` compares with ``previous``: difference, ratio to ``previous`` (None from zero) and direction
    (up, down, flat, or none when either is unknown); the reader's words come from `language.Reader.change_short`."""
    if value is None or previous is None:
        return {"difference": None, "ratio": None, "direction": "none"}
    difference = value - previous
    direction = "up" if difference > 0 else "down" if difference < 0 else "flat"
    return {"difference": difference, "ratio": difference / previous if previous else None, "direction": direction}


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
    this_month, last_month = month_key(report_date), month_key(report_date, 1)
    counts: dict[str, dict[str, int]] = defaultdict(lambda: {this_month: 0, last_month: 0})
    for row in rows:
        if row["month"] in (this_month, last_month):
            counts[row["theme"]][row["month"]] += int(row["discussions"] or 0)
    themes = [
        {"theme": theme, "count": count[this_month], "previous": count[last_month]} for theme, count in counts.items()
    ]
    themes.sort(key=lambda row: (-row["count"], -row["previous"], row["theme"]))
    return {"month": this_month, "previous_month": last_month, "rows": themes}


def answer_summary(rows: Iterable[Row], report_date: dt.date) -> Row:
    """Answer rate and times of the discussions opened in the last 3 months, from reporting.response_times rows.

    Counts add up exactly; the median of several datasets or months is the median of their medians, each
    weighted by its answered discussions (``median_is_exact`` is False then); the data.gouv.fr indicator (mean
    of capped delays) is the answered-weighted mean, exact.
    """
    first_month, last_month = month_key(report_date, ANSWER_MONTHS - 1), month_key(report_date)
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
    """The day of ``value`` in the reader's zone: `write_digests` reads timestamps in it (a date is kept as is)."""
    return value.date() if isinstance(value, dt.datetime) else value


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
                reuse = broken.setdefault(
                    row["reuse_id"], {**row, "datasets": [], "checked_on": local_day(row["link_checked_at"])}
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
            "themes": theme_counts(row.get("top_needs_themes")),
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


def theme_counts(text: str | None) -> list[tuple[str, int]]:
    """reporting.survey_summary.top_needs_themes (``usability (4), freshness (2)``) as (theme, count) pairs."""
    return [(theme, int(count)) for theme, count in re.findall(r"(\w+) \((\d+)\)", text or "")]


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
                        "name": row.get("name") or row.get("slug"),
                        "type": row.get("reuser_type") or "user",
                        "url": profile_url(base, row.get("reuser_type"), row.get("slug")),
                        "reuses": int(row.get("reuses_published") or 0),
                        "reuse_types": row.get("reuse_types"),
                        "discussions": int(row.get("discussions_opened") or 0),
                        "replies": int(row.get("replies_posted") or 0),
                        "last_active": local_day(row.get("last_activity_at")),
                    }
                    for row in rows
                ],
            }
        )
    return people


def leads_to_invite(rows: Iterable[Row], datasets: dict[str, Row]) -> Row | None:
    """The undeclared reuses to invite, by dataset: the latest found first, at most 3 for each of 5 datasets, each
    dataset with the portal's form to declare a reuse; ``total``: all the new leads. None without any."""
    by_dataset: dict[str, list[Row]] = defaultdict(list)
    for row in rows:  # the latest first
        if row["dataset_id"] in datasets and datasets[row["dataset_id"]].get("status") != "gone":
            by_dataset[row["dataset_id"]].append(row)
    if not by_dataset:
        return None
    return {
        "total": sum(len(leads) for leads in by_dataset.values()),
        "datasets": [
            {
                "dataset_id": key,
                "title": datasets[key].get("title") or key,
                "page_url": datasets[key].get("page_url"),
                "form_url": f"{portal_base(datasets[key].get('page_url'))}/admin/reuses/new",
                "leads": leads[:LEADS_PER_DATASET],
                "more": max(0, len(leads) - LEADS_PER_DATASET),
            }
            for key, leads in list(by_dataset.items())[:LEAD_DATASETS]
        ],
    }


def chart_series(
    monthly_rows: Iterable[Row], gains: dict[str, dict[dt.date, tuple[float, float]]], report_date: dt.date
) -> Row:
    """The charts' data: months (from the first with figures, up to 12) and the last 56 days' gains."""
    by_month = {row["month"]: row for row in monthly_rows}
    months = [month_key(report_date, back) for back in range(MONTHLY_CHART_MONTHS - 1, -1, -1)]
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
        "leads": leads_to_invite(inputs.leads, datasets),
        "series": chart_series(inputs.monthly, gains, report_date),
    }
