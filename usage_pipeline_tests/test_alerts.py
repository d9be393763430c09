"""Discussion alerts: once per discussion and kind, a quiet baseline, webhook failures retried, never raised."""

import datetime as dt
import json
import os
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import dagster as dg
import duckdb
import httpx
import pytest

from usage_pipeline.data_dir import DataDir
from usage_pipeline.insights.alerts import (
    MAX_LINES,
    USER_AGENT,
    Alert,
    Awaiting,
    CursorState,
    Discussion,
    DiscussionAlerts,
    EntryAlert,
    discussion_alerts,
    format_message,
    pending_alerts,
    pending_entry_alerts,
    post,
)
from usage_pipeline.insights.language import reader

SLA_DAYS = 7
EN = reader("en")  # these tests read English messages; test_language.py reads the French ones
SECRET = "hooks/s3cr3t-token"
PORTAL = "https://www.data.gouv.fr/datasets"

# discussion_id -> row of reporting.discussions (dataset_id, title, asker, created_at, status, theme)
D1 = {
    "discussion_id": "d1",
    "dataset_id": "ds-sirene",
    "title": "Fichier introuvable",
    "asker": "Jean Dupont",
    "created_at": "2026-11-01 08:00:00+00",
    "status": "awaiting_producer",
    "theme": "accessibility",
}
D2 = {
    "discussion_id": "d2",
    "dataset_id": "ds-sirene",
    "title": "Mise à jour ?",
    "asker": "Marie Curie",
    "created_at": "2026-11-15 08:00:00+00",
    "status": "awaiting_producer",
    "theme": "freshness",
}
D3 = {
    "discussion_id": "d3",
    "dataset_id": "ds-barometre",
    "title": "Colonne vide dans le CSV",
    "asker": "Ada Lovelace",
    "created_at": "2026-11-19 09:30:00+00",
    "status": "awaiting_producer",
    "theme": "reliability",
}
DATASET_TITLES = {"ds-sirene": "Base Sirene des entreprises", "ds-barometre": "Baromètre des résultats"}


def url_of(discussion_id: str) -> str:
    return f"{PORTAL}/x/discussions/?discussion_id={discussion_id}"


def publish(published_dir: Path, discussions: list[dict], waiting: dict[str, int]) -> None:
    """Write <published_dir>/usage.duckdb as the pipeline does (temp file, then os.replace).

    ``waiting`` maps the id of an awaiting discussion to its waiting_days (as of 2026-11-20).
    """
    published_dir.mkdir(parents=True, exist_ok=True)
    temporary = published_dir / ".usage.duckdb.tmp"
    temporary.unlink(missing_ok=True)
    with duckdb.connect(str(temporary)) as conn:
        conn.execute("CREATE SCHEMA reporting")
        conn.execute(
            """CREATE TABLE reporting.discussions (discussion_id VARCHAR, dataset_id VARCHAR,
            organization_id VARCHAR, title VARCHAR, url VARCHAR, opened_by VARCHAR, asker VARCHAR,
            created_at TIMESTAMPTZ, closed_at TIMESTAMPTZ, n_messages BIGINT, last_message_at TIMESTAMPTZ,
            first_response_at TIMESTAMPTZ, status VARCHAR, theme VARCHAR, theme_evidence VARCHAR[])"""
        )
        conn.execute(
            """CREATE TABLE reporting.discussions_awaiting_answer (discussion_id VARCHAR, dataset_id VARCHAR,
            organization_id VARCHAR, dataset_title VARCHAR, title VARCHAR, url VARCHAR, asker VARCHAR,
            opened_at TIMESTAMPTZ, waiting_since TIMESTAMPTZ, waiting_days BIGINT, theme VARCHAR)"""
        )
        as_of = dt.datetime(2026, 11, 20, 12, 0, tzinfo=dt.UTC)
        for row in discussions:
            conn.execute(
                "INSERT INTO reporting.discussions VALUES (?, ?, 'org', ?, ?, 'someone', ?, ?::TIMESTAMPTZ, NULL, "
                "1, ?::TIMESTAMPTZ, NULL, ?, ?, [])",
                [row["discussion_id"], row["dataset_id"], row["title"], url_of(row["discussion_id"]), row["asker"],
                 row["created_at"], row["created_at"], row["status"], row["theme"]],
            )  # fmt: skip
            if row["discussion_id"] in waiting:
                days = waiting[row["discussion_id"]]
                conn.execute(
                    "INSERT INTO reporting.discussions_awaiting_answer VALUES "
                    "(?, ?, 'org', ?, ?, ?, ?, ?::TIMESTAMPTZ, ?, ?, ?)",
                    [row["discussion_id"], row["dataset_id"], DATASET_TITLES[row["dataset_id"]], row["title"],
                     url_of(row["discussion_id"]), row["asker"], row["created_at"],
                     as_of - dt.timedelta(days=days), days, row["theme"]],
                )  # fmt: skip
    os.replace(temporary, published_dir / "usage.duckdb")


class Receiver:
    """A local webhook: records the JSON bodies it accepts; answers 500 to the next ``fail_next`` posts."""

    def __init__(self) -> None:
        self.bodies: list[dict] = []
        self.user_agents: list[str] = []
        self.fail_next = 0
        self.failed = 0
        self._lock = threading.Lock()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                with receiver._lock:
                    failing = receiver.fail_next > 0
                    if failing:
                        receiver.fail_next -= 1
                        receiver.failed += 1
                    else:
                        receiver.bodies.append(body)
                        receiver.user_agents.append(self.headers.get("User-Agent", ""))
                status, answer = (500, b"internal error") if failing else (200, b"ok")
                self.send_response(status)
                self.send_header("Content-Length", str(len(answer)))
                self.end_headers()
                self.wfile.write(answer)

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/{SECRET}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    @property
    def texts(self) -> list[str]:
        return [body["text"] for body in self.bodies]


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    server = Receiver()
    server.thread.start()
    try:
        yield server
    finally:
        server.server.shutdown()
        server.server.server_close()
        server.thread.join()


@pytest.fixture
def dagster_instance() -> Iterator[dg.DagsterInstance]:
    with dg.instance_for_test() as test_instance:
        yield test_instance


@pytest.fixture
def published_dir(tmp_path: Path) -> Path:
    return tmp_path / "published"


def alert_resources(published_dir: Path, webhook_url: str | None) -> dict:
    """The sensor's resources: the data folder holding ``published_dir``, and the webhook."""
    return {
        "data_dir": DataDir(path=str(published_dir.parent)),
        "alerts": DiscussionAlerts(webhook_url=webhook_url, answer_sla_days=SLA_DAYS, language="en"),
    }


def tick(resources: dict, cursor: str | None, instance: dg.DagsterInstance) -> tuple[str | None, str | None]:
    """Evaluate the sensor as the daemon does; return the cursor to carry over and the skip message."""
    context = dg.build_sensor_context(cursor=cursor, instance=instance, resources=resources)
    data = discussion_alerts.evaluate_tick(context)
    assert data.run_requests == []
    return data.cursor, data.skip_message


def test_the_sensor_is_what_the_daemon_expects(published_dir: Path) -> None:
    assert discussion_alerts.name == "discussion_alerts"
    assert discussion_alerts.minimum_interval_seconds == 300
    assert discussion_alerts.default_status == dg.DefaultSensorStatus.RUNNING
    definitions = dg.Definitions(sensors=[discussion_alerts], resources=alert_resources(published_dir, None))
    definitions.get_repository_def().get_sensor_def("discussion_alerts")


def test_baseline_then_new_then_sla_then_restart(
    receiver: Receiver, dagster_instance: dg.DagsterInstance, published_dir: Path
) -> None:
    # d1 already waits 10 days (over the SLA), d2 waits 7 days (not over: waiting_days > sla_days is the rule).
    publish(published_dir, [D1, D2], {"d1": 10, "d2": SLA_DAYS})
    resources = alert_resources(published_dir, receiver.url)

    cursor, message = tick(resources, None, dagster_instance)
    assert len(receiver.bodies) == 1, "baseline: one grouped message"
    text = receiver.texts[0]
    assert "New discussions" not in text, "existing discussions are a baseline, not new"
    assert "Fichier introuvable" in text and f"({url_of('d1')})" in text and "**10 days**" in text
    assert "Mise à jour" not in text, "7 days is not over a 7-day SLA"
    assert receiver.user_agents[0] == USER_AGENT
    assert json.loads(cursor) == {"v": 1, "new": ["d1", "d2"], "sla": ["d1"], "entries": []}
    assert "sent one message" in message and SECRET not in message

    cursor, message = tick(resources, cursor, dagster_instance)
    assert len(receiver.bodies) == 1, "nothing new: no message"
    assert "nothing new" in message

    # A new discussion arrives with the next publication.
    publish(published_dir, [D1, D2, D3], {"d1": 11, "d2": SLA_DAYS, "d3": 1})
    cursor, _ = tick(resources, cursor, dagster_instance)
    assert len(receiver.bodies) == 2
    text = receiver.texts[1]
    assert "1 new" in text and "over" not in text.split("\n")[0]
    assert f"[Colonne vide dans le CSV]({url_of('d3')})" in text
    assert "Baromètre des résultats" in text and "Ada Lovelace" in text and "theme: Reliability" in text
    assert "Fichier introuvable" not in text and "Mise à jour" not in text
    assert json.loads(cursor) == {"v": 1, "new": ["d1", "d2", "d3"], "sla": ["d1"], "entries": []}

    cursor, _ = tick(resources, cursor, dagster_instance)
    assert len(receiver.bodies) == 2, "the new discussion is not announced twice"

    # d2 crosses the SLA.
    publish(published_dir, [D1, D2, D3], {"d1": 12, "d2": SLA_DAYS + 1, "d3": 2})
    cursor, _ = tick(resources, cursor, dagster_instance)
    assert len(receiver.bodies) == 3
    text = receiver.texts[2]
    assert "Mise à jour" in text and f"**{SLA_DAYS + 1} days**" in text and "theme: Freshness" in text
    assert "Fichier introuvable" not in text and "Colonne vide" not in text
    cursor, _ = tick(resources, cursor, dagster_instance)
    assert len(receiver.bodies) == 3, "the SLA alert is not repeated"

    # Restart: the sensor evaluated again, carrying the saved cursor, sends nothing.
    restarted = alert_resources(published_dir, receiver.url)
    again, _ = tick(restarted, cursor, dagster_instance)
    assert len(receiver.bodies) == 3
    assert again == cursor


def test_failing_webhook_keeps_alerts_pending(
    receiver: Receiver, dagster_instance: dg.DagsterInstance, published_dir: Path
) -> None:
    publish(published_dir, [D1], {})
    resources = alert_resources(published_dir, receiver.url)
    cursor, _ = tick(resources, None, dagster_instance)
    assert receiver.bodies == [], "a quiet baseline: nothing over the SLA, nothing new"

    publish(published_dir, [D1, D3], {"d1": SLA_DAYS + 3, "d3": 0})
    receiver.fail_next = 2
    for _ in range(2):
        failed_cursor, message = tick(resources, cursor, dagster_instance)  # must not raise
        assert "HTTP 500" in message and "not sent" in message
        assert SECRET not in message, "the webhook URL is a secret"
        assert failed_cursor == cursor, "nothing recorded as sent"
    assert receiver.failed == 2 and receiver.bodies == []

    cursor, message = tick(resources, failed_cursor, dagster_instance)
    assert len(receiver.bodies) == 1
    text = receiver.texts[0]
    assert "Colonne vide dans le CSV" in text and "Fichier introuvable" in text
    assert "1 new" in text and "1 waiting" in text
    assert json.loads(cursor) == {"v": 1, "new": ["d1", "d3"], "sla": ["d1"], "entries": []}
    tick(resources, cursor, dagster_instance)
    assert len(receiver.bodies) == 1


def test_unreachable_webhook_does_not_raise(dagster_instance: dg.DagsterInstance, published_dir: Path) -> None:
    publish(published_dir, [D1], {"d1": 30})
    resources = alert_resources(published_dir, f"http://127.0.0.1:9/{SECRET}")  # discard port
    cursor, message = tick(resources, None, dagster_instance)
    assert "unreachable" in message and "127.0.0.1:9" in message and SECRET not in message
    assert json.loads(cursor) == {"v": 1, "new": ["d1"], "sla": [], "entries": []}, (
        "baseline kept, SLA alert still pending"
    )


def test_baseline_failure_does_not_turn_into_new_alerts(
    receiver: Receiver, dagster_instance: dg.DagsterInstance, published_dir: Path
) -> None:
    publish(published_dir, [D1, D2], {"d1": 30})
    resources = alert_resources(published_dir, receiver.url)
    receiver.fail_next = 1
    cursor, _ = tick(resources, None, dagster_instance)
    cursor, _ = tick(resources, cursor, dagster_instance)
    assert len(receiver.bodies) == 1
    assert "New discussions" not in receiver.texts[0] and "Fichier introuvable" in receiver.texts[0]


def test_no_webhook_skips(receiver: Receiver, dagster_instance: dg.DagsterInstance, published_dir: Path) -> None:
    publish(published_dir, [D1], {"d1": 30})
    cursor, message = tick(alert_resources(published_dir, None), None, dagster_instance)
    assert cursor is None
    assert "no webhook configured" in message and "USAGE_ALERT_WEBHOOK_URL" in message
    saved = CursorState(new=frozenset({"d1"})).to_cursor()
    assert tick(alert_resources(published_dir, ""), saved, dagster_instance)[0] == saved
    assert receiver.bodies == []


def test_nothing_published_skips(receiver: Receiver, dagster_instance: dg.DagsterInstance, published_dir: Path) -> None:
    cursor, message = tick(alert_resources(published_dir, receiver.url), None, dagster_instance)
    assert cursor is None
    assert "nothing published yet" in message and "usage.duckdb" in message
    assert receiver.bodies == []


def test_a_foreign_cursor_is_an_error() -> None:
    with pytest.raises(ValueError, match="clear it"):
        CursorState.from_cursor('{"known": []}')


def discussion(discussion_id: str, **changes: object) -> Discussion:
    fields: dict = {
        "discussion_id": discussion_id, "dataset_title": "Base", "title": f"Title {discussion_id}",
        "url": url_of(discussion_id), "asker": "Someone", "created_at": dt.datetime(2026, 11, 1, tzinfo=dt.UTC),
        "status": "awaiting_producer", "theme": "other",
    }  # fmt: skip
    return Discussion(**(fields | changes))


def awaiting(discussion_id: str, days: int) -> Awaiting:
    since = dt.datetime(2026, 11, 20, tzinfo=dt.UTC) - dt.timedelta(days=days)
    return Awaiting(discussion_id, "Base", f"Title {discussion_id}", url_of(discussion_id), "Someone", since, since,
                    days, "other")  # fmt: skip


def test_pending_alerts_sla_oldest_first_and_only_over_the_threshold() -> None:
    rows = [awaiting("a", 8), awaiting("b", 30), awaiting("c", 7), awaiting("d", 15)]
    state = CursorState(new=frozenset("abcd"), sla=frozenset("d"))
    alerts = pending_alerts([discussion(key) for key in "abcd"], rows, state, 7)
    assert [(alert.kind, alert.discussion_id) for alert in alerts] == [("sla", "b"), ("sla", "a")]
    assert pending_alerts([discussion(key) for key in "abcd"], rows, None, 7)[0].discussion_id == "b"
    assert pending_alerts([discussion("e")], [], None, 7) == [], "no new alert at baseline"
    assert [alert.kind for alert in pending_alerts([discussion("e")], [], CursorState(), 7)] == ["new"]


def test_state_records_sent_alerts_only() -> None:
    alerts = pending_alerts([discussion("x"), discussion("y")], [awaiting("y", 9)], CursorState(), 7)
    assert [(alert.kind, alert.discussion_id) for alert in alerts] == [("new", "x"), ("new", "y"), ("sla", "y")]
    state = CursorState().mark_sent(alerts[:1])
    assert state.to_cursor() == '{"v":1,"new":["x"],"sla":[],"entries":[]}'
    assert CursorState.from_cursor(state.to_cursor()) == state
    assert CursorState.from_cursor(None) is None and CursorState.from_cursor("") is None
    # A cursor written before entries were told still reads.
    assert CursorState.from_cursor('{"v":1,"new":["x"],"sla":[]}') == state


def test_settings_no_longer_resolving_are_told_once_per_status() -> None:
    gone = EntryAlert(
        "organization", "ville-de-test", "gone", "https://p/api/1/organizations/ville-de-test/ answers 410"
    )
    renamed = EntryAlert("dataset", "old-slug", "renamed", "'old-slug' answers 404; followed by the id it had")
    first = pending_entry_alerts([gone, renamed], None)
    assert first == [gone, renamed], "at baseline too: a producer turning alerts on wants to know"
    state = CursorState().mark_sent([], first)
    assert pending_entry_alerts([gone, renamed], state) == []
    deleted = EntryAlert("dataset", "old-slug", "gone", "answers 410")
    assert pending_entry_alerts([gone, deleted], state) == [deleted], "a new status is told again"
    text = format_message([], 7, first, EN)
    assert text.splitlines()[0].endswith("2 settings no longer resolving")
    assert "- organization `ville-de-test`: gone (https://p/api/1/organizations/ville-de-test/ answers 410)" in text


def test_message_is_capped_grouped_and_safe() -> None:
    overdue = [awaiting(f"o{index:02}", 40 - index) for index in range(MAX_LINES + 5)]
    hostile = discussion(
        "h", title="@channel [urgent] <!here> fix", asker="@all", dataset_title="A & B", status="answered"
    )
    alerts = pending_alerts([hostile], overdue, CursorState(new=frozenset(row.discussion_id for row in overdue)), 7)
    text = format_message(alerts, 7, words=EN)
    lines = text.split("\n")
    assert lines[0] == "**Discussions on your data.gouv.fr datasets**: 1 new, 25 waiting for an answer for over 7 days"
    overdue_lines = [line for line in lines if line.startswith("- **")]
    assert len(overdue_lines) == MAX_LINES
    assert overdue_lines[0].startswith("- **40 days** [Title o00]") and "**21 days**" in overdue_lines[-1]
    assert lines[-1] == "- … and 5 more"
    assert "@channel" not in text and "@all" not in text and "<!here>" not in text
    assert "[@\u200bchannel \\[urgent\\] &lt;!here&gt; fix](" in text and "“A &amp; B”" in text
    assert "already answered" in text


def test_post_reports_errors_without_raising() -> None:
    def timeout(request: httpx.Request) -> httpx.Response:
        raise httpx.ReadTimeout("timed out", request=request)

    url = f"https://chat.example.org/{SECRET}"
    error = post(url, "hi", transport=httpx.MockTransport(timeout))
    assert error is not None and "did not answer" in error and SECRET not in error
    error = post(url, "hi", transport=httpx.MockTransport(lambda request: httpx.Response(404, text="no hook")))
    assert error == "webhook https://chat.example.org answered HTTP 404: no hook"
    seen: list[httpx.Request] = []

    def accept(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(200)

    assert post(url, "hi", transport=httpx.MockTransport(accept)) is None
    assert json.loads(seen[0].content) == {"text": "hi"} and seen[0].headers["User-Agent"] == USER_AGENT
    assert post("not a url", "hi") is not None


def test_alert_is_a_plain_value() -> None:
    alert = Alert("new", "d", "t", None, None, None, None, None, None)
    assert format_message([alert], 7, words=EN).endswith(
        "- t on “unknown dataset”, asked by an anonymous user on unknown date · theme: Other · awaiting your answer"
    )
