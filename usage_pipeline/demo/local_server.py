"""What the local demo servers share: a threaded HTTP server on 127.0.0.1 started and stopped cleanly."""

import contextlib
import json
import socket
import sys
import threading
import time
from collections import Counter
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, ClassVar, Self


class JsonHandler(BaseHTTPRequestHandler):
    """A request handler that answers JSON and logs nothing on stderr."""

    def send_json(self, status: int, payload: Any) -> None:
        body = json.dumps(payload, ensure_ascii=False).encode("utf-8")
        self.send_response(status)
        self.send_header("Content-Type", "application/json; charset=utf-8")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:
        """Quiet: no request log on stderr."""


class LocalHTTPServer(ThreadingHTTPServer):
    """A thread per connection on an ephemeral port; open keep-alive connections are cut on close."""

    daemon_threads = True
    request_queue_size = 128

    def __init__(self, handler: type[BaseHTTPRequestHandler], owner: "LocalServer") -> None:
        super().__init__(("127.0.0.1", 0), handler)
        self.owner = owner
        self._connections: set[socket.socket] = set()
        self._connections_lock = threading.Lock()

    def process_request(self, request: Any, client_address: Any) -> None:
        with self._connections_lock:
            self._connections.add(request)
        super().process_request(request, client_address)

    def shutdown_request(self, request: Any) -> None:
        with self._connections_lock:
            self._connections.discard(request)
        super().shutdown_request(request)

    def handle_error(self, request: Any, client_address: Any) -> None:
        """A client hanging up (a link checker dropping a GET it only needed the status of) is not an error."""
        if not isinstance(sys.exc_info()[1], ConnectionError):
            super().handle_error(request, client_address)

    def close_connections(self) -> None:
        with self._connections_lock:
            connections = list(self._connections)
        for connection in connections:
            with contextlib.suppress(OSError):
                connection.shutdown(socket.SHUT_RDWR)


class LocalServer:
    """Base of the demo servers: ``with Server(...) as server:`` serves from a daemon thread at ``server.url``.

    Subclasses set `handler`; the handler reaches its server object as ``self.server.owner``.
    """

    handler: ClassVar[type[BaseHTTPRequestHandler]]

    def __init__(self) -> None:
        self._httpd: LocalHTTPServer | None = None
        self._thread: threading.Thread | None = None
        self._counts: Counter[str] = Counter()
        self._counts_lock = threading.Lock()
        self.first_request_at: float | None = None  # time.time() of the first request since the last reset
        self.last_request_at: float | None = None  # and of the latest one (when it was received)

    def record(self, label: str) -> None:
        """Count one request under ``label`` (an endpoint or action name)."""
        now = time.time()
        with self._counts_lock:
            self._counts[label] += 1
            self.first_request_at = self.first_request_at or now
            self.last_request_at = now

    def counts(self) -> Counter[str]:
        """A snapshot of the requests counted by label."""
        with self._counts_lock:
            return Counter(self._counts)

    def reset_counts(self) -> None:
        """Forget the requests counted so far."""
        with self._counts_lock:
            self._counts.clear()
            self.first_request_at = self.last_request_at = None

    def start(self) -> Self:
        """Bind the port and serve in the background."""
        self._httpd = LocalHTTPServer(self.handler, self)
        self._thread = threading.Thread(
            target=self._httpd.serve_forever,
            kwargs={"poll_interval": 0.05},
            name=type(self).__name__,
            daemon=True,
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop serving, cut open connections and release the port."""
        if self._httpd is None:
            return
        self._httpd.shutdown()
        self._httpd.close_connections()
        self._httpd.server_close()
        if self._thread is not None:
            self._thread.join()
        self._httpd = self._thread = None

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    @property
    def url(self) -> str:
        """``http://127.0.0.1:PORT``."""
        if self._httpd is None:
            raise RuntimeError(f"the {type(self).__name__} is not running")
        host, port = self._httpd.server_address[:2]
        return f"http://{host}:{port}"
