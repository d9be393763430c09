"""The weekly digest by e-mail, against a local SMTP server (aiosmtpd): recipients, once per week, failures."""

import socket
from pathlib import Path

import pytest

from usage_pipeline.demo.mail_server import MailCatcher
from usage_pipeline.insights.digest.delivery import (
    DeliveryError,
    Digest,
    SmtpServer,
    deliver,
    load_recipients,
)


def digests(tmp_path: Path) -> list[Digest]:
    files = []
    for slug, title in (("ville-de-test", "Chiffres <b>faux</b> ?"), ("region-exemple", "Rien")):
        html, markdown = tmp_path / f"{slug}-2026-W48.html", tmp_path / f"{slug}-2026-W48.md"
        html.write_text(f'<html lang="fr"><body><h1>{slug}</h1><p>&lt;b&gt;{title}</p><svg></svg></body></html>')
        markdown.write_text(f"# {slug}\n\n{title}\n")
        files.append(Digest(f"id-{slug}", slug, "2026-W48", f"{slug}: usage, week 2026-W48", html, markdown))
    return files


def test_one_message_per_organization_and_week_even_when_run_again(
    tmp_path: Path, smtp: tuple[SmtpServer, MailCatcher]
) -> None:
    server, inbox = smtp
    recipients = {"ville-de-test": ["cdo@ville.fr", "data@ville.fr"]}
    ledger = tmp_path / "sent.json"
    first = deliver(digests(tmp_path), recipients, server, "usage@ville.fr", ledger)
    assert first.sent == ["ville-de-test 2026-W48 -> cdo@ville.fr, data@ville.fr"]
    assert first.without_recipient == ["region-exemple"] and first.failed == []
    ((to, message),) = inbox.messages
    assert to == ["cdo@ville.fr", "data@ville.fr"]
    assert message["Subject"] == "ville-de-test: usage, week 2026-W48" and message["From"] == "usage@ville.fr"
    plain, html = (part.get_content() for part in message.iter_parts())
    assert plain.startswith("# ville-de-test") and '<html lang="fr">' in html and "<svg>" in html
    again = deliver(digests(tmp_path), recipients, server, "usage@ville.fr", ledger)  # a rerun, a restart
    assert (again.sent, again.already_sent) == ([], ["ville-de-test 2026-W48"])
    assert len(inbox.messages) == 1


def test_an_unreachable_server_is_retried_by_the_next_run(tmp_path: Path, smtp: tuple[SmtpServer, MailCatcher]) -> None:
    with socket.socket() as probe:  # a port nobody listens on
        probe.bind(("127.0.0.1", 0))
        closed_port = probe.getsockname()[1]
    recipients = {"id-ville-de-test": ["cdo@ville.fr"]}  # by organization id this time
    ledger = tmp_path / "sent.json"
    down = SmtpServer("127.0.0.1", closed_port, False, None, None)
    failed = deliver(digests(tmp_path), recipients, down, "usage@ville.fr", ledger)
    assert failed.sent == [] and len(failed.failed) == 1 and failed.failed[0].startswith("ville-de-test 2026-W48: ")
    assert not ledger.exists()
    server, inbox = smtp
    assert deliver(digests(tmp_path), recipients, server, "usage@ville.fr", ledger).sent == [
        "ville-de-test 2026-W48 -> cdo@ville.fr"
    ]
    assert len(inbox.messages) == 1


def test_settings_are_checked(tmp_path: Path) -> None:
    server = SmtpServer.from_url("smtps://alice:p%40ss@mail.example.fr")
    assert (server.host, server.port, server.implicit_tls, server.user, server.password) == (
        "mail.example.fr", 465, True, "alice", "p@ss"
    )  # fmt: skip
    assert SmtpServer.from_url("smtp://relay:587").port == 587
    with pytest.raises(DeliveryError, match="USAGE_SMTP_URL must look like"):
        SmtpServer.from_url("mail.example.fr:25")
    path = tmp_path / "recipients.yaml"
    assert load_recipients(path) == {}
    path.write_text("organizations:\n  insee: [cdo@insee.fr, data@insee.fr]\n  534fff8ea3a7292c64a77f02: d@x.fr\n")
    assert load_recipients(path) == {
        "insee": ["cdo@insee.fr", "data@insee.fr"],
        "534fff8ea3a7292c64a77f02": ["d@x.fr"],
    }
    path.write_text("organizations:\n  insee: [not-an-address]\n")
    with pytest.raises(DeliveryError, match="organization 'insee': expected a list of e-mail addresses"):
        load_recipients(path)
