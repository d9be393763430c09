"""Alerts on discussions, by webhook and by e-mail: a new discussion, and a discussion waiting too long for a
producer answer.

The `discussion_alerts` sensor (webhook) and the `discussion_alerts_email` sensor (the ``alerts:`` addresses of
recipients.yaml, through USAGE_SMTP_URL) each keep their own cursor, so that one channel failing never repeats or
loses the other's alerts. Messages are written in USAGE_LANGUAGE. Each reads the published copy
(``$USAGE_DATA_DIR/published/usage.duckdb``, schema reporting) every five minutes and sends one message (the
webhook gets Slack/Mattermost-compatible JSON, ``{"text": ...}``; the e-mail the same text) listing what happened
since the last message:

* **new**: a discussion id never seen before (``reporting.discussions``);
* **sla**: a discussion waiting more than ``sla_days`` for a producer answer
  (``waiting_days > sla_days`` in ``reporting.discussions_awaiting_answer``).

Rules:

* One alert per discussion and kind, ever. The sensor cursor (compact JSON) keeps the ids per kind:
  ``{"v":1,"new":[...],"sla":[...]}``. ``new`` holds every discussion already known (the baseline plus those
  alerted as new), ``sla`` those whose SLA alert was sent. Ids are never pruned: a discussion that leaves the
  to-do list and comes back (answered, then a reuser writes again) does not alert again, and a partial
  publication cannot make every discussion look new on the next one.
* Baseline: the first evaluation (no cursor) records the discussions already there as known without a "new"
  alert, but the SLA alert fires once for every discussion already over the SLA: a producer who turns alerts
  on wants to know what is overdue. All alerts of a tick go in ONE message, oldest first, at most
  ``MAX_LINES`` lines per kind followed by "and N more".
* A failed post (connection error, timeout, non-2xx) never raises: the sensor skips with the error, nothing is
  recorded as sent and the alerts go out on a later tick (SLA alerts only while the discussion still waits).
* The message uses standard markdown (``[title](url)`` links, ``**bold**``), rendered by Mattermost,
  Rocket.Chat and Teams; Slack shows the link text and the URL as plain text. Text written by reusers is
  neutralised: ``@channel``-style mentions cannot ping, ``<``, ``>`` and ``&`` are HTML entities (which
  Slack requires and markdown renders back), link brackets are escaped, long titles are shortened.
* The webhook URL is a secret: errors name its host only.
"""

import datetime as dt
import json
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal
from urllib.parse import urlsplit

import dagster as dg
import duckdb
import httpx

from usage_pipeline import __version__
from usage_pipeline.data_dir import DataDir
from usage_pipeline.insights.digest.delivery import DeliveryError, Mailer, SmtpServer, load_alert_recipients, send_text
from usage_pipeline.insights.language import DEFAULT_LANGUAGE, Reader, reader
from usage_pipeline.warehouse import set_time_zone

SENSOR_NAME = "discussion_alerts"
EMAIL_SENSOR_NAME = "discussion_alerts_email"
PUBLISHED_FILE = "usage.duckdb"
MAX_LINES = 20  # per kind of alert in one message; the rest is counted in "and N more"
MAX_TITLE = 150  # characters of a title or name kept in a message
POST_TIMEOUT = 10.0  # seconds, for the whole webhook request
USER_AGENT = f"usage_pipeline/{__version__} (discussion alerts; +https://github.com/usage-pipeline/usage_pipeline)"
CURSOR_VERSION = 1

AlertKind = Literal["new", "sla"]


@dataclass(frozen=True)
class Discussion:
    """A row of reporting.discussions, with the title of its dataset."""

    discussion_id: str
    dataset_title: str | None
    title: str | None
    url: str | None
    asker: str | None
    created_at: dt.datetime | None
    status: str | None
    theme: str | None


@dataclass(frozen=True)
class Awaiting:
    """A row of reporting.discussions_awaiting_answer: an open discussion the producer has to answer."""

    discussion_id: str
    dataset_title: str | None
    title: str | None
    url: str | None
    asker: str | None
    opened_at: dt.datetime | None
    waiting_since: dt.datetime | None
    waiting_days: int | None
    theme: str | None


@dataclass(frozen=True)
class Alert:
    """One thing to tell the producer about one discussion."""

    kind: AlertKind
    discussion_id: str
    title: str | None
    url: str | None
    dataset_title: str | None
    asker: str | None
    theme: str | None
    opened_at: dt.datetime | None
    status: str | None
    waiting_since: dt.datetime | None = None
    waiting_days: int | None = None


@dataclass(frozen=True)
class EntryAlert:
    """An entry of USAGE_ORGANIZATIONS or USAGE_DATASETS that no longer resolves (reporting.followed_entries)."""

    kind: str
    configured_as: str
    status: str
    detail: str

    @property
    def key(self) -> str:
        """Told once per entry and status: a renamed organization that is then deleted is told twice."""
        return f"{self.kind}:{self.configured_as}:{self.status}"


@dataclass(frozen=True)
class CursorState:
    """What the sensor already knows: discussion ids per kind of alert, and the entries told (module docstring)."""

    new: frozenset[str] = frozenset()
    sla: frozenset[str] = frozenset()
    entries: frozenset[str] = frozenset()

    @classmethod
    def from_cursor(cls, cursor: str | None) -> "CursorState | None":
        """The state saved in ``cursor``; None before the first (baseline) evaluation."""
        if not cursor:
            return None
        try:
            data = json.loads(cursor)
            if data.get("v") != CURSOR_VERSION:
                raise ValueError(f"version {data.get('v')!r}")
            return cls(
                new=frozenset(map(str, data["new"])),
                sla=frozenset(map(str, data["sla"])),
                entries=frozenset(map(str, data.get("entries", []))),
            )
        except (ValueError, TypeError, KeyError, AttributeError) as error:
            raise ValueError(
                f"the {SENSOR_NAME} cursor is not one this sensor wrote ({error}); clear it in the Dagster UI "
                "to start again from a baseline"
            ) from None

    def to_cursor(self) -> str:
        """Compact JSON, ids sorted (stable across ticks)."""
        state = {"v": CURSOR_VERSION, "new": sorted(self.new), "sla": sorted(self.sla), "entries": sorted(self.entries)}
        return json.dumps(state, separators=(",", ":"))

    def mark_sent(self, alerts: Iterable[Alert], entry_alerts: Iterable[EntryAlert] = ()) -> "CursorState":
        """This state with ``alerts`` and ``entry_alerts`` recorded as sent."""
        alerts = list(alerts)
        return CursorState(
            new=self.new | {alert.discussion_id for alert in alerts if alert.kind == "new"},
            sla=self.sla | {alert.discussion_id for alert in alerts if alert.kind == "sla"},
            entries=self.entries | {alert.key for alert in entry_alerts},
        )


def baseline_state(discussions: Iterable[Discussion]) -> CursorState:
    """The first state: every discussion present is known, no SLA alert sent yet."""
    return CursorState(new=frozenset(discussion.discussion_id for discussion in discussions))


def _oldest_first(moment: dt.datetime | None) -> tuple[bool, dt.datetime]:
    if moment is None:
        return (True, dt.datetime.min.replace(tzinfo=dt.UTC))
    return (False, moment if moment.tzinfo else moment.replace(tzinfo=dt.UTC))


def pending_alerts(
    discussions: Sequence[Discussion], awaiting: Sequence[Awaiting], state: CursorState | None, sla_days: int
) -> list[Alert]:
    """Alerts not sent yet: new discussions (none at baseline, ``state`` None), then SLA breaches, oldest first."""
    waiting = {row.discussion_id: row for row in awaiting}
    alerts: list[Alert] = []
    if state is not None:
        fresh = [discussion for discussion in discussions if discussion.discussion_id not in state.new]
        fresh.sort(key=lambda discussion: (_oldest_first(discussion.created_at), discussion.discussion_id))
        for discussion in fresh:
            wait = waiting.get(discussion.discussion_id)
            alerts.append(
                Alert(
                    kind="new",
                    discussion_id=discussion.discussion_id,
                    title=discussion.title,
                    url=discussion.url,
                    dataset_title=discussion.dataset_title or (wait.dataset_title if wait else None),
                    asker=discussion.asker,
                    theme=discussion.theme,
                    opened_at=discussion.created_at,
                    status=discussion.status,
                    waiting_since=wait.waiting_since if wait else None,
                    waiting_days=wait.waiting_days if wait else None,
                )
            )
    sent = state.sla if state is not None else frozenset()
    overdue = [
        row
        for row in awaiting
        if row.waiting_days is not None and row.waiting_days > sla_days and row.discussion_id not in sent
    ]
    overdue.sort(key=lambda row: (_oldest_first(row.waiting_since), -(row.waiting_days or 0), row.discussion_id))
    alerts.extend(
        Alert(
            kind="sla",
            discussion_id=row.discussion_id,
            title=row.title,
            url=row.url,
            dataset_title=row.dataset_title,
            asker=row.asker,
            theme=row.theme,
            opened_at=row.opened_at,
            status="awaiting_producer",
            waiting_since=row.waiting_since,
            waiting_days=row.waiting_days,
        )
        for row in overdue
    )
    return alerts


def pending_entry_alerts(entries: Sequence[EntryAlert], state: CursorState | None) -> list[EntryAlert]:
    """Entries not active whose status was not told yet (all of them at baseline: that is worth knowing)."""
    told = state.entries if state is not None else frozenset()
    return [entry for entry in entries if entry.key not in told]


@dataclass(frozen=True)
class Channel:
    """Where a sensor's alerts go: a name for the logs (no secret) and how to send (subject, markdown text) ->
    None when accepted, else what went wrong."""

    name: str
    send: Callable[[str, str], str | None]


def _text(value: str | None, fallback: str) -> str:
    """Reuser-written text made safe for a chat message: one line, short, no mention, no markup."""
    text = " ".join((value or "").split()) or fallback
    if len(text) > MAX_TITLE:
        text = text[: MAX_TITLE - 1].rstrip() + "…"
    text = text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
    return text.replace("@", "@\u200b")  # a zero-width space: "@channel" no longer pings anyone


def _link(title: str | None, url: str | None, words: Reader) -> str:
    label = _text(title, words.gettext("(untitled discussion)"))
    label = label.replace("\\", "\\\\").replace("[", "\\[").replace("]", "\\]")
    if not url:
        return label
    target = url.strip().replace(" ", "%20").replace("(", "%28").replace(")", "%29")
    return f"[{label}]({target})"


def _day(moment: dt.datetime | None, words: Reader) -> str:
    return words.day(moment.date()) if moment is not None else words.gettext("unknown date")


def _line(alert: Alert, words: Reader) -> str:
    values = {
        "link": _link(alert.title, alert.url, words),
        "dataset": _text(alert.dataset_title, words.gettext("unknown dataset")),
        "asker": _text(alert.asker, words.gettext("an anonymous user")),
        "theme": _text(words.theme(alert.theme), ""),
    }
    if alert.kind == "sla":
        return words.gettext(
            "- **%(waited)s** %(link)s on “%(dataset)s”, asked by %(asker)s, waiting since %(day)s · theme: %(theme)s",
            waited=words.days(alert.waiting_days or 0), day=_day(alert.waiting_since, words), **values,
        )  # fmt: skip
    if alert.status == "closed":
        state = words.gettext("already closed")
    elif alert.status == "answered":
        state = words.gettext("already answered")
    elif alert.waiting_days is not None:
        state = words.gettext("awaiting your answer (%(days)s)", days=words.days(alert.waiting_days))
    else:
        state = words.gettext("awaiting your answer")
    return words.gettext(
        "- %(link)s on “%(dataset)s”, asked by %(asker)s on %(day)s · theme: %(theme)s · %(state)s",
        day=_day(alert.opened_at, words), state=state, **values,
    )  # fmt: skip


def _section(heading: str, alerts: Sequence[Alert], words: Reader) -> list[str]:
    lines = [heading, *(_line(alert, words) for alert in alerts[:MAX_LINES])]
    if len(alerts) > MAX_LINES:
        lines.append(words.gettext("- … and %(count)s more", count=len(alerts) - MAX_LINES))
    return lines


def headline(alerts: Sequence[Alert], sla_days: int, entry_alerts: Sequence[EntryAlert], words: Reader) -> str:
    """What a message tells, counted: ``2 new, 1 waiting for an answer for over 7 days``."""
    new = sum(alert.kind == "new" for alert in alerts)
    overdue = len(alerts) - new
    counts = []
    if new:
        counts.append(words.ngettext("%(num)s new", "%(num)s new", new))
    if overdue:
        counts.append(words.gettext("%(count)s waiting for an answer for over %(days)s", count=overdue,
                                    days=words.days(sla_days)))  # fmt: skip
    if entry_alerts:
        counts.append(words.ngettext("%(num)s setting no longer resolving", "%(num)s settings no longer resolving",
                                     len(entry_alerts)))  # fmt: skip
    return ", ".join(counts) or words.gettext("nothing to report")


def format_message(
    alerts: Sequence[Alert], sla_days: int, entry_alerts: Sequence[EntryAlert] = (), words: Reader | None = None
) -> str:
    """One markdown message for all ``alerts`` (in the order given), at most MAX_LINES lines per kind, in the
    language of ``words`` (French by default)."""
    words = words or reader(DEFAULT_LANGUAGE)
    new = [alert for alert in alerts if alert.kind == "new"]
    overdue = [alert for alert in alerts if alert.kind == "sla"]
    summary = headline(alerts, sla_days, entry_alerts, words)
    parts = [words.gettext("**Discussions on your data.gouv.fr datasets**: %(summary)s", summary=summary)]
    if new:
        heading = words.gettext("New discussions (%(count)s):", count=len(new))
        parts.append("\n".join(_section(heading, new, words)))
    if overdue:
        heading = words.gettext(
            "Waiting for your answer for over %(days)s (%(count)s, oldest first):",
            days=words.days(sla_days), count=len(overdue),
        )  # fmt: skip
        parts.append("\n".join(_section(heading, overdue, words)))
    if entry_alerts:
        lines = [
            f"- {_text(entry.kind, 'entry')} `{_text(entry.configured_as, '?')}`: {_text(entry.status, '?')}"
            + (f" ({_text(entry.detail, '')})" if entry.detail else "")
            for entry in entry_alerts[:MAX_LINES]
        ]
        heading = words.gettext(
            "Settings that no longer resolve (the other datasets are still followed; fix the setting):"
        )
        parts.append("\n".join([heading, *lines]))
    return "\n\n".join(parts)


def redact(url: str) -> str:
    """The webhook URL without its secret part (path, query, credentials): scheme and host only."""
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:
        return "(invalid URL)"
    if not parts.hostname:
        return "(invalid URL)"
    return f"{parts.scheme}://{parts.hostname}" + (f":{port}" if port else "")


def post(
    url: str, text: str, *, timeout: float = POST_TIMEOUT, transport: httpx.BaseTransport | None = None
) -> str | None:
    """POST ``{"text": text}`` to the webhook; None if it answered 2xx, else what went wrong (never raises)."""
    where = redact(url)
    try:
        with httpx.Client(
            timeout=timeout, transport=transport, headers={"User-Agent": USER_AGENT}, follow_redirects=False
        ) as client:
            response = client.post(url, json={"text": text})
    except httpx.TimeoutException:
        return f"webhook {where} did not answer within {timeout:g}s"
    except (httpx.HTTPError, httpx.InvalidURL) as error:
        return f"webhook {where} unreachable: {type(error).__name__}: {error}"
    if not response.is_success:
        body = " ".join(response.text.split())[:200]
        return f"webhook {where} answered HTTP {response.status_code}" + (f": {body}" if body else "")
    return None


_DISCUSSIONS = """
select d.discussion_id, {dataset_title} as dataset_title, d.title, d.url, d.asker, d.created_at, d.status, d.theme
from reporting.discussions as d {join}
order by d.discussion_id
"""
_AWAITING = """
select discussion_id, dataset_title, title, url, asker, opened_at, waiting_since, waiting_days, theme
from reporting.discussions_awaiting_answer
order by waiting_since, discussion_id
"""


_ENTRIES = """
select kind, configured_as, status, detail from reporting.followed_entries
where status <> 'active' and still_configured
order by kind, configured_as
"""


def read_published(path: Path, timezone: str) -> tuple[list[Discussion], list[Awaiting], list[EntryAlert]]:
    """The discussions, the to-do list and the settings no longer resolving, from the published copy, read in
    one short read-only connection (timestamps in ``timezone``, the days the messages name)."""
    with duckdb.connect(str(path), read_only=True) as conn:
        set_time_zone(conn, timezone)
        tables = {
            row[0]
            for row in conn.execute(
                "select table_name from information_schema.tables where table_schema = 'reporting'"
            ).fetchall()
        }
        query = _DISCUSSIONS.format(
            dataset_title="ds.title" if "datasets" in tables else "null::varchar",
            join="left join reporting.datasets as ds using (dataset_id)" if "datasets" in tables else "",
        )
        discussions = [Discussion(*row) for row in conn.execute(query).fetchall()]
        awaiting = [Awaiting(*row) for row in conn.execute(_AWAITING).fetchall()]
        entries = (
            [EntryAlert(*row) for row in conn.execute(_ENTRIES).fetchall()] if "followed_entries" in tables else []
        )
    return discussions, awaiting, entries


def _summary(alerts: Sequence[Alert], entry_alerts: Sequence[EntryAlert]) -> str:
    new = sum(alert.kind == "new" for alert in alerts)
    told = f"{new} new discussion(s), {len(alerts) - new} over the answer SLA"
    return told + (f", {len(entry_alerts)} setting(s) no longer resolving" if entry_alerts else "")


def evaluate(
    cursor: str | None,
    published_dir: Path,
    channel: Channel | str,
    sla_days: int,
    timezone: str,
    log: dg.DagsterLogManager | None = None,
    words: Reader | None = None,
) -> dg.SensorResult | dg.SkipReason:
    """One tick: read the published copy, send what is pending through ``channel`` (a string: why there is none),
    return the next cursor and what happened."""
    if isinstance(channel, str):
        return dg.SkipReason(channel)
    words = words or reader(DEFAULT_LANGUAGE)
    state = CursorState.from_cursor(cursor)
    path = published_dir / PUBLISHED_FILE
    if not path.is_file():
        return dg.SkipReason(f"nothing published yet: {path} does not exist (the daily job writes it)")
    try:
        discussions, awaiting, entries = read_published(path, timezone)
    except duckdb.Error as error:
        return dg.SkipReason(f"cannot read the discussions from {path}: {error}")
    known = state if state is not None else baseline_state(discussions)
    alerts = pending_alerts(discussions, awaiting, state, sla_days)
    entry_alerts = pending_entry_alerts(entries, state)
    if not alerts and not entry_alerts:
        what = f"baseline: {len(discussions)} discussion(s) recorded as known" if state is None else "nothing new"
        return dg.SensorResult(skip_reason=f"{what}; no alert to send", cursor=known.to_cursor())
    subject = words.gettext(
        "Discussions on your data.gouv.fr datasets: %(summary)s",
        summary=headline(alerts, sla_days, entry_alerts, words),
    )
    error = channel.send(subject, format_message(alerts, sla_days, entry_alerts, words))
    if error is not None:
        message = f"{_summary(alerts, entry_alerts)} not sent, retried on the next tick: {error}"
        if log is not None:
            log.warning(message)
        return dg.SensorResult(skip_reason=message, cursor=known.to_cursor())
    message = f"sent one message to {channel.name}: {_summary(alerts, entry_alerts)}"
    if log is not None:
        log.info(message)
    return dg.SensorResult(skip_reason=message, cursor=known.mark_sent(alerts, entry_alerts).to_cursor())


class DiscussionAlerts(dg.ConfigurableResource):
    """Where webhook alerts go (USAGE_ALERT_WEBHOOK_URL; none: no webhook alert), how long a reuser may wait for
    an answer, and how the messages read."""

    webhook_url: str | None = None
    answer_sla_days: int = 7
    timezone: str = "Europe/Paris"  # the days the messages name (USAGE_TIMEZONE)
    language: str = DEFAULT_LANGUAGE  # USAGE_LANGUAGE

    def tick(
        self, context: dg.SensorEvaluationContext, data_dir: DataDir, channel: Channel | str
    ) -> dg.SensorResult | dg.SkipReason:
        """One evaluation of an alert sensor sending through ``channel``."""
        return evaluate(
            context.cursor, data_dir.published, channel, self.answer_sla_days, self.timezone, context.log,
            reader(self.language),
        )  # fmt: skip


def webhook_channel(url: str | None) -> Channel | str:
    """The webhook of USAGE_ALERT_WEBHOOK_URL, or why there is none."""
    if not url:
        return "no webhook configured: set USAGE_ALERT_WEBHOOK_URL to get discussion alerts"
    return Channel(redact(url), lambda _subject, text: post(url, text))


def email_channel(mailer: Mailer, recipients_file: Path) -> Channel | str:
    """The ``alerts:`` addresses of recipients.yaml through USAGE_SMTP_URL, or why there are none."""
    if not mailer.smtp_url:
        return "no SMTP server configured: set USAGE_SMTP_URL to get discussion alerts by e-mail"
    try:
        to = load_alert_recipients(recipients_file)
        server = SmtpServer.from_url(mailer.smtp_url)
    except DeliveryError as error:
        return f"no discussion alert by e-mail: {error}"
    if not to:
        return f"no discussion alert by e-mail: {recipients_file} lists no `alerts:` address"
    sender = mailer.sender_for(server)
    return Channel(f"{', '.join(to)} (e-mail)", lambda subject, text: send_text(server, sender, to, subject, text))


EVERY_FIVE_MINUTES = {"minimum_interval_seconds": 300, "default_status": dg.DefaultSensorStatus.RUNNING}


@dg.sensor(
    name=SENSOR_NAME,
    **EVERY_FIVE_MINUTES,
    description=(
        "Posts to the alert webhook (USAGE_ALERT_WEBHOOK_URL) when a discussion is opened on a followed dataset and "
        "when one waits more than USAGE_ANSWER_SLA_DAYS days for an answer, reading the published usage.duckdb. "
        "Once per discussion and kind; the cursor keeps what was sent."
    ),
)
def discussion_alerts(
    context: dg.SensorEvaluationContext, data_dir: DataDir, alerts: DiscussionAlerts
) -> dg.SensorResult | dg.SkipReason:
    """Every five minutes: webhook messages on new discussions and on answers overdue."""
    return alerts.tick(context, data_dir, webhook_channel(alerts.webhook_url))


@dg.sensor(
    name=EMAIL_SENSOR_NAME,
    **EVERY_FIVE_MINUTES,
    description=(
        "E-mails the same discussion alerts as discussion_alerts to the `alerts:` addresses of recipients.yaml, "
        "through USAGE_SMTP_URL; its own cursor, so each channel gets each alert once."
    ),
)
def discussion_alerts_email(
    context: dg.SensorEvaluationContext, data_dir: DataDir, alerts: DiscussionAlerts, mailer: Mailer
) -> dg.SensorResult | dg.SkipReason:
    """Every five minutes: e-mails on new discussions and on answers overdue."""
    return alerts.tick(context, data_dir, email_channel(mailer, data_dir.recipients_file))
