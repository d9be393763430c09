"""Paris days: every day and month bucket of a timestamp follows USAGE_TIMEZONE (default Europe/Paris)."""

import datetime as dt
from pathlib import Path

import pytest

from usage_pipeline.models import SQL_DIR, parse_model
from usage_pipeline.settings import Settings, SettingsError
from usage_pipeline.warehouse import Warehouse

# (instant in UTC, its day in Paris): around midnight, and on both sides of the 2026 daylight-saving changes.
EDGES = [
    ("2026-03-31 22:30:00+00", dt.date(2026, 4, 1)),  # 00:30 in Paris (CEST, +2) on the 1st of a month
    ("2026-03-28 23:30:00+00", dt.date(2026, 3, 29)),  # 00:30 CET (+1), the night the clocks go forward
    ("2026-03-29 22:30:00+00", dt.date(2026, 3, 30)),  # 00:30 CEST (+2), the next night
    ("2026-10-24 22:30:00+00", dt.date(2026, 10, 25)),  # 00:30 CEST, the night the clocks go back
    ("2026-10-25 22:30:00+00", dt.date(2026, 10, 25)),  # 23:30 CET (+1): still the 25th
    ("2026-12-31 23:30:00+00", dt.date(2027, 1, 1)),  # New Year in Paris, not yet in UTC
]


def test_the_time_zone_setting() -> None:
    assert Settings.from_env({}).timezone == "Europe/Paris"
    assert Settings.from_env({"USAGE_TIMEZONE": "America/Cayenne"}).timezone == "America/Cayenne"
    with pytest.raises(SettingsError, match="USAGE_TIMEZONE='Paris' is not a time zone name such as Europe/Paris"):
        Settings.from_env({"USAGE_TIMEZONE": "Paris"})


@pytest.mark.parametrize(("instant", "paris_day"), EDGES)
def test_warehouse_days_are_days_in_the_zone(tmp_path: Path, instant: str, paris_day: dt.date) -> None:
    for zone, expected in (("Europe/Paris", paris_day), ("UTC", dt.date.fromisoformat(instant[:10]))):
        with Warehouse(database=str(tmp_path / "w.duckdb"), timezone=zone).get_connection() as conn:
            day, month = conn.execute(
                "SELECT CAST(?::TIMESTAMPTZ AS DATE), strftime(?::TIMESTAMPTZ, '%Y-%m')", [instant, instant]
            ).fetchone()
        assert (day, month) == (expected, f"{expected:%Y-%m}"), zone


def test_a_question_asked_at_half_past_midnight_on_the_first_counts_in_that_month(tmp_path: Path) -> None:
    """reporting.discussion_themes, as the daily run builds it: month buckets in Paris, timestamps kept in UTC."""
    model = parse_model(SQL_DIR / "reporting" / "discussion_themes.sql")
    with Warehouse(database=str(tmp_path / "w.duckdb"), timezone="Europe/Paris").get_connection() as conn:
        conn.execute("CREATE SCHEMA reporting")
        conn.execute("CREATE TABLE reporting.discussions (dataset_id VARCHAR, created_at TIMESTAMPTZ, theme VARCHAR)")
        conn.executemany(
            "INSERT INTO reporting.discussions VALUES ('ds', ?, 'freshness')",
            [["2026-03-31 22:30:00+00"], ["2026-03-31 21:30:00+00"]],  # 00:30 on 1 April, 23:30 on 31 March
        )
        rows = conn.execute(model.sql).fetchall()
        stored = conn.execute("SELECT min(created_at) FROM reporting.discussions").fetchone()[0]
    assert rows == [("ds", "2026-03", "freshness", 1), ("ds", "2026-04", "freshness", 1)]
    assert stored.utcoffset() == dt.timedelta(hours=2) and stored.astimezone(dt.UTC).hour == 21
