"""The weekly digest, on a small published DuckDB built here (no pipeline run)."""

import datetime as dt
import re
import xml.etree.ElementTree as ET
from html.parser import HTMLParser
from pathlib import Path

import dagster as dg
import duckdb
import pytest

from usage_pipeline.data_dir import DataDir
from usage_pipeline.dates import month_key
from usage_pipeline.demo.mail_server import MailCatcher
from usage_pipeline.ingest.partitions import day_range_tags
from usage_pipeline.insights.digest import asset, figures, formatting, queries
from usage_pipeline.insights.digest.delivery import SmtpServer
from usage_pipeline.insights.language import reader
from usage_pipeline.warehouse import set_time_zone

REPORT_DATE = dt.date(2026, 11, 20)  # a Friday of ISO week 2026-W47
PARIS = "Europe/Paris"
EN = reader("en")  # these tests read the English digest; test_language.py reads the French one
PORTAL = "https://www.data.gouv.fr/fr"
BUDGET_TITLE = "Budget <script>alert(1)</script> & comptes"

DATASETS = [
    # dataset_id, organization_id, organization_name, organization_slug, title, page_url, status
    ("ds-a1", "org-a", "Ville de Test", "ville-de-test", BUDGET_TITLE, f"{PORTAL}/datasets/budget/", "active"),
    ("ds-a2", "org-a", "Ville de Test", "ville-de-test", "Population", f"{PORTAL}/datasets/population/", "active"),
    ("ds-a3", "org-a", "Ville de Test", "ville-de-test", "Ancien jeu", f"{PORTAL}/datasets/ancien/", "gone"),
    (
        "ds-b1",
        "org-b",
        "Région <Exemple> & Co",
        "region-exemple",
        "Transport",
        f"{PORTAL}/datasets/transport/",
        "active",
    ),
]


def _daily_rows() -> list[tuple]:
    """Known deltas. Previous window 7-13 Nov, week 14-20 Nov.

    ds-a1: views +10/day then +20/day (70 -> 140), downloads +2 then +3 (14 -> 21), a follower and a reuse gained.
    ds-a2: views +5/day (35 -> 35) with no snapshot on 17 Nov (the 18 Nov delta covers two days), downloads +1 then
    +4 (7 -> 28). ds-b1: tracked from 11 Nov only, views +7/day (49 this week, nothing to compare with).
    """
    rows = []

    def add(dataset_id: str, organization_id: str, days: list[dt.date], views_per_day, downloads_per_day, **counters):
        views = downloads = 1000
        previous = None
        for day in days:
            gap = (day - previous).days if previous else None
            if previous:
                views_delta = sum(views_per_day(previous + dt.timedelta(days=i + 1)) for i in range(gap))
                downloads_delta = sum(downloads_per_day(previous + dt.timedelta(days=i + 1)) for i in range(gap))
                views, downloads = views + views_delta, downloads + downloads_delta
            else:
                views_delta = downloads_delta = None
            followers = counters["followers"](day)
            reuses = counters["reuses"](day)
            rows.append(
                (
                    dataset_id,
                    organization_id,
                    day,
                    views,
                    downloads,
                    followers,
                    reuses,
                    0,
                    views_delta,
                    downloads_delta,
                    gap,
                )
            )
            previous = day

    week_start = dt.date(2026, 11, 14)
    days_a = [dt.date(2026, 11, 6) + dt.timedelta(days=i) for i in range(15)]
    add(
        "ds-a1",
        "org-a",
        days_a,
        lambda d: 20 if d >= week_start else 10,
        lambda d: 3 if d >= week_start else 2,
        followers=lambda d: 4 if d >= dt.date(2026, 11, 16) else 3,
        reuses=lambda d: 2 if d >= dt.date(2026, 11, 18) else 1,
    )
    add(
        "ds-a2",
        "org-a",
        [d for d in days_a if d != dt.date(2026, 11, 17)],
        lambda d: 5,
        lambda d: 4 if d >= week_start else 1,
        followers=lambda d: 2,
        reuses=lambda d: 0,
    )
    days_b = [dt.date(2026, 11, 11) + dt.timedelta(days=i) for i in range(10)]
    add("ds-b1", "org-b", days_b, lambda d: 7, lambda d: 1, followers=lambda d: 5, reuses=lambda d: 1)
    return rows


def _reuse(reuse_id: str, dataset_id: str, title: str, kind: str, url: str, created: str, first_seen: str, **more):
    """A reporting.reuses row; ``more``: last_seen, removed, checked (instant), ok, broken, owner."""
    slug = reuse_id.removeprefix("r-")
    owner = more.get("owner")
    return (
        reuse_id,
        dataset_id,
        title,
        kind,
        "economy_and_finance",
        url,
        f"{PORTAL}/reuses/{slug}/",
        "user" if owner else None,
        "u-owner" if owner else None,
        owner,
        "owner" if owner else None,
        10,
        1,
        created,
        first_seen,
        more.get("last_seen", "2026-11-20"),
        more.get("removed"),
        more.get("checked"),
        more.get("ok"),
        more.get("broken", False),
    )


def _reuse_rows() -> list[tuple]:
    checked = "2026-11-20 05:00:00+00"
    late = "2026-11-19 23:30:00+00"  # 20 Nov in Paris
    return [
        _reuse(
            "r-new", "ds-a2", "Carte de la population", "visualization", "https://example.org/carte",
            "2026-11-17 12:00:00+00", "2026-11-18", checked=checked, ok=True, owner="Open Asso",
        ),
        _reuse(
            "r-start", "ds-a1", "Déjà là", "application", "https://example.org/app", "2025-01-01 00:00:00+00",
            "2026-11-06", checked=checked, ok=True,
        ),
        # Broken on two datasets of org A: listed once, with both titles.
        *(
            _reuse(
                "r-old", dataset, "Ancienne", "news_article", "https://example.org/old?a=1&b=2",
                "2025-01-01 00:00:00+00", "2026-10-01", checked=late, ok=False, broken=True,
                owner="Jean <b>Dupont</b>",
            )
            for dataset in ("ds-a1", "ds-a2")
        ),
        _reuse(
            "r-evil", "ds-a1", "Lien douteux", "post", "javascript:alert(1)", "2026-11-19 08:00:00+00", "2026-11-19"
        ),
        _reuse(  # removed this week
            "r-gone", "ds-a2", "Appli retirée", "application", "https://example.org/gone", "2025-06-01 00:00:00+00",
            "2026-10-01", last_seen="2026-11-16", removed="2026-11-17", checked="2026-11-15 05:00:00+00", ok=True,
        ),
        _reuse(  # removed weeks ago
            "r-gone-old", "ds-a1", "Retirée il y a longtemps", "post", "https://example.org/long",
            "2025-06-01 00:00:00+00", "2026-09-01", last_seen="2026-10-04", removed="2026-10-05",
        ),
        _reuse(  # broken, but no longer on the dataset: nothing to do
            "r-dead", "ds-a1", "Morte et retirée", "post", "https://example.org/dead", "2025-06-01 00:00:00+00",
            "2026-09-01", last_seen="2026-11-01", removed="2026-11-02", checked=checked, ok=False, broken=True,
        ),
        _reuse(
            "r-region", "ds-b1", "Tableau régional", "visualization", "https://example.org/region",
            "2025-06-01 00:00:00+00", "2026-11-11", checked=checked, ok=False, broken=True,
        ),
    ]  # fmt: skip


SURVEY_SUMMARY_SQL = Path(__file__).parents[1] / "dbt_like_sql" / "reporting" / "survey_summary.sql"


def _survey_tables(conn: duckdb.DuckDBPyConnection) -> None:
    """reporting.survey_responses, and reporting.survey_summary built from it by the published SQL."""
    conn.execute(
        "CREATE TABLE reporting.survey_responses (file VARCHAR, row_number INTEGER, dataset_id VARCHAR,"
        " dataset_title VARCHAR, submitted_at TIMESTAMPTZ, satisfaction INTEGER, needs VARCHAR, needs_theme VARCHAR,"
        " needs_evidence VARCHAR[], reuse_type VARCHAR, respondent_organization VARCHAR, respondent_hash VARCHAR)"
    )
    rows = [
        ("ds-a1", "2026-10-02 10:00:00+00", 5, "Documentation des colonnes", "usability"),  # before the week
        ("ds-a1", "2026-11-18 10:00:00+00", 2, "Il manque 2024 <b>vite</b> & bien", "freshness"),
        ("ds-a1", "2026-11-19 10:00:00+00", 4, "   ", None),  # says nothing
        ("ds-a1", "2026-11-13 23:30:00+00", None, "Plus de   détail\npar quartier", "usability"),  # 14 Nov in Paris
        ("ds-a1", "2026-11-20 23:30:00+00", 3, "Trop tard", "other"),  # 21 Nov in Paris: after the week
        *(("ds-a2", f"2026-11-15 {8 + i:02d}:00:00+00", 4, f"Besoin {i:02d}", "reliability") for i in range(11)),
        ("ds-b1", "2026-11-16 10:00:00+00", 1, "Besoin de la région", "accessibility"),
    ]
    titles = {row[0]: row[4] for row in DATASETS}
    conn.executemany(
        "INSERT INTO reporting.survey_responses VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        [
            ("survey.csv", index + 2, dataset, titles[dataset], at, rating, needs, theme, [], "app", None, None)
            for index, (dataset, at, rating, needs, theme) in enumerate(rows)
        ],
    )
    conn.execute(f"CREATE TABLE reporting.survey_summary AS {SURVEY_SUMMARY_SQL.read_text()}")


def _event_table(conn: duckdb.DuckDBPyConnection) -> None:
    conn.execute(
        "CREATE TABLE reporting.event_impact (event_date DATE, title VARCHAR, kind VARCHAR, dataset_id VARCHAR,"
        " views_before BIGINT, views_after BIGINT, downloads_before BIGINT, downloads_after BIGINT,"
        " discussions_before BIGINT, discussions_after BIGINT, reuses_before BIGINT, reuses_after BIGINT,"
        " days_observed_before BIGINT, days_observed_after BIGINT, views_change_pct DOUBLE)"
    )
    workshop = "Atelier <données> & budget"
    conn.executemany(
        "INSERT INTO reporting.event_impact VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        [
            ("2026-11-05", workshop, "workshop", "ds-a1", 100, 250, 20, 40, 0, 2, 0, 1, 14, 14, 150.0),
            ("2026-11-05", workshop, "workshop", "ds-a2", None, 60, None, 10, 0, 1, 0, 0, 0, 14, None),
            ("2026-11-19", "Lettre d'information", "newsletter", "ds-a2", 65, 10, 7, 8, 0, 0, 0, 0, 13, 2, -84.6),
            ("2026-08-01", "Vieux webinaire", "webinar", "ds-a1", 10, 20, 1, 2, 0, 0, 0, 0, 14, 14, 100.0),
            ("2026-11-25", "Hackathon à venir", "hackathon", "ds-a1", 140, None, 21, None, 0, 0, 0, 0, 14, 0, None),
            ("2026-11-12", "Rencontre régionale", "workshop", "ds-b1", 7, 56, 1, 8, 0, 0, 0, 0, 1, 9, 700.0),
        ],
    )


def _candidate_table(conn: duckdb.DuckDBPyConnection) -> None:
    conn.execute(
        "CREATE TABLE reporting.interview_candidates (dataset_id VARCHAR, rank BIGINT, reuser_type VARCHAR,"
        " reuser_id VARCHAR, name VARCHAR, slug VARCHAR, dataset_score DOUBLE, reuses_published BIGINT,"
        " reuse_types VARCHAR, discussions_opened BIGINT, replies_posted BIGINT, last_activity_at TIMESTAMPTZ)"
    )
    conn.executemany(
        "INSERT INTO reporting.interview_candidates VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        [
            ("ds-a2", 1, "user", "u-bob", "Bob Martin", "bob martin/x", 5.0, 0, None, 1, 0, "2026-11-15 10:00:00+00"),
            ("ds-a1", 1, "user", "u-alice", "Alice Durand", "alice-durand", 11.0, 1, "application", 1, 0,
             "2026-11-17 23:30:00+00"),  # the 18th in Paris
            ("ds-a1", 2, "organization", "o-asso", "Open <Asso> & co", "open-asso", 8.0, 2, "visualization, api", 0, 0,
             "2026-11-17 10:00:00+00"),
            ("ds-a1", 3, "user", "u-anon", "Sans Profil", None, 3.0, 0, None, 0, 1, "2026-06-01 10:00:00+00"),
            ("ds-a1", 4, "user", "u-fourth", "Quatrième", "quatrieme", 2.0, 0, None, 0, 1, "2026-05-01 10:00:00+00"),
            ("ds-a3", 1, "user", "u-ghost", "Fantôme", "fantome", 9.0, 0, None, 3, 0, "2026-01-01 10:00:00+00"),
            ("ds-b1", 1, "organization", "o-bus", "Collectif Bus", "collectif-bus", 5.0, 1, "api", 0, 0,
             "2026-11-12 10:00:00+00"),
        ],
    )  # fmt: skip


def build_published_db(path: Path) -> Path:
    """A published copy with the reporting columns the digest reads."""
    with duckdb.connect(str(path)) as conn:
        conn.execute("CREATE SCHEMA reporting")
        conn.execute(
            "CREATE TABLE reporting.datasets (dataset_id VARCHAR, organization_id VARCHAR, organization_name VARCHAR,"
            " organization_slug VARCHAR, title VARCHAR, page_url VARCHAR, status VARCHAR)"
        )
        conn.executemany("INSERT INTO reporting.datasets VALUES (?, ?, ?, ?, ?, ?, ?)", DATASETS)
        conn.execute(
            "CREATE TABLE reporting.dataset_usage_daily (dataset_id VARCHAR, organization_id VARCHAR, date DATE,"
            " views BIGINT, downloads BIGINT, followers BIGINT, reuses BIGINT, discussions BIGINT,"
            " views_delta BIGINT, downloads_delta BIGINT, days_since_previous BIGINT)"
        )
        conn.executemany(
            "INSERT INTO reporting.dataset_usage_daily VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)", _daily_rows()
        )
        conn.execute(
            "CREATE TABLE reporting.dataset_usage_monthly (dataset_id VARCHAR, month VARCHAR, visits BIGINT,"
            " downloads BIGINT, is_complete BOOLEAN)"
        )
        conn.executemany(
            "INSERT INTO reporting.dataset_usage_monthly VALUES (?, ?, ?, ?, ?)",
            [
                ("ds-a1", "2025-10", 13579, 99, True),  # 13 months back: out of the chart
                ("ds-a1", "2026-08", 1200, 300, True),
                ("ds-a2", "2026-08", 800, 100, True),
                ("ds-a1", "2026-09", 1500, 350, True),
                ("ds-a1", "2026-10", 1700, 420, True),
                ("ds-a2", "2026-10", 300, 80, True),
                ("ds-a1", "2026-11", 900, 200, False),
            ],
        )
        conn.execute(
            "CREATE TABLE reporting.discussions_awaiting_answer (discussion_id VARCHAR, dataset_id VARCHAR,"
            " organization_id VARCHAR, dataset_title VARCHAR, title VARCHAR, url VARCHAR, asker VARCHAR,"
            " opened_at TIMESTAMPTZ, waiting_since TIMESTAMPTZ, waiting_days BIGINT, theme VARCHAR,"
            " theme_needs_review BOOLEAN)"
        )
        conn.executemany(
            "INSERT INTO reporting.discussions_awaiting_answer VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            [  # newest first, to check the digest orders them
                (
                    "d-new",
                    "ds-a2",
                    "org-a",
                    "Population",
                    "Chiffres faux en 2025 ?",
                    f"{PORTAL}/datasets/population/#/discussions/d-new",
                    "Bob Martin",
                    "2026-11-15 09:00:00+00",
                    "2026-11-15 09:00:00+00",
                    5,
                    "reliability",
                    True,
                ),
                (
                    "d-old",
                    "ds-a1",
                    "org-a",
                    BUDGET_TITLE,
                    "Prochaine mise à jour ?",
                    f"{PORTAL}/datasets/budget/#/discussions/d-old",
                    "Alice Durand",
                    "2026-09-28 10:00:00+00",
                    "2026-10-01 10:00:00+00",
                    50,
                    "freshness",
                    False,
                ),
            ],
        )
        conn.execute(
            "CREATE TABLE reporting.reuses (reuse_id VARCHAR, dataset_id VARCHAR, title VARCHAR, type VARCHAR,"
            " topic VARCHAR, url VARCHAR, page_url VARCHAR, owner_type VARCHAR, owner_id VARCHAR, owner_name VARCHAR,"
            " owner_slug VARCHAR, views BIGINT, followers BIGINT, created_at TIMESTAMPTZ, first_seen_date DATE,"
            " last_seen_date DATE, removed_date DATE, link_checked_at TIMESTAMPTZ, link_ok BOOLEAN,"
            " link_broken BOOLEAN)"
        )
        conn.executemany(f"INSERT INTO reporting.reuses VALUES ({', '.join(['?'] * 20)})", _reuse_rows())
        _survey_tables(conn)
        _event_table(conn)
        _candidate_table(conn)
        conn.execute(
            "CREATE TABLE reporting.discussion_themes (dataset_id VARCHAR, month VARCHAR, theme VARCHAR,"
            " discussions BIGINT)"
        )
        conn.executemany(
            "INSERT INTO reporting.discussion_themes VALUES (?, ?, ?, ?)",
            [
                ("ds-a1", "2026-11", "freshness", 2),
                ("ds-a2", "2026-11", "freshness", 1),
                ("ds-a1", "2026-11", "reliability", 1),
                ("ds-a2", "2026-10", "usability", 3),
                ("ds-b1", "2026-11", "accessibility", 4),
            ],
        )
        conn.execute(
            "CREATE TABLE reporting.response_times (organization_id VARCHAR, dataset_id VARCHAR, month VARCHAR,"
            " discussions_opened BIGINT, answered BIGINT, answered_share DOUBLE, median_days_to_first_answer DOUBLE,"
            " mean_days_to_first_answer_capped DOUBLE)"
        )
        conn.executemany(
            "INSERT INTO reporting.response_times VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            [
                ("org-a", "ds-a1", "2026-08", 5, 5, 1.0, 1.0, 1.0),  # before the last 3 months
                ("org-a", "ds-a1", "2026-09", 2, 2, 1.0, 1.5, 1.5),
                ("org-a", "ds-a2", "2026-10", 3, 2, 2 / 3, 4.0, 4.0),
                ("org-a", "ds-a1", "2026-11", 3, 0, 0.0, None, None),
            ],
        )
    return path


@pytest.fixture
def published(tmp_path: Path) -> Path:
    return build_published_db(tmp_path / "usage.duckdb")


def _context(published: Path, organization_id: str = "org-a") -> dict:
    with duckdb.connect(str(published), read_only=True) as conn:
        set_time_zone(conn, PARIS)
        organization = next(org for org in queries.load_organizations(conn) if org.id == organization_id)
        return figures.build_context(queries.load_inputs(conn, organization, REPORT_DATE), REPORT_DATE)


def _section(html: str, name: str) -> str:
    """The HTML of ``<section id="name">``; empty when the digest has no such section."""
    start = html.find(f'<section id="{name}">')
    return "" if start < 0 else html[start : html.index("</section>", start)]


def _md_section(markdown: str, title: str) -> str:
    """The Markdown from ``## title`` to the next second-level heading or rule; empty when absent."""
    if f"\n## {title}\n" not in markdown:
        return ""
    return re.split(r"\n## |\n---\n", markdown.split(f"\n## {title}\n", 1)[1])[0]


class _Balance(HTMLParser):
    """Checks that every element opened is closed in order (void elements aside)."""

    VOID = frozenset({"meta", "br", "hr", "img", "link", "input", "wbr", "source", "col", "area", "base", "embed"})

    def __init__(self) -> None:
        super().__init__()
        self.stack: list[str] = []
        self.errors: list[str] = []
        self.text: list[str] = []

    def handle_starttag(self, tag: str, attrs: list) -> None:
        if tag not in self.VOID:
            self.stack.append(tag)

    def handle_endtag(self, tag: str) -> None:
        if not self.stack or self.stack[-1] != tag:
            self.errors.append(f"</{tag}> closes {self.stack[-1:]}")
        else:
            self.stack.pop()

    def handle_data(self, data: str) -> None:
        self.text.append(data)


def test_files_per_organization_and_iso_week(published: Path, tmp_path: Path) -> None:
    reports = tmp_path / "reports"
    paths = asset.write_digests(published, reports, REPORT_DATE, PARIS, "en")
    assert {path.name for path in paths} == {
        "ville-de-test-2026-W47.html",
        "ville-de-test-2026-W47.email.html",
        "ville-de-test-2026-W47.md",
        "ville-de-test-2026-W47-monthly.svg",
        "ville-de-test-2026-W47-monthly.png",
        "ville-de-test-2026-W47-daily.svg",
        "ville-de-test-2026-W47-daily.png",
        "region-exemple-2026-W47.html",
        "region-exemple-2026-W47.email.html",
        "region-exemple-2026-W47.md",
        "region-exemple-2026-W47-daily.svg",  # no monthly figures for this one: no monthly chart
        "region-exemple-2026-W47-daily.png",
    }
    assert sorted(path.name for path in reports.iterdir()) == sorted(path.name for path in paths)
    assert formatting.week_label(dt.date(2027, 1, 1)) == "2026-W53"  # the ISO year, not the calendar year


def test_headline_figures_from_the_deltas(published: Path, tmp_path: Path) -> None:
    context = _context(published)
    headline = context["headline"]
    assert headline["views"]["value"] == 140 + 35
    assert headline["downloads"]["value"] == 21 + 28
    assert EN.change_text(headline["views"]["change"]) == "+70 (+67%) vs the 7 days before"
    assert EN.change_text(headline["downloads"]["change"]) == "+28 (+133%) vs the 7 days before"
    assert headline["followers"] == {"value": 6, "change": 1}
    assert headline["reuses"] == {"value": 2, "new": 2, "broken": 1}
    assert headline["open_questions"] == {"value": 2, "oldest_days": 50}
    assert context["as_of"] == REPORT_DATE

    asset.write_digests(published, tmp_path / "reports", REPORT_DATE, PARIS, "en")
    markdown = (tmp_path / "reports" / "ville-de-test-2026-W47.md").read_text()
    assert "**Views (7 days):** 175, +70 (+67%) vs the 7 days before" in markdown
    html = (tmp_path / "reports" / "ville-de-test-2026-W47.html").read_text()
    assert '<div class="value">175</div>' in html

    # Tracked since 11 Nov only: the week is measured, the week before is not.
    other = _context(published, "org-b")["headline"]["views"]
    assert other["value"] == 49
    assert other["change"]["direction"] == "none"
    markdown = (tmp_path / "reports" / "region-exemple-2026-W47.md").read_text()
    assert "**Views (7 days):** 49 (not enough history yet to compare)" in markdown


def test_not_enough_history_in_the_first_week(published: Path) -> None:
    with duckdb.connect(str(published), read_only=True) as conn:
        organization = queries.load_organizations(conn)[0]
        day = dt.date(2026, 11, 9)
        views = figures.build_context(queries.load_inputs(conn, organization, day), day)["headline"]["views"]
    assert views["value"] == 30 + 15  # 7, 8 and 9 Nov
    assert views["partial_since"] == dt.date(2026, 11, 6)
    assert EN.change_text(views["change"]) == "not enough history yet to compare"


def test_top_datasets_with_their_change(published: Path, tmp_path: Path) -> None:
    context = _context(published)
    top_views = [
        (row["dataset_id"], row["views"], EN.change_short(row["views_change"])) for row in context["top_views"]
    ]
    assert top_views == [("ds-a1", 140, "+70 (+100%)"), ("ds-a2", 35, "no change")]
    assert [(row["dataset_id"], row["downloads"]) for row in context["top_downloads"]] == [("ds-a2", 28), ("ds-a1", 21)]

    asset.write_digests(published, tmp_path, REPORT_DATE, PARIS, "en")
    markdown = (tmp_path / "ville-de-test-2026-W47.md").read_text()
    viewed = markdown.split("### Most viewed")[1].split("### Most downloaded")[0]
    first_row = next(line for line in viewed.splitlines() if line.startswith("| ["))
    assert f"({PORTAL}/datasets/budget/)" in first_row and "| 140 | +70 (+100%) |" in first_row


def test_discussions_oldest_first_with_links(published: Path, tmp_path: Path) -> None:
    asset.write_digests(published, tmp_path, REPORT_DATE, PARIS, "en")
    html = (tmp_path / "ville-de-test-2026-W47.html").read_text()
    markdown = (tmp_path / "ville-de-test-2026-W47.md").read_text()
    for text in (html, markdown):
        old, new = text.index(f"{PORTAL}/datasets/budget/#/discussions/d-old"), text.index("discussions/d-new")
        assert old < new
        assert "Alice Durand" in text and "50 days" in text and "Freshness" in text
    assert f'<a href="{PORTAL}/datasets/budget/#/discussions/d-old">Prochaine mise à jour ?</a>' in html
    assert "Bob Martin" in markdown and "5 days (since 15 Nov 2026)" in markdown
    # The classifier was unsure of the newer one's theme: the digest asks for a look, and says how to correct it.
    assert "| Reliability (to review) |" in markdown and "| Freshness |" in markdown
    assert "`theme_corrections.csv`" in markdown
    assert '<span class="tag">Reliability</span> <span class="small muted">to review</span>' in html
    # The other organization's digest says so when nothing waits.
    assert "No question is waiting for an answer." in (tmp_path / "region-exemple-2026-W47.md").read_text()


def test_new_reuses_only(published: Path, tmp_path: Path) -> None:
    reuses = _context(published)["new_reuses"]
    assert [(reuse["reuse_id"], reuse["datasets"]) for reuse in reuses] == [
        ("r-new", ["Population"]),
        ("r-evil", [BUDGET_TITLE]),
    ]
    asset.write_digests(published, tmp_path, REPORT_DATE, PARIS, "en")
    html = _section((tmp_path / "ville-de-test-2026-W47.html").read_text(), "reuses")
    assert f'<a href="{PORTAL}/reuses/new/">Carte de la population</a>' in html
    assert 'href="https://example.org/carte"' in html and "visualization" in html and "by Open Asso" in html
    assert "Déjà là" not in html and "Ancienne" not in html  # there when tracking started / weeks ago
    assert f'<a href="{PORTAL}/reuses/evil/">Lien douteux</a>' in html  # its javascript: address is no link
    markdown = (tmp_path / "ville-de-test-2026-W47.md").read_text()
    assert (
        f"- [Carte de la population]({PORTAL}/reuses/new/) (visualization), uses Population, by Open Asso" in markdown
    )
    assert "javascript:" not in markdown


def test_themes_and_answers(published: Path, tmp_path: Path) -> None:
    context = _context(published)
    assert context["themes"]["rows"] == [
        {"theme": "freshness", "count": 3, "previous": 0},
        {"theme": "reliability", "count": 1, "previous": 0},
        {"theme": "usability", "count": 0, "previous": 3},
    ]
    answers = context["answers"]
    assert (answers["opened"], answers["answered"], answers["share"]) == (8, 4, 0.5)
    assert answers["median_days"] == pytest.approx(2.75)  # 1.5 x2 and 4.0 x2
    assert answers["kpi_days"] == pytest.approx(2.75)
    asset.write_digests(published, tmp_path, REPORT_DATE, PARIS, "en")
    markdown = (tmp_path / "ville-de-test-2026-W47.md").read_text()
    assert "| November 2026 | October 2026 |" in markdown
    assert re.search(r"\| \*\*Freshness\*\*: data not up to date.* \| 3 \| 0 \|", markdown)
    assert "4 of the 8 discussions opened were answered (50%)" in markdown
    assert "Accessibility" not in markdown.split("## What reusers ask about")[1].split("###")[0]  # org B's


def test_html_is_well_formed_self_contained_and_escaped(published: Path, tmp_path: Path) -> None:
    asset.write_digests(published, tmp_path, REPORT_DATE, PARIS, "en")
    for name in ("ville-de-test-2026-W47.html", "region-exemple-2026-W47.html"):
        html = (tmp_path / name).read_text()
        parser = _Balance()
        parser.feed(html)
        parser.close()
        assert parser.errors == [] and parser.stack == [], name
        assert html.lstrip().startswith("<!DOCTYPE html>")
        assert "<script" not in html.lower() and "javascript:" not in html.lower()
        assert not re.search(r"""(src|href)=["'](?!https?://)""", html)  # no local or external asset to load
        assert "About these figures" in html and "harvested datasets" in html
    html = (tmp_path / "ville-de-test-2026-W47.html").read_text()
    assert "Budget &lt;script&gt;alert(1)&lt;/script&gt; &amp; comptes" in html
    assert "Figures as of 20 Nov 2026" in html
    assert html.count("<svg ") == 2 and 'role="img"' in html
    assert "Région &lt;Exemple&gt; &amp; Co" in (tmp_path / "region-exemple-2026-W47.html").read_text()
    markdown = (tmp_path / "ville-de-test-2026-W47.md").read_text()
    assert r"Budget \<script\>alert\(1\)\</script\> \& comptes" in markdown
    assert "harvested datasets" in markdown and "Figures as of 20 Nov 2026" in markdown


def test_svg_charts_are_valid_and_linked(published: Path, tmp_path: Path) -> None:
    asset.write_digests(published, tmp_path, REPORT_DATE, PARIS, "en")
    markdown = (tmp_path / "ville-de-test-2026-W47.md").read_text()
    for chart in ("monthly", "daily"):
        path = tmp_path / f"ville-de-test-2026-W47-{chart}.svg"
        root = ET.parse(path).getroot()
        assert root.tag == "{http://www.w3.org/2000/svg}svg"
        assert f"]({path.name})" in markdown
    monthly = (tmp_path / "ville-de-test-2026-W47-monthly.svg").read_text()
    assert "Aug" in monthly and "Nov" in monthly and "2,000" in monthly  # Aug 2026: 1,200 + 800
    assert "13,579" not in monthly  # Oct 2025 is out of the 12 months
    html = (tmp_path / "ville-de-test-2026-W47.html").read_text()
    inline = html[html.index("<svg ") : html.index("</svg>") + len("</svg>")]
    ET.fromstring(inline)  # the inline copy is XML too


def test_a_second_run_replaces_the_files(published: Path, tmp_path: Path) -> None:
    reports = tmp_path / "reports"
    first = asset.write_digests(published, reports, REPORT_DATE, PARIS, "en")
    before = {path.name: path.read_bytes() for path in reports.iterdir()}
    second = asset.write_digests(published, reports, REPORT_DATE + dt.timedelta(days=1), PARIS)  # same ISO week
    assert [path.name for path in second] == [path.name for path in first]
    after = {path.name: path.read_bytes() for path in reports.iterdir()}
    assert sorted(after) == sorted(before)  # replaced, not duplicated; no temporary file left
    assert not [name for name in after if name.startswith(".") or name.endswith(".tmp")]
    assert after["ville-de-test-2026-W47.md"] != before["ville-de-test-2026-W47.md"]
    assert asset.write_digests(published, reports, REPORT_DATE + dt.timedelta(days=1), PARIS) == second
    assert {path.name: path.read_bytes() for path in reports.iterdir()} == after  # same figures, same bytes


def test_pure_helpers() -> None:
    gains = figures.daily_gains(
        [
            {"dataset_id": "d", "date": dt.date(2026, 11, 1), "views_delta": None, "downloads_delta": None},
            {
                "dataset_id": "d",
                "date": dt.date(2026, 11, 4),
                "views_delta": 30,
                "downloads_delta": 3,
                "days_since_previous": 3,
            },
        ]
    )
    assert gains["d"] == {dt.date(2026, 11, day): (10.0, 1.0) for day in (2, 3, 4)}
    assert figures.window_sum(gains["d"], dt.date(2026, 11, 3), dt.date(2026, 11, 9)) == (20, 2)
    assert EN.change_short(figures.change(12, 0)) == "+12 (none before)"
    assert EN.change_short(figures.change(8, 10)) == "−2 (−20%)"
    assert month_key(dt.date(2026, 1, 15), 2) == "2025-11"
    assert (
        formatting.safe_url("javascript:alert(1)") is None
        and formatting.safe_url(" https://x.fr/a ") == "https://x.fr/a"
    )
    assert formatting.md_text("a|b [c](d) <e> &lt;") == r"a\|b \[c\]\(d\) \<e\> \&lt;"
    assert figures.portal_base("https://demo.data.gouv.fr/fr/datasets/x/") == "https://demo.data.gouv.fr"
    assert figures.portal_base("javascript:alert(1)") == figures.portal_base(None) == "https://www.data.gouv.fr"
    assert figures.profile_url("https://p.fr", "organization", "a b") == "https://p.fr/organizations/a%20b"
    assert (
        figures.profile_url("https://p.fr", "user", " ") is None
        and figures.profile_url("https://p.fr", None, "x") is None
    )
    assert formatting.shorten("un  deux\ntrois quatre", 12) == "un deux…" and formatting.shorten(None, 5) == ""
    with duckdb.connect() as conn:  # write_digests reads timestamps in the reader's zone: local_day keeps their day
        set_time_zone(conn, PARIS)
        moment = conn.execute("SELECT TIMESTAMPTZ '2026-11-20 23:30:00+00'").fetchone()[0]
    assert figures.local_day(moment) == dt.date(2026, 11, 21)
    assert figures.window_figure(None, 5, 0, 3) == {"before": None, "after": 5, "change": None}
    assert EN.change_short(figures.window_figure(10, 15, 14, 14)["change"]) == "+5 (+50%)"
    assert EN.percent(0.755) == "76%" and EN.percent(None) == "—"


def test_asset_reads_the_run_date(published: Path, tmp_path: Path) -> None:
    published_dir = tmp_path / "published"
    published_dir.mkdir()
    published.rename(published_dir / "usage.duckdb")
    digest_asset = asset.weekly_digest
    spec = digest_asset.specs_by_key[asset.DIGEST_KEY]
    assert spec.group_name == "published" and spec.description and set(spec.kinds) == {"python", "html"}
    assert digest_asset.partitions_def is None
    assert dg.AssetKey(["published", "usage"]) in digest_asset.asset_deps[asset.DIGEST_KEY]
    result = dg.materialize(
        [digest_asset],
        tags=day_range_tags(["ds-a1"], REPORT_DATE),
        resources={"data_dir": DataDir(path=str(tmp_path)), "locale": asset.ReaderLocale(timezone=PARIS, language="en"),
                   "mailer": asset.Mailer()},
    )  # fmt: skip
    assert result.success
    metadata = result.get_asset_materialization_events()[0].materialization.metadata
    assert metadata["week"].value == "2026-W47"
    assert (published_dir / "reports" / "ville-de-test-2026-W47.html").exists()
    (check,) = result.get_asset_check_evaluations()
    assert check.passed and check.metadata["skipped"].value == "no USAGE_SMTP_URL"


def test_the_asset_emails_each_digest_once_a_week(
    published: Path, tmp_path: Path, smtp: tuple[SmtpServer, MailCatcher]
) -> None:
    (tmp_path / "published").mkdir()
    published.rename(tmp_path / "published" / "usage.duckdb")
    data_dir = DataDir(path=str(tmp_path))
    data_dir.recipients_file.write_text("organizations:\n  org-a: [cdo@ville.fr]\n  nobody-here: [x@y.fr]\n")
    server, inbox = smtp
    resources = {
        "data_dir": data_dir,
        "locale": asset.ReaderLocale(timezone=PARIS, language="en"),
        "mailer": asset.Mailer(smtp_url=f"smtp://{server.host}:{server.port}", sender="usage@ville.fr"),
    }
    page = tmp_path / "published" / "reports" / "ville-de-test-2026-W47.email.html"
    pages = []
    for day in (REPORT_DATE, REPORT_DATE + dt.timedelta(days=1)):  # two runs in the same ISO week
        result = dg.materialize([asset.weekly_digest], tags=day_range_tags(["ds-a1"], day), resources=resources)
        (check,) = result.get_asset_check_evaluations()
        assert result.success and check.passed
        pages.append(page.read_text())
    ((to, message),) = inbox.messages
    assert to == ["cdo@ville.fr"] and message["Subject"] == "Ville de Test: usage of your datasets, week 2026-W47"
    html = message.get_body(("html",)).get_content().replace("\r\n", "\n")  # SMTP lines end in CRLF
    assert html == pages[0] != pages[1]  # the week's first digest; the page is rewritten, not sent again
    # Its charts are PNG images attached to the page (mail clients show no SVG), each where the page points.
    images = [part for part in message.walk() if part.get_content_type() == "image/png"]
    assert sorted(part.get_filename() for part in images) == [
        "ville-de-test-2026-W47-daily.png",
        "ville-de-test-2026-W47-monthly.png",
    ]
    for part in images:
        assert part["Content-ID"].strip("<>") in html and part.get_content().startswith(b"\x89PNG")
    assert "<svg" not in html and message.get_body(("html",)).get_content_type() == "text/html"
    assert check.metadata["already_sent"].value == ["ville-de-test 2026-W47"]
    assert check.metadata["without_recipient"].value == ["region-exemple"]


def test_broken_and_removed_reuses(published: Path, tmp_path: Path) -> None:
    problems = _context(published)["reuse_problems"]
    assert problems["checked"] == 3  # r-new, r-start, r-old (listed and checked)
    assert [(reuse["reuse_id"], reuse["datasets"], reuse["checked_on"]) for reuse in problems["broken"]] == [
        ("r-old", [BUDGET_TITLE, "Population"], dt.date(2026, 11, 20))  # 23:30 UTC on the 19th: the 20th in Paris
    ]
    assert [(reuse["reuse_id"], reuse["removed_date"]) for reuse in problems["removed"]] == [
        ("r-gone", dt.date(2026, 11, 17))
    ]
    asset.write_digests(published, tmp_path, REPORT_DATE, PARIS, "en")
    html = _section((tmp_path / "ville-de-test-2026-W47.html").read_text(), "reuse-links")
    assert f'<a href="{PORTAL}/reuses/old/">Ancienne</a>' in html and "news article" in html
    assert '<a class="url" href="https://example.org/old?a=1&amp;b=2">https://example.org/old?a=1&amp;b=2</a>' in html
    assert "last checked 20 Nov 2026" in html
    assert "Tell the author (Jean &lt;b&gt;Dupont&lt;/b&gt;), or remove the reuse from the dataset." in html
    assert "Removed from a dataset this week" in html and "no longer listed on Population since 17 Nov 2026" in html
    for absent in ("Morte et retirée", "Retirée il y a longtemps", "Tableau régional", "Carte de la population"):
        assert absent not in html
    markdown = _md_section((tmp_path / "ville-de-test-2026-W47.md").read_text(), "Reuses to check")
    assert "last checked 20 Nov 2026. Address: <https://example.org/old?a=1&b=2>." in markdown
    assert r"Tell the author (Jean \<b\>Dupont\</b\>), or remove the reuse from the dataset." in markdown
    assert f"- [Appli retirée]({PORTAL}/reuses/gone/) (application), no longer listed on Population" in markdown
    other = _md_section((tmp_path / "region-exemple-2026-W47.md").read_text(), "Reuses to check")
    assert "Tableau régional" in other and "Tell the author, or remove" in other and "Removed" not in other
    assert "1 with a broken link" in (tmp_path / "ville-de-test-2026-W47.html").read_text()


def test_survey_results(published: Path, tmp_path: Path) -> None:
    surveys = _context(published)["surveys"]
    assert [
        (row["dataset_id"], row["responses"], row["mean_satisfaction"], row["satisfied_share"], row["themes"])
        for row in surveys["datasets"]
    ] == [
        ("ds-a2", 11, 4.0, 1.0, [("reliability", 11)]),
        ("ds-a1", 5, 3.5, 0.5, [("usability", 2), ("freshness", 1), ("other", 1)]),
    ]
    # The week's answers saying something, in Paris days: 14 Nov 00:30 is in, 21 Nov 00:30 is not; blank needs
    # are left out. The latest 10 of 13.
    assert surveys["needs_total"] == 13
    assert (surveys["responses"], surveys["last_response"]) == (16, dt.date(2026, 11, 21))  # "Trop tard" included
    needs = [(need["text"], need["theme"], need["submitted"]) for need in surveys["needs"]]
    assert len(needs) == figures.SURVEY_NEEDS
    assert needs[0] == ("Il manque 2024 <b>vite</b> & bien", "freshness", dt.date(2026, 11, 18))
    assert needs[1:3] == [
        ("Besoin 10", "reliability", dt.date(2026, 11, 15)),
        ("Besoin 09", "reliability", dt.date(2026, 11, 15)),
    ]
    assert not {"Trop tard", "Documentation des colonnes", "Besoin de la région"} & {need[0] for need in needs}

    asset.write_digests(published, tmp_path, REPORT_DATE, PARIS, "en")
    html = _section((tmp_path / "ville-de-test-2026-W47.html").read_text(), "surveys")
    assert re.search(
        r">Population</a></td>\s*<td class=\"num\">11</td>\s*<td class=\"num\">4.0 / 5</td>\s*"
        r"<td class=\"num\">100%</td>",
        html,
    )
    assert "3.5 / 5" in html and "50%" in html and "Usability (2), Freshness (1), Other (1)" in html
    assert "<q>Il manque 2024 &lt;b&gt;vite&lt;/b&gt; &amp; bien</q>" in html
    assert "The 10 latest of the 13 answers of the week" in html
    markdown = _md_section((tmp_path / "ville-de-test-2026-W47.md").read_text(), "What your survey respondents say")
    assert r"| 5 | 3.5 / 5 | 50% | Usability \(2\), Freshness \(1\), Other \(1\) |" in markdown
    assert r"- “Il manque 2024 \<b\>vite\</b\> \& bien” (Freshness), Budget" in markdown
    assert markdown.count("\n- “") == 10
    other = _section((tmp_path / "region-exemple-2026-W47.html").read_text(), "surveys")
    assert "Besoin de la région" in other and "Population" not in other


def test_community_events(published: Path, tmp_path: Path) -> None:
    events = _context(published)["events"]
    assert [(event["date"], event["title"], event["open_until"]) for event in events] == [
        (dt.date(2026, 11, 19), "Lettre d'information", dt.date(2026, 12, 2)),
        (dt.date(2026, 11, 5), "Atelier <données> & budget", None),
    ]  # neither the webinar of August (over 90 days ago) nor the coming hackathon, nor org B's
    budget, population = events[1]["rows"]
    assert budget["views"] == {"before": 100, "after": 250, "change": figures.change(250, 100)}
    assert population["views"] == {"before": None, "after": 60, "change": None}  # no snapshot before
    assert events[0]["rows"][0]["views"]["change"] is None  # 13 and 2 days observed: no change computed

    asset.write_digests(published, tmp_path, REPORT_DATE, PARIS, "en")
    html = _section((tmp_path / "ville-de-test-2026-W47.html").read_text(), "events")
    assert html.index("Lettre d&#39;information") < html.index("Atelier &lt;données&gt; &amp; budget")
    assert "still counting: the 14 days from it end on 2 Dec 2026" in html
    assert '<span class="muted small">not enough data</span> → 60' in html
    assert "100 → 250<br>" in html and "+150 (+150%)" in html and "0 → 2" in html and "14 / 14" in html
    assert "13 / 2" in html and "Vieux webinaire" not in html and "Hackathon" not in html
    markdown = _md_section((tmp_path / "ville-de-test-2026-W47.md").read_text(), "Community events")
    assert r"### Atelier \<données\> \& budget (workshop), 5 Nov 2026" in markdown
    assert "| not enough data → 60 | not enough data → 10 | 0 → 1 | 0 → 0 | 0 / 14 |" in markdown
    assert "| 100 → 250, +150 (+150%) | 20 → 40, +20 (+100%) | 0 → 2 | 0 → 1 | 14 / 14 |" in markdown
    assert "Rencontre régionale" in (tmp_path / "region-exemple-2026-W47.md").read_text()


def test_people_to_talk_to(published: Path, tmp_path: Path) -> None:
    people = _context(published)["people"]
    # ds-a1 (140 views this week) before ds-a2 (35); the gone dataset's reuser is not suggested.
    assert [(entry["dataset_id"], [person["name"] for person in entry["people"]]) for entry in people] == [
        ("ds-a1", ["Alice Durand", "Open <Asso> & co", "Sans Profil"]),
        ("ds-a2", ["Bob Martin"]),
    ]
    assert [person["url"] for person in people[0]["people"]] == [
        "https://www.data.gouv.fr/users/alice-durand",
        "https://www.data.gouv.fr/organizations/open-asso",
        None,
    ]
    assert people[1]["people"][0]["url"] == "https://www.data.gouv.fr/users/bob%20martin%2Fx"

    asset.write_digests(published, tmp_path, REPORT_DATE, PARIS, "en")
    html = _section((tmp_path / "ville-de-test-2026-W47.html").read_text(), "people")
    assert '<a href="https://www.data.gouv.fr/organizations/open-asso">Open &lt;Asso&gt; &amp; co</a>' in html
    assert "<strong>Sans Profil</strong>" in html and "Quatrième" not in html and "Fantôme" not in html
    assert "published 1 reuse (application); opened 1 discussion; last active 18 Nov 2026" in html
    assert "published 2 reuses (visualization, API); last active 17 Nov 2026" in html
    assert "posted 1 reply; last active 1 Jun 2026" in html
    markdown = _md_section((tmp_path / "ville-de-test-2026-W47.md").read_text(), "People to talk to")
    assert "- [Alice Durand](https://www.data.gouv.fr/users/alice-durand) (user): published 1 reuse" in markdown
    assert "Collectif Bus" in _section((tmp_path / "region-exemple-2026-W47.html").read_text(), "people")


def test_an_older_published_file_still_renders(published: Path, tmp_path: Path) -> None:
    """Without the optional tables and the newer reuses columns; then with the tables, empty."""
    with duckdb.connect(str(published)) as conn:
        for table in ("survey_summary", "survey_responses", "event_impact", "interview_candidates"):
            conn.execute(f"DROP TABLE reporting.{table}")
        for column in ("removed_date", "link_checked_at", "link_ok", "link_broken", "owner_name"):
            conn.execute(f"ALTER TABLE reporting.reuses DROP COLUMN {column}")
        conn.execute("ALTER TABLE reporting.discussions_awaiting_answer DROP COLUMN theme_needs_review")
    asset.write_digests(published, tmp_path / "older", REPORT_DATE, PARIS, "en")
    html = (tmp_path / "older" / "ville-de-test-2026-W47.html").read_text()
    for name in ("reuse-links", "surveys", "events", "people"):
        assert f'id="{name}"' not in html
    assert "Carte de la population" in _section(html, "reuses") and "broken link" not in html
    parser = _Balance()
    parser.feed(html)
    assert parser.errors == [] and parser.stack == []
    markdown = (tmp_path / "older" / "ville-de-test-2026-W47.md").read_text()
    assert "## Reuses to check" not in markdown and "## People to talk to" not in markdown

    with duckdb.connect(str(published)) as conn:
        conn.execute(
            "CREATE TABLE reporting.survey_summary (dataset_id VARCHAR, dataset_title VARCHAR,"
            " responses BIGINT, mean_satisfaction DOUBLE, satisfied_share DOUBLE, top_needs_themes VARCHAR,"
            " last_response_at TIMESTAMPTZ)"
        )
        conn.execute(
            "CREATE TABLE reporting.event_impact AS SELECT * FROM (SELECT DATE '2026-11-01' AS event_date,"
            " '' AS title, '' AS kind, '' AS dataset_id, 0 AS views_before, 0 AS views_after,"
            " 0 AS downloads_before, 0 AS downloads_after, 0 AS discussions_before, 0 AS discussions_after,"
            " 0 AS reuses_before, 0 AS reuses_after, 0 AS days_observed_before, 0 AS days_observed_after)"
            " WHERE false"
        )
        conn.execute(
            "CREATE TABLE reporting.interview_candidates (dataset_id VARCHAR, rank BIGINT, reuser_type VARCHAR,"
            " name VARCHAR, slug VARCHAR, reuses_published BIGINT, reuse_types VARCHAR, discussions_opened BIGINT,"
            " replies_posted BIGINT, last_activity_at TIMESTAMPTZ)"
        )
        for column, kind in (
            ("removed_date", "DATE"),
            ("link_checked_at", "TIMESTAMPTZ"),
            ("link_ok", "BOOLEAN"),
            ("link_broken", "BOOLEAN"),
        ):
            conn.execute(f"ALTER TABLE reporting.reuses ADD COLUMN {column} {kind}")
    asset.write_digests(published, tmp_path / "empty", REPORT_DATE, PARIS, "en")
    html = (tmp_path / "empty" / "ville-de-test-2026-W47.html").read_text()
    for name in ("surveys", "events", "people"):
        assert f'id="{name}"' not in html
    assert "No reuse address has been checked yet." in _section(html, "reuse-links")
