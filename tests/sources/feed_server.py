"""A real HTTP server on 127.0.0.1 that serves calendar feeds the way on-call tools do.

Feeds are set per path (`server.put("/team.ics", body)`) and change between polls. The
server answers conditional GETs (ETag and Last-Modified, 304) and can be told to
misbehave on the next requests: `fault(path, kind)` with kind

* ``"500"`` / ``"503"`` / ``"429"`` (with ``Retry-After: retry_after``) — an error status,
* ``"html"`` — a 200 sign-in page, as tools answer for an expired link,
* ``"truncate"`` — a Content-Length of the whole feed, half the body, then the socket closes,
* ``"cut"`` — a complete 200 whose body is the first half of the feed (no END:VCALENDAR),
* ``"slow"`` — waits `slow_seconds` before answering,
* ``"empty"`` — a valid calendar with no events,
* ``"big"`` — a body of `big_bytes` bytes.

`redirect(path, location)` answers 302 to `location`. `requests` lists (path, status).
"""

from __future__ import annotations

import hashlib
import http.server
import threading
import time
from collections import deque
from email.utils import formatdate
from types import TracebackType
from typing import Self

EMPTY_CALENDAR = b"BEGIN:VCALENDAR\r\nVERSION:2.0\r\nPRODID:-//Test//Empty//EN\r\nEND:VCALENDAR\r\n"
LOGIN_PAGE = b"<!DOCTYPE html><html><head><title>Sign in</title></head><body>Sign in</body></html>"


class _QuietServer(http.server.ThreadingHTTPServer):
    """Clients hanging up (timeouts, cut-off reads) are routine here, not errors to print."""

    def handle_error(self, request: object, client_address: object) -> None:
        pass


class FeedServer:
    """Serves feeds from a thread; `url(path)` is its address for `path`."""

    def __init__(self) -> None:
        self._feeds: dict[str, tuple[bytes, str, str]] = {}
        self._faults: dict[str, deque[str]] = {}
        self._redirects: dict[str, str] = {}
        self._lock = threading.Lock()
        self.requests: list[tuple[str, int]] = []
        self.retry_after = 2
        self.slow_seconds = 3.0
        self.big_bytes = 11 * 1024 * 1024
        self.etags = True
        server = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_GET(self) -> None:
                server._handle(self)

            def log_message(self, format: str, *args: object) -> None:
                pass

        self._httpd = _QuietServer(("127.0.0.1", 0), Handler)
        self._httpd.daemon_threads = True
        self._thread = threading.Thread(target=self._httpd.serve_forever, daemon=True)

    def __enter__(self) -> Self:
        self._thread.start()
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()

    @property
    def port(self) -> int:
        """The port it listens on."""
        return int(self._httpd.server_address[1])

    def url(self, path: str) -> str:
        """The http:// address of `path` on this server."""
        return f"http://127.0.0.1:{self.port}{path}"

    def put(self, path: str, body: bytes) -> None:
        """Serve `body` at `path` from now on (a new ETag and Last-Modified)."""
        etag = '"' + hashlib.sha256(body).hexdigest()[:16] + '"'
        with self._lock:
            self._feeds[path] = (body, etag, formatdate(time.time(), usegmt=True))

    def fault(self, path: str, kind: str, count: int = 1) -> None:
        """Misbehave on the next `count` requests of `path` (see the module docstring)."""
        with self._lock:
            self._faults.setdefault(path, deque()).extend([kind] * count)

    def redirect(self, path: str, location: str) -> None:
        """Answer requests of `path` with a 302 to `location`."""
        with self._lock:
            self._redirects[path] = location

    def statuses(self, path: str) -> list[int]:
        """Statuses answered for `path`, in order."""
        with self._lock:
            return [status for p, status in self.requests if p == path]

    def _handle(self, handler: http.server.BaseHTTPRequestHandler) -> None:
        path = handler.path.split("?", 1)[0]
        with self._lock:
            faults = self._faults.get(path)
            fault = faults.popleft() if faults else None
            feed = self._feeds.get(path)
            location = self._redirects.get(path)
        if location is not None:
            self._send(handler, path, 302, b"", {"Location": location})
            return
        if fault == "slow":
            time.sleep(self.slow_seconds)
            fault = None
        if fault in ("500", "503", "429"):
            headers = {"Retry-After": str(self.retry_after)} if fault != "500" else {}
            self._send(handler, path, int(fault), b"error", headers)
            return
        if fault == "html":
            self._send(handler, path, 200, LOGIN_PAGE, {"Content-Type": "text/html"})
            return
        if fault == "empty":
            self._send(handler, path, 200, EMPTY_CALENDAR, {"Content-Type": "text/calendar"})
            return
        if fault == "big":
            self._send(handler, path, 200, b"X" * self.big_bytes, {"Content-Type": "text/calendar"})
            return
        if feed is None:
            self._send(handler, path, 404, b"not found", {})
            return
        body, etag, modified = feed
        if fault == "truncate":
            with self._lock:
                self.requests.append((path, 200))
            handler.send_response(200)
            handler.send_header("Content-Type", "text/calendar")
            handler.send_header("Content-Length", str(len(body)))
            handler.end_headers()
            handler.wfile.write(body[: len(body) // 2])
            handler.wfile.flush()
            handler.close_connection = True
            return
        if fault == "cut":
            self._send(
                handler, path, 200, body[: len(body) // 2], {"Content-Type": "text/calendar"}
            )
            return
        validators = {"ETag": etag, "Last-Modified": modified} if self.etags else {}
        if self.etags and (
            handler.headers.get("If-None-Match") == etag
            or (
                handler.headers.get("If-None-Match") is None
                and handler.headers.get("If-Modified-Since") == modified
            )
        ):
            self._send(handler, path, 304, b"", validators)
            return
        self._send(handler, path, 200, body, {"Content-Type": "text/calendar", **validators})

    def _send(
        self,
        handler: http.server.BaseHTTPRequestHandler,
        path: str,
        status: int,
        body: bytes,
        headers: dict[str, str],
    ) -> None:
        with self._lock:
            self.requests.append((path, status))
        handler.send_response(status)
        for name, value in headers.items():
            handler.send_header(name, value)
        if status != 304:
            handler.send_header("Content-Length", str(len(body)))
        handler.end_headers()
        if status != 304:
            handler.wfile.write(body)
