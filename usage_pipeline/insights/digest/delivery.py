"""The weekly digest by e-mail: recipients.yaml, the SMTP server of USAGE_SMTP_URL, one message per organization and
ISO week.

A message is recorded in ``published/reports/sent.json`` as soon as the server accepted it, so a rerun or a restart
does not send it again (only a crash in the instant between the two would); a failure is retried by the next run.
The HTML part is the digest page itself (its charts are inline SVG, no external asset), the plain-text part its
Markdown.
"""

import json
import smtplib
import ssl
from collections.abc import Sequence
from dataclasses import dataclass
from email.message import EmailMessage
from email.utils import formatdate, make_msgid
from pathlib import Path
from urllib.parse import unquote, urlsplit

import dagster as dg
import yaml

from usage_pipeline.files import write_atomically
from usage_pipeline.insights.digest.render import content_id

SENT_FILE = "sent.json"
TIMEOUT = 30.0


class DeliveryError(ValueError):
    """recipients.yaml or USAGE_SMTP_URL cannot be used; the message names the file or the variable."""


@dataclass(frozen=True)
class SmtpServer:
    host: str
    port: int
    implicit_tls: bool  # smtps://; smtp:// upgrades with STARTTLS when the server offers it
    user: str | None
    password: str | None

    @classmethod
    def from_url(cls, url: str) -> "SmtpServer":
        """``smtp://[user:password@]host[:port]`` (port 25) or ``smtps://...`` (port 465)."""
        parts = urlsplit(url)
        if parts.scheme not in ("smtp", "smtps") or not parts.hostname:
            raise DeliveryError("USAGE_SMTP_URL must look like smtp://user:password@host:587 or smtps://host:465")
        try:
            port = parts.port or (465 if parts.scheme == "smtps" else 25)
        except ValueError:
            raise DeliveryError("USAGE_SMTP_URL has a port that is not a number") from None
        user = unquote(parts.username) if parts.username else None
        password = unquote(parts.password) if parts.password else None
        return cls(parts.hostname, port, parts.scheme == "smtps", user, password)

    def send(self, message: EmailMessage) -> None:
        """Hand ``message`` to the server (TLS verified with the system's certificates)."""
        context = ssl.create_default_context()
        if self.implicit_tls:
            client: smtplib.SMTP = smtplib.SMTP_SSL(self.host, self.port, timeout=TIMEOUT, context=context)
        else:
            client = smtplib.SMTP(self.host, self.port, timeout=TIMEOUT)
        with client:
            client.ehlo()
            if not self.implicit_tls and client.has_extn("starttls"):
                client.starttls(context=context)
                client.ehlo()
            if self.user:
                client.login(self.user, self.password or "")
            client.send_message(message)


def _read_recipients(path: Path) -> dict:
    """recipients.yaml's mapping (empty without the file)."""
    if not path.exists():
        return {}
    try:
        content = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except yaml.YAMLError as error:
        raise DeliveryError(f"{path}: not valid YAML ({error})") from None
    if not isinstance(content, dict) or not ({"organizations", "alerts"} & set(content)):
        raise DeliveryError(
            f"{path}: expected `organizations:` mapping organization ids or slugs to addresses, and/or `alerts:` "
            "listing the addresses of the discussion alerts"
        )
    return content


def _addresses(value: object, where: str) -> list[str]:
    addresses = [value] if isinstance(value, str) else value
    if not isinstance(addresses, list) or not all(isinstance(a, str) and "@" in a for a in addresses):
        raise DeliveryError(f"{where}: expected a list of e-mail addresses")
    return [address.strip() for address in addresses]


def load_recipients(path: Path) -> dict[str, list[str]]:
    """recipients.yaml: ``organizations: {<organization id or slug>: [address, ...]}``; no file: nobody."""
    organizations = _read_recipients(path).get("organizations") or {}
    if not isinstance(organizations, dict):
        raise DeliveryError(f"{path}: expected `organizations:` mapping organization ids or slugs to addresses")
    return {str(key): _addresses(value, f"{path}, organization {key!r}") for key, value in organizations.items()}


def load_alert_recipients(path: Path) -> list[str]:
    """recipients.yaml's ``alerts: [address, ...]``: who gets the discussion alerts by e-mail (none: nobody)."""
    alerts = _read_recipients(path).get("alerts")
    return _addresses(alerts, f"{path}, alerts") if alerts else []


def build_message(
    sender: str, to: Sequence[str], subject: str, html: str | None, text: str, images: Sequence[Path] = ()
) -> EmailMessage:
    """A multipart/alternative message: the plain text first, the HTML page second (what clients prefer), with
    ``images`` (PNG files) attached to the page under their `render.content_id`; plain text only without ``html``."""
    message = EmailMessage()
    message["From"], message["To"], message["Subject"] = sender, ", ".join(to), subject
    message["Date"], message["Message-ID"] = formatdate(localtime=False), make_msgid(domain=sender.split("@")[-1])
    message.set_content(text)
    if html is not None:
        message.add_alternative(html, subtype="html")
        page = message.get_payload()[-1]
        for image in images:
            page.add_related(image.read_bytes(), "image", "png", cid=f"<{content_id(image.name)}>", filename=image.name)
    return message


class Mailer(dg.ConfigurableResource):
    """Where digests and e-mail alerts are sent from: USAGE_SMTP_URL (none: no e-mail) and USAGE_SMTP_FROM."""

    smtp_url: str | None = None
    sender: str | None = None

    def sender_for(self, server: SmtpServer) -> str:
        """USAGE_SMTP_FROM, else an address at the server's host."""
        return self.sender or f"usage-pipeline@{server.host}"


def send_text(server: SmtpServer, sender: str, to: Sequence[str], subject: str, text: str) -> str | None:
    """Send a plain-text message; None once the server accepted it, else what went wrong (never raises)."""
    try:
        server.send(build_message(sender, to, subject, None, text))
    except (OSError, smtplib.SMTPException) as error:
        return f"SMTP server {server.host}:{server.port}: {error}"
    return None


@dataclass(frozen=True)
class Digest:
    organization_id: str
    organization_slug: str
    week: str  # ISO week, e.g. 2026-W48
    subject: str
    html: Path  # the page e-mailed
    markdown: Path  # its plain-text part
    images: tuple[Path, ...] = ()  # the PNG charts the page shows


@dataclass
class Outcome:
    sent: list[str]  # "<organization slug> <week> -> addresses"
    already_sent: list[str]
    failed: list[str]  # "<organization slug> <week>: error"
    without_recipient: list[str]


def deliver(digests: Sequence[Digest], recipients: dict[str, list[str]], server: SmtpServer, sender: str,
            ledger: Path) -> Outcome:  # fmt: skip
    """Send each digest whose organization has recipients and that the ledger does not hold yet."""
    sent = json.loads(ledger.read_text(encoding="utf-8")) if ledger.exists() else {}
    outcome = Outcome([], [], [], [])
    for digest in digests:
        to = recipients.get(digest.organization_id) or recipients.get(digest.organization_slug)
        label, key = f"{digest.organization_slug} {digest.week}", f"{digest.organization_id}|{digest.week}"
        if not to:
            outcome.without_recipient.append(digest.organization_slug)
        elif key in sent:
            outcome.already_sent.append(label)
        else:
            html, text = digest.html.read_text(encoding="utf-8"), digest.markdown.read_text(encoding="utf-8")
            try:
                server.send(build_message(sender, to, digest.subject, html, text, digest.images))
            except (OSError, smtplib.SMTPException) as error:
                outcome.failed.append(f"{label}: {error}")
                continue
            sent[key] = {"to": to, "subject": digest.subject}
            write_atomically(ledger, json.dumps(sent, indent=2, ensure_ascii=False, sort_keys=True) + "\n")
            outcome.sent.append(f"{label} -> {', '.join(to)}")
    return outcome
