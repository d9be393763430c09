"""A local stand-in for a Slack/Mattermost incoming webhook: it keeps the JSON messages posted to it."""

import json
import threading

from usage_pipeline.demo.local_server import JsonHandler, LocalHTTPServer, LocalServer


class _Handler(JsonHandler):
    server: LocalHTTPServer

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        try:
            message = json.loads(body)
        except ValueError:
            self.send_json(400, {"error": "the body is not JSON"})
            return
        self.server.owner.receive(message)
        self.send_json(200, {"ok": True})


class WebhookReceiver(LocalServer):
    """``with WebhookReceiver() as hook:`` then post to ``hook.url``; ``hook.messages`` holds the bodies received."""

    handler = _Handler

    def __init__(self) -> None:
        super().__init__()
        self._messages: list[dict] = []
        self._lock = threading.Lock()

    def receive(self, message: dict) -> None:
        with self._lock:
            self._messages.append(message)

    @property
    def messages(self) -> list[dict]:
        with self._lock:
            return list(self._messages)
