"""The digest's charts, drawn by matplotlib without pyplot or GUI: SVG documents for the pages, PNG images for the
e-mails (most mail clients, Outlook and Gmail among them, show no SVG)."""

import datetime as dt
import io
from typing import Any

import matplotlib as mpl
from matplotlib import ticker
from matplotlib.figure import Figure

from usage_pipeline.insights.digest.figures import Row
from usage_pipeline.insights.language import Reader

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


def _png(figure: Figure) -> bytes:
    """The figure as a PNG image at twice the screen resolution (sharp on high-density screens)."""
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=144, metadata={"Software": None}, bbox_inches="tight")
    return buffer.getvalue()


def monthly_chart(reader: Reader, monthly: list[Row]) -> Figure:
    """Bars of the monthly visits and downloads (the current, partial month lighter)."""
    with mpl.rc_context(_RC):
        figure = Figure(figsize=(7.2, 4.0), layout="constrained")
        top, bottom = figure.subplots(2, 1, sharex=True)
        ticks = [reader.month_tick(row["month"]) for row in monthly]
        positions = range(len(monthly))
        for axes, column, title, colors in (
            (top, "visits", reader.gettext("Visits of your dataset pages per month"), (_ACCENT, _ACCENT_LIGHT)),
            (bottom, "downloads", reader.gettext("Downloads per month"), (_DOWNLOADS, _DOWNLOADS_LIGHT)),
        ):
            bars = axes.bar(
                positions,
                [row[column] or 0 for row in monthly],
                color=[colors[0] if row["complete"] else colors[1] for row in monthly],
                width=0.7,
            )
            axes.set_title(title, color=_INK)
            _style(axes)
            values = [reader.number(row[column]) if row[column] is not None else "" for row in monthly]
            axes.bar_label(bars, labels=values, fontsize=7, color=_MUTED, padding=2)
            axes.margins(y=0.2)
        bottom.set_xticks(list(positions), ticks)
        return figure


def daily_chart(reader: Reader, daily: list[Row]) -> Figure:
    """Bars of the views and downloads gained per day (the last 7 days darker)."""
    with mpl.rc_context(_RC):
        figure = Figure(figsize=(7.2, 4.0), layout="constrained")
        top, bottom = figure.subplots(2, 1, sharex=True)
        days = [row["date"] for row in daily]
        for axes, column, title, colors in (
            (top, "views", reader.gettext("Views gained per day"), (_ACCENT, _ACCENT_LIGHT)),
            (bottom, "downloads", reader.gettext("Downloads gained per day"), (_DOWNLOADS, _DOWNLOADS_LIGHT)),
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
        bottom.set_xticks(mondays, [reader.short_day(day) for day in mondays])
        bottom.set_xlim(days[0] - dt.timedelta(days=1), days[-1] + dt.timedelta(days=1))
        return figure


def render_charts(reader: Reader, context: Row) -> list[Row]:
    """The digest's charts: name, title, note, SVG document and PNG image; a chart without data is left out."""
    salt = f"{context['organization'].slug}-{context['week']}"
    charts = []
    monthly = context["series"]["monthly"]
    if monthly:
        charts.append(
            {
                "name": "monthly",
                "title": reader.gettext(
                    "Visits and downloads per month, %(first)s to %(last)s",
                    first=reader.month_name(monthly[0]["month"]),
                    last=reader.month_name(monthly[-1]["month"]),
                ),
                "note": reader.gettext("Lighter bar: the current month, still being counted.")
                if not monthly[-1]["complete"]
                else "",
                "figure": monthly_chart(reader, monthly),
            }
        )
    daily = context["series"]["daily"]
    if any(row["views"] is not None for row in daily):
        charts.append(
            {
                "name": "daily",
                "title": reader.gettext(
                    "Views and downloads gained per day, the 8 weeks to %(day)s", day=reader.day(daily[-1]["date"])
                ),
                "note": reader.gettext(
                    "Darker bars: the last 7 days. No bar: not tracked yet, or nothing gained that day."
                ),
                "figure": daily_chart(reader, daily),
            }
        )
    for chart in charts:
        figure = chart.pop("figure")
        with mpl.rc_context(_RC):
            chart["svg"], chart["png"] = _svg(figure, f"{salt}-{chart['name']}"), _png(figure)
    return charts
