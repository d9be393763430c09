"""The weekly digest asset: every organization's HTML and Markdown pages and their charts, written atomically."""

import datetime as dt
import re
from pathlib import Path

import dagster as dg
import duckdb

from usage_pipeline.data_dir import DataDir
from usage_pipeline.files import write_atomically
from usage_pipeline.ingest.partitions import run_date
from usage_pipeline.insights.digest.charts import render_charts
from usage_pipeline.insights.digest.figures import Organization, build_context
from usage_pipeline.insights.digest.formatting import week_label
from usage_pipeline.insights.digest.queries import load_inputs, load_organizations
from usage_pipeline.insights.digest.render import render_html, render_markdown
from usage_pipeline.publish import PUBLISHED_KEY

DIGEST_KEY = dg.AssetKey(["published", "weekly_digest"])


def file_stem(organization: Organization, report_date: dt.date) -> str:
    """``<slug>-<YYYY>-W<WW>``, the slug reduced to characters safe in a file name."""
    slug = re.sub(r"[^A-Za-z0-9._-]+", "-", organization.slug).strip(".-") or "organization"
    return f"{slug}-{week_label(report_date)}"


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


@dg.asset(
    key=DIGEST_KEY,
    deps=[PUBLISHED_KEY],
    group_name="published",
    kinds={"python", "html"},
    description=(
        "A weekly digest per organization for the producer's team, readable without any tool: $USAGE_DATA_DIR/"
        "published/reports/<organization slug>-<ISO year>-W<week>.html (charts inline, no external asset, "
        "e-mailable) and .md (with the <...>-<chart>.svg charts beside it). Headline figures of the last 7 "
        "days, monthly and daily trends, top datasets, questions waiting for an answer, new reuses, reuses "
        "whose address is broken or removed this week, themes and answer times, and when their tables are "
        "published: survey results, community events of the last 90 days and reusers to interview. "
        "Rewritten by every run: the week's files show the latest figures."
    ),
)
def weekly_digest(context: dg.AssetExecutionContext, data_dir: DataDir) -> dg.MaterializeResult:
    """Every organization's digest for the ISO week of the run's date."""
    reports_dir = data_dir.reports_dir
    report_date = run_date(context.run.tags) or dt.date.today()
    paths = write_digests(data_dir.published_database, reports_dir, report_date)
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
