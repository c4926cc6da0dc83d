"""The production gunicorn worker: gevent, with short JSON answers for refused requests.

gevent gives each connection a greenlet, so a client that sends its headers slowly (or
never finishes them) costs a few kilobytes instead of one of a handful of threads: with
gthread, 30 such connections stalled `/healthz`. psycopg 3 and redis-py cooperate with
gevent's patched sockets; see docs/deployment.md for what the proxy in front must do.

What gunicorn itself refuses before the app sees it (a request line or header over the
limits in gunicorn.conf.py, a malformed request) it answers with a small HTML page.
API clients read JSON, so this worker answers those in the app's error shape instead,
with a fixed message per status: gunicorn's own message may quote the request line,
feed token included. Everything else (status, logging, the access line) is gunicorn's.
"""

from __future__ import annotations

import json
import socket
from typing import Any, cast

from gunicorn import util
from gunicorn.workers.ggevent import GeventWorker

from oncal_feed.errors_http import error_body

__all__ = ["REFUSALS", "JsonErrorGeventWorker", "refusal_body"]

# status -> (error code, message, field, problem)
REFUSALS: dict[int, tuple[str, str, str, str]] = {
    400: ("bad_request", "The request could not be read.", "request", "is not valid HTTP/1.1"),
    403: ("forbidden", "The request was refused.", "request", "is not allowed here"),
    414: (
        "uri_too_long",
        "The request line is too long.",
        "path",
        "the method, path and query together must be at most 8190 bytes",
    ),
    417: ("expectation_failed", "The Expect header is not supported.", "Expect", "not supported"),
    431: (
        "request_header_fields_too_large",
        "The request headers are too large.",
        "headers",
        "each header must be at most 8190 bytes, and at most 100 headers",
    ),
    500: ("internal_error", "Something went wrong on our side.", "request", "could not be served"),
    501: (
        "not_implemented",
        "The request's transfer coding is not supported.",
        "Transfer-Encoding",
        "must be chunked or absent",
    ),
}


def refusal_body(status: int) -> bytes:
    """The JSON body this worker sends for a request gunicorn refused with `status`."""
    code, message, field, problem = REFUSALS.get(status, REFUSALS[400])
    body = error_body(code, message, [{"field": field, "problem": problem}])
    return json.dumps(body, separators=(",", ":")).encode() + b"\n"


class _Capture:
    """Stands in for the client socket while gunicorn writes its HTML error page."""

    def __init__(self) -> None:
        self.data = b""

    def gettimeout(self) -> float:
        return 0.0

    def setblocking(self, _flag: bool) -> None:
        pass

    def sendall(self, data: bytes) -> None:
        self.data += data


class JsonErrorGeventWorker(GeventWorker):
    """gunicorn's gevent worker, answering the requests gunicorn refuses with JSON."""

    def handle_error(self, req: Any, client: Any, addr: Any, exc: BaseException) -> None:
        """Let gunicorn decide, log and count the refusal, then send JSON instead of HTML."""
        capture = _Capture()
        # The capture stands in for the client socket: gunicorn only calls sendall on it.
        super().handle_error(req, cast(socket.socket, capture), addr, exc)
        status_line = capture.data.split(b"\r\n", 1)[0].decode("latin-1")
        parts = status_line.split(" ", 2)
        status = int(parts[1]) if len(parts) >= 2 and parts[1].isdigit() else 400
        reason = parts[2] if len(parts) == 3 else "Bad Request"
        body = refusal_body(status)
        head = (
            f"HTTP/1.1 {status} {reason}\r\nConnection: close\r\n"
            f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n"
            "Cache-Control: no-store\r\n\r\n"
        )
        try:
            util.write_nonblock(client, head.encode("latin-1") + body)
        except Exception:  # the client is gone: nothing to answer
            self.log.debug("Failed to send error message.")
