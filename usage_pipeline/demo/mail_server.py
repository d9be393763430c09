"""A local SMTP server (aiosmtpd) for the demo and the tests: it keeps every message it accepts, and files each
one as an .eml file when given a folder."""

import email
import email.policy
import socket
from email.message import EmailMessage
from pathlib import Path
from types import TracebackType

from aiosmtpd.controller import Controller


class MailCatcher:
    """``with MailCatcher(outbox) as mail:``, then send to ``mail.url``; ``mail.messages``: (recipients, message)."""

    def __init__(self, outbox: Path | None = None) -> None:
        self.outbox = outbox
        self.messages: list[tuple[list[str], EmailMessage]] = []
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            self.port = probe.getsockname()[1]
        self.url = f"smtp://127.0.0.1:{self.port}"
        self._controller = Controller(self, hostname="127.0.0.1", port=self.port)

    async def handle_DATA(self, server: object, session: object, envelope: object) -> str:
        content: bytes = envelope.content  # type: ignore[attr-defined]
        message = email.message_from_bytes(content, policy=email.policy.default)
        self.messages.append((list(envelope.rcpt_tos), message))  # type: ignore[attr-defined]
        if self.outbox is not None:
            self.outbox.mkdir(parents=True, exist_ok=True)
            (self.outbox / f"{len(self.messages):03d}.eml").write_bytes(content)
        return "250 OK"

    def __enter__(self) -> "MailCatcher":
        self._controller.start()
        return self

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, traceback: TracebackType | None
    ) -> None:
        self._controller.stop()
