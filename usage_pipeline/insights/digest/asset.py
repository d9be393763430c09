"""The weekly digest asset: every organization's HTML and Markdown pages and their charts, written atomically."""

import datetime as dt
import glob
import re
from collections.abc import Iterator
from pathlib import Path

import dagster as dg
import duckdb

from usage_pipeline.data_dir import DataDir
from usage_pipeline.files import write_atomically
from usage_pipeline.ingest.partitions import run_date
from usage_pipeline.insights.digest.charts import render_charts
from usage_pipeline.insights.digest.delivery import (
    SENT_FILE,
    DeliveryError,
    Digest,
    Mailer,
    SmtpServer,
    deliver,
    load_recipients,
)
from usage_pipeline.insights.digest.figures import Organization, build_context
from usage_pipeline.insights.digest.formatting import week_label
from usage_pipeline.insights.digest.queries import load_inputs, load_organizations
from usage_pipeline.insights.digest.render import render_html, render_markdown
from usage_pipeline.insights.language import DEFAULT_LANGUAGE, Reader, reader
from usage_pipeline.publish import PUBLISHED_KEY
from usage_pipeline.warehouse import set_time_zone

DIGEST_KEY = dg.AssetKey(["published", "weekly_digest"])
DIGEST_EMAILED = "digest_emailed"
EMAIL_SUFFIX = ".email.html"  # the page the e-mail carries: its charts as attached PNG images


def file_stem(organization: Organization, report_date: dt.date) -> str:
    """``<slug>-<YYYY>-W<WW>``, the slug reduced to characters safe in a file name."""
    slug = re.sub(r"[^A-Za-z0-9._-]+", "-", organization.slug).strip(".-") or "organization"
    return f"{slug}-{week_label(report_date)}"


class ReaderLocale(dg.ConfigurableResource):
    """How the producer's people read: the digest's language (USAGE_LANGUAGE) and its days and weeks, days in
    ``timezone`` (USAGE_TIMEZONE)."""

    language: str = DEFAULT_LANGUAGE
    timezone: str = "Europe/Paris"


def write_digests(
    published_db: Path, reports_dir: Path, report_date: dt.date, timezone: str, language: str = DEFAULT_LANGUAGE
) -> list[Path]:
    """Write every organization's digest for the ISO week of ``report_date`` in ``language``, days taken in
    ``timezone``; returns the files written."""
    words = reader(language)
    if not published_db.exists():
        raise FileNotFoundError(f"no published database at {published_db}")
    reports_dir.mkdir(parents=True, exist_ok=True)
    written: list[Path] = []
    with duckdb.connect(str(published_db), read_only=True) as conn:
        set_time_zone(conn, timezone)  # the timestamps the figures receive are in the reader's zone
        for organization in load_organizations(conn):
            context = build_context(load_inputs(conn, organization, report_date), report_date)
            stem = file_stem(organization, report_date)
            charts = [
                {**chart, "file": f"{stem}-{chart['name']}.svg", "image": f"{stem}-{chart['name']}.png"}
                for chart in render_charts(words, context)
            ]
            for chart in charts:
                write_atomically(reports_dir / chart["file"], chart["svg"])
                write_atomically(reports_dir / chart["image"], chart["png"])
                written += [reports_dir / chart["file"], reports_dir / chart["image"]]
            pages = (
                (".html", render_html(words, context, charts)),
                (EMAIL_SUFFIX, render_html(words, context, charts, for_email=True)),
                (".md", render_markdown(words, context, charts)),
            )
            for suffix, text in pages:
                write_atomically(reports_dir / f"{stem}{suffix}", text)
                written.append(reports_dir / f"{stem}{suffix}")
    return written


def digests_written(published_db: Path, reports_dir: Path, report_date: dt.date, words: Reader) -> list[Digest]:
    """The digest of every organization for the week of ``report_date``, as `write_digests` named its files."""
    with duckdb.connect(str(published_db), read_only=True) as conn:
        organizations = load_organizations(conn)
    week = week_label(report_date)
    digests = []
    for organization in organizations:
        stem = file_stem(organization, report_date)
        subject = words.gettext(
            "%(organization)s: usage of your datasets, week %(week)s", organization=organization.name, week=week
        )
        html, markdown = reports_dir / f"{stem}{EMAIL_SUFFIX}", reports_dir / f"{stem}.md"
        images = tuple(sorted(reports_dir.glob(f"{glob.escape(stem)}-*.png")))
        digests.append(Digest(organization.id, organization.slug, week, subject, html, markdown, images))
    return digests


def email_digests(
    context: dg.AssetExecutionContext, data_dir: DataDir, mailer: Mailer, report_date: dt.date, words: Reader
) -> dg.AssetCheckResult:
    """Send the week's digests to recipients.yaml's addresses; failures are warnings, retried by the next run."""
    if not mailer.smtp_url:
        return dg.AssetCheckResult(check_name=DIGEST_EMAILED, passed=True, metadata={"skipped": "no USAGE_SMTP_URL"})
    try:
        recipients = load_recipients(data_dir.recipients_file)
        server = SmtpServer.from_url(mailer.smtp_url)
    except DeliveryError as error:
        context.log.warning(str(error))
        return dg.AssetCheckResult(
            check_name=DIGEST_EMAILED, passed=False, severity=dg.AssetCheckSeverity.WARN,
            metadata={"error": dg.MetadataValue.text(str(error))},
        )  # fmt: skip
    sender = mailer.sender_for(server)
    digests = digests_written(data_dir.published_database, data_dir.reports_dir, report_date, words)
    outcome = deliver(digests, recipients, server, sender, data_dir.reports_dir / SENT_FILE)
    for line in outcome.sent:
        context.log.info(f"digest e-mailed: {line}")
    for line in outcome.failed:
        context.log.warning(f"digest not e-mailed (tried again by the next run): {line}")
    return dg.AssetCheckResult(
        check_name=DIGEST_EMAILED,
        passed=not outcome.failed,
        severity=dg.AssetCheckSeverity.WARN,
        metadata={
            "sent": dg.MetadataValue.json(outcome.sent),
            "already_sent": dg.MetadataValue.json(outcome.already_sent),
            "without_recipient": dg.MetadataValue.json(outcome.without_recipient),
            **({"problems": dg.MetadataValue.json(outcome.failed)} if outcome.failed else {}),
        },
    )


@dg.asset(
    key=DIGEST_KEY,
    deps=[PUBLISHED_KEY],
    group_name="published",
    kinds={"python", "html"},
    check_specs=[
        dg.AssetCheckSpec(
            DIGEST_EMAILED,
            asset=DIGEST_KEY,
            description="every digest with recipients (recipients.yaml) reached the SMTP server of USAGE_SMTP_URL",
        )
    ],
    description=(
        "A weekly digest per organization for the producer's team, readable without any tool: $USAGE_DATA_DIR/"
        "published/reports/<organization slug>-<ISO year>-W<week>.html (charts inline, no external asset), "
        ".md (with the <...>-<chart>.svg charts beside it) and .email.html (the page e-mailed, its charts the "
        "<...>-<chart>.png images attached to the message), in USAGE_LANGUAGE. Headline figures of the last 7 "
        "days, monthly and daily trends, top datasets, questions waiting for an answer, new reuses, reuses "
        "whose address is broken or removed this week, themes and answer times, and when their tables are "
        "published: survey results, community events of the last 90 days and reusers to interview. "
        "Rewritten by every run: the week's files show the latest figures."
    ),
)
def weekly_digest(
    context: dg.AssetExecutionContext, data_dir: DataDir, locale: ReaderLocale, mailer: Mailer
) -> Iterator[dg.MaterializeResult | dg.AssetCheckResult]:
    """Every organization's digest for the ISO week of the run's date."""
    reports_dir = data_dir.reports_dir
    report_date = run_date(context.run.tags) or dt.date.today()
    paths = write_digests(data_dir.published_database, reports_dir, report_date, locale.timezone, locale.language)
    pages = [path for path in paths if path.suffix == ".html"]
    context.log.info(f"{len(pages)} digests for {week_label(report_date)} written to {reports_dir}")
    yield dg.MaterializeResult(
        metadata={
            "report_date": report_date.isoformat(),
            "week": week_label(report_date),
            "organizations": len(pages),
            "files": dg.MetadataValue.json([str(path) for path in paths]),
            "path": dg.MetadataValue.path(str(reports_dir)),
        }
    )
    yield email_digests(context, data_dir, mailer, report_date, reader(locale.language))
