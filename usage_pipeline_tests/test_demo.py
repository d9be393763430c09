"""`usage-pipeline demo` as a newcomer runs it: from any folder, with a relative --data-dir, offline."""

import csv
import datetime as dt
import email
from pathlib import Path

import duckdb
import pytest

from usage_pipeline import cli
from usage_pipeline.demo.producer_files import ALERTS_ADDRESS, SURVEY_FILE


def test_demo_with_a_relative_data_dir_publishes_every_table(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture
) -> None:
    for name in ("DAGSTER_HOME", "USAGE_DATA_DIR", "USAGE_PSEUDONYM_SALT", "DEMO_ODS_KEY", "USAGE_SMTP_URL"):
        monkeypatch.delenv(name, raising=False)  # restored after the test: the demo sets some of them
    monkeypatch.chdir(tmp_path)

    assert cli.main(["demo", "--days", "2", "--data-dir", "somewhere/demo"]) == 0

    root = tmp_path / "somewhere" / "demo"
    out = capsys.readouterr().out
    with duckdb.connect(str(root / "published" / "usage.duckdb"), read_only=True) as conn:
        tables = [row[0] for row in conn.execute("SELECT table_name FROM duckdb_tables() ORDER BY 1").fetchall()]
        empty = [table for table in tables if not conn.execute(f"SELECT count(*) FROM reporting.{table}").fetchone()[0]]
        survey_rows = conn.execute("SELECT count(*) FROM reporting.survey_responses").fetchone()[0]
        new_reuses = conn.execute("SELECT count(*) FROM reporting.new_reuses WHERE in_last_7_days").fetchone()[0]
        sources = dict(conn.execute("SELECT theme_source, count(*) FROM reporting.discussions GROUP BY 1").fetchall())
    assert len(tables) >= 20 and empty == []
    with (root / "surveys" / SURVEY_FILE).open(encoding="utf-8") as survey:
        assert survey_rows == len(list(csv.reader(survey, delimiter=";"))) - 1
    assert new_reuses >= 1, "the reuse played on the second day"
    assert sources["correction"] == 1 and sources["model"] >= 10, "theme_corrections.csv, then the classifier"
    with duckdb.connect(str(root / "warehouse.duckdb"), read_only=True) as conn:
        query = "SELECT DISTINCT split_part(url, '/', 3) FROM raw.reuse_link_checks"
        hosts = {row[0] for row in conn.execute(query).fetchall()}
    assert all(host.startswith("127.0.0.1:") for host in hosts), f"the demo must stay offline: {hosts}"
    assert (root / "dagster_home" / "dagster.yaml").is_file()
    assert list((root / "published" / "reports").glob("*.html"))
    assert (root / "published" / "quality" / "index.html").is_file()
    assert "alert posted to the webhook" in out
    today = dt.date.today()
    weeks = {day.isocalendar()[:2] for day in (today - dt.timedelta(days=1), today)}
    sent = [email.message_from_bytes(path.read_bytes()) for path in sorted((root / "outbox").glob("*.eml"))]
    digests = [message for message in sent if message["To"] != ALERTS_ADDRESS]
    alerts = [message for message in sent if message["To"] == ALERTS_ADDRESS]
    assert len(digests) == 2 * len(weeks), "one digest e-mail per organization and ISO week"
    assert alerts and all(message.get_content_type() == "text/plain" for message in alerts)
    assert f": {len(digests)} digests (one per organization and ISO week) and {len(alerts)} discussion alerts" in out
    assert "usage de vos jeux de données, semaine" in out, "the digests' subjects, in French by default"
    assert "Questions waiting for an answer" in out and "most viewed datasets" in out
    assert "usage-pipeline show discussions_awaiting_answer --data-dir somewhere/demo" in out
