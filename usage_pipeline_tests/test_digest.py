"""The weekly digest, on a small published DuckDB built here (no pipeline run)."""

import datetime as dt
import re
import xml.etree.ElementTree as ET
from html.parser import HTMLParser
from pathlib import Path

import dagster as dg
import duckdb
import pytest

from usage_pipeline.ingest.partitions import day_range_tags
from usage_pipeline.insights import digest

REPORT_DATE = dt.date(2026, 11, 20)  # a Friday of ISO week 2026-W47
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
            " opened_at TIMESTAMPTZ, waiting_since TIMESTAMPTZ, waiting_days BIGINT, theme VARCHAR)"
        )
        conn.executemany(
            "INSERT INTO reporting.discussions_awaiting_answer VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
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
                ),
            ],
        )
        conn.execute(
            "CREATE TABLE reporting.reuses (reuse_id VARCHAR, dataset_id VARCHAR, title VARCHAR, type VARCHAR,"
            " url VARCHAR, page_url VARCHAR, created_at TIMESTAMPTZ, first_seen_date DATE, last_seen_date DATE)"
        )
        conn.executemany(
            "INSERT INTO reporting.reuses VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
            [
                (
                    "r-new",
                    "ds-a2",
                    "Carte de la population",
                    "visualization",
                    "https://example.org/carte",
                    f"{PORTAL}/reuses/carte/",
                    "2026-11-17 12:00:00+00",
                    "2026-11-18",
                    "2026-11-20",
                ),
                (
                    "r-start",
                    "ds-a1",
                    "Déjà là",
                    "application",
                    "https://example.org/app",
                    f"{PORTAL}/reuses/app/",
                    "2025-01-01 00:00:00+00",
                    "2026-11-06",
                    "2026-11-20",
                ),
                (
                    "r-old",
                    "ds-a1",
                    "Ancienne",
                    "post",
                    "https://example.org/old",
                    f"{PORTAL}/reuses/old/",
                    "2025-01-01 00:00:00+00",
                    "2026-10-01",
                    "2026-11-20",
                ),
                (
                    "r-evil",
                    "ds-a1",
                    "Lien douteux",
                    "post",
                    "javascript:alert(1)",
                    f"{PORTAL}/reuses/evil/",
                    "2026-11-19 08:00:00+00",
                    "2026-11-19",
                    "2026-11-20",
                ),
            ],
        )
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
        organization = next(org for org in digest.load_organizations(conn) if org.id == organization_id)
        return digest.build_context(digest.load_inputs(conn, organization, REPORT_DATE), REPORT_DATE)


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
    paths = digest.write_digests(published, reports, REPORT_DATE)
    assert {path.name for path in paths} == {
        "ville-de-test-2026-W47.html",
        "ville-de-test-2026-W47.md",
        "ville-de-test-2026-W47-monthly.svg",
        "ville-de-test-2026-W47-daily.svg",
        "region-exemple-2026-W47.html",
        "region-exemple-2026-W47.md",
        "region-exemple-2026-W47-daily.svg",  # no monthly figures for this one: no monthly chart
    }
    assert sorted(path.name for path in reports.iterdir()) == sorted(path.name for path in paths)
    assert digest.week_label(dt.date(2027, 1, 1)) == "2026-W53"  # the ISO year, not the calendar year


def test_headline_figures_from_the_deltas(published: Path, tmp_path: Path) -> None:
    context = _context(published)
    headline = context["headline"]
    assert headline["views"]["value"] == 140 + 35
    assert headline["downloads"]["value"] == 21 + 28
    assert headline["views"]["change"]["text"] == "+70 (+67%) vs the 7 days before"
    assert headline["downloads"]["change"]["text"] == "+28 (+133%) vs the 7 days before"
    assert headline["followers"] == {"value": 6, "change": 1}
    assert headline["reuses"] == {"value": 2, "new": 2}
    assert headline["open_questions"] == {"value": 2, "oldest_days": 50}
    assert context["as_of"] == REPORT_DATE

    digest.write_digests(published, tmp_path / "reports", REPORT_DATE)
    markdown = (tmp_path / "reports" / "ville-de-test-2026-W47.md").read_text()
    assert "**Views, last 7 days:** 175, +70 (+67%) vs the 7 days before" in markdown
    html = (tmp_path / "reports" / "ville-de-test-2026-W47.html").read_text()
    assert '<div class="value">175</div>' in html

    # Tracked since 11 Nov only: the week is measured, the week before is not.
    other = _context(published, "org-b")["headline"]["views"]
    assert other["value"] == 49
    assert other["change"]["direction"] == "none"
    markdown = (tmp_path / "reports" / "region-exemple-2026-W47.md").read_text()
    assert "**Views, last 7 days:** 49 (not enough history yet to compare)" in markdown


def test_not_enough_history_in_the_first_week(published: Path) -> None:
    with duckdb.connect(str(published), read_only=True) as conn:
        organization = digest.load_organizations(conn)[0]
        day = dt.date(2026, 11, 9)
        views = digest.build_context(digest.load_inputs(conn, organization, day), day)["headline"]["views"]
    assert views["value"] == 30 + 15  # 7, 8 and 9 Nov
    assert views["partial_since"] == dt.date(2026, 11, 6)
    assert views["change"]["text"] == "not enough history yet to compare"


def test_top_datasets_with_their_change(published: Path, tmp_path: Path) -> None:
    context = _context(published)
    top_views = [(row["dataset_id"], row["views"], row["views_change"]["short"]) for row in context["top_views"]]
    assert top_views == [("ds-a1", 140, "+70 (+100%)"), ("ds-a2", 35, "no change")]
    assert [(row["dataset_id"], row["downloads"]) for row in context["top_downloads"]] == [("ds-a2", 28), ("ds-a1", 21)]

    digest.write_digests(published, tmp_path, REPORT_DATE)
    markdown = (tmp_path / "ville-de-test-2026-W47.md").read_text()
    viewed = markdown.split("### Most viewed")[1].split("### Most downloaded")[0]
    first_row = next(line for line in viewed.splitlines() if line.startswith("| ["))
    assert f"({PORTAL}/datasets/budget/)" in first_row and "| 140 | +70 (+100%) |" in first_row


def test_discussions_oldest_first_with_links(published: Path, tmp_path: Path) -> None:
    digest.write_digests(published, tmp_path, REPORT_DATE)
    html = (tmp_path / "ville-de-test-2026-W47.html").read_text()
    markdown = (tmp_path / "ville-de-test-2026-W47.md").read_text()
    for text in (html, markdown):
        old, new = text.index(f"{PORTAL}/datasets/budget/#/discussions/d-old"), text.index("discussions/d-new")
        assert old < new
        assert "Alice Durand" in text and "50 days" in text and "freshness" in text
    assert f'<a href="{PORTAL}/datasets/budget/#/discussions/d-old">Prochaine mise à jour ?</a>' in html
    assert "Bob Martin" in markdown and "5 days (since 15 Nov 2026)" in markdown
    # The other organization's digest says so when nothing waits.
    assert "No question is waiting for an answer." in (tmp_path / "region-exemple-2026-W47.md").read_text()


def test_new_reuses_only(published: Path, tmp_path: Path) -> None:
    reuses = _context(published)["new_reuses"]
    assert [(reuse["reuse_id"], reuse["datasets"]) for reuse in reuses] == [
        ("r-new", ["Population"]),
        ("r-evil", [BUDGET_TITLE]),
    ]
    digest.write_digests(published, tmp_path, REPORT_DATE)
    html = (tmp_path / "ville-de-test-2026-W47.html").read_text()
    assert f'<a href="{PORTAL}/reuses/carte/">Carte de la population</a>' in html
    assert 'href="https://example.org/carte"' in html and "visualization" in html
    assert "Déjà là" not in html and "Ancienne" not in html  # there when tracking started / weeks ago
    assert f'<a href="{PORTAL}/reuses/evil/">Lien douteux</a>' in html  # its javascript: address is no link
    markdown = (tmp_path / "ville-de-test-2026-W47.md").read_text()
    assert f"- [Carte de la population]({PORTAL}/reuses/carte/) (visualization)" in markdown
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
    digest.write_digests(published, tmp_path, REPORT_DATE)
    markdown = (tmp_path / "ville-de-test-2026-W47.md").read_text()
    assert "| November 2026 | October 2026 |" in markdown
    assert re.search(r"\| \*\*freshness\*\*: .* \| 3 \| 0 \|", markdown)
    assert "4 of the 8 discussions opened were answered (50%)" in markdown
    assert "accessibility" not in markdown.split("## What reusers ask about")[1].split("###")[0]  # org B's


def test_html_is_well_formed_self_contained_and_escaped(published: Path, tmp_path: Path) -> None:
    digest.write_digests(published, tmp_path, REPORT_DATE)
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
    digest.write_digests(published, tmp_path, REPORT_DATE)
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
    first = digest.write_digests(published, reports, REPORT_DATE)
    before = {path.name: path.read_bytes() for path in reports.iterdir()}
    second = digest.write_digests(published, reports, REPORT_DATE + dt.timedelta(days=1))  # same ISO week
    assert [path.name for path in second] == [path.name for path in first]
    after = {path.name: path.read_bytes() for path in reports.iterdir()}
    assert sorted(after) == sorted(before)  # replaced, not duplicated; no temporary file left
    assert not [name for name in after if name.startswith(".") or name.endswith(".tmp")]
    assert after["ville-de-test-2026-W47.md"] != before["ville-de-test-2026-W47.md"]
    assert digest.write_digests(published, reports, REPORT_DATE + dt.timedelta(days=1)) == second
    assert {path.name: path.read_bytes() for path in reports.iterdir()} == after  # same figures, same bytes


def test_pure_helpers() -> None:
    gains = digest.daily_gains(
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
    assert digest.window_sum(gains["d"], dt.date(2026, 11, 3), dt.date(2026, 11, 9)) == (20, 2)
    assert digest.change(12, 0)["short"] == "+12 (none before)"
    assert digest.change(8, 10)["short"] == "−2 (−20%)"
    assert digest.month_of(dt.date(2026, 1, 15), 2) == "2025-11"
    assert digest.safe_url("javascript:alert(1)") is None and digest.safe_url(" https://x.fr/a ") == "https://x.fr/a"
    assert digest.md_text("a|b [c](d) <e> &lt;") == r"a\|b \[c\]\(d\) \<e\> \&lt;"


def test_asset_reads_the_run_date(published: Path, tmp_path: Path) -> None:
    published_dir = tmp_path / "published"
    published_dir.mkdir()
    published.rename(published_dir / "usage.duckdb")
    asset = digest.build_digest_asset(published_dir, [dg.AssetKey(["published", "usage"])])
    spec = asset.specs_by_key[digest.DIGEST_KEY]
    assert spec.group_name == "published" and spec.description and set(spec.kinds) == {"python", "html"}
    assert asset.partitions_def is None
    assert dg.AssetKey(["published", "usage"]) in asset.asset_deps[digest.DIGEST_KEY]
    result = dg.materialize(
        [asset],
        tags=day_range_tags(["ds-a1"], REPORT_DATE),
    )
    assert result.success
    metadata = result.get_asset_materialization_events()[0].materialization.metadata
    assert metadata["week"].value == "2026-W47"
    assert (published_dir / "reports" / "ville-de-test-2026-W47.html").exists()
