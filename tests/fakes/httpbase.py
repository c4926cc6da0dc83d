"""Shared plumbing for the fake cloud servers (Google, Microsoft) used by the tests.

A fake is a real HTTP/1.1 server on 127.0.0.1 served from a daemon thread, so the
real client libraries (httplib2, requests, urllib, a browser) talk to it over real
sockets.  This module holds everything that is not provider specific.

Public API (kept stable; other fakes build on it):

``FakeHTTPServer(host="127.0.0.1", port=0, *, verbose=False)``
    Base class.  Subclasses override ``handle(request: Request) -> Response``.
    ``start() -> Self`` binds (port 0 = ephemeral) and serves from a daemon thread,
    ``stop()`` shuts down and closes lingering keep-alive connections, context
    manager support (``with Fake() as fake:`` starts/stops), properties ``url``
    (``http://127.0.0.1:PORT``), ``host``, ``port``, ``running``.
    ``wait_idle(timeout=10)`` returns once no request is being handled: a request
    whose client gave up (a slow fault) still commits later, as on the real
    services, and a test that counts writes must let it land first.  Exceptions a
    handler raises that are not ``HTTPError``/``DropConnection`` become a 500 and
    are appended to ``server_errors`` (list of ``(request, traceback_str)``) so a
    test can assert the fake itself did not crash.  ``verbose=True`` logs every
    request and connection error to stderr (quiet by default: clients hanging up
    mid-response are routine in fault tests).

``Request``
    Parsed request: ``method``, ``path`` (decoded, no query), ``raw_path``,
    ``query`` (``dict[str, list[str]]``), ``headers`` (case-insensitive
    ``email.message.Message``), ``body`` (bytes).  Helpers: ``param(name,
    default=None)`` first query value, ``header(name, default=None)``,
    ``json()`` (raises ``HTTPError(400)`` on bad JSON), ``form()`` (urlencoded body,
    first values), ``bearer_token()``.

``parse_target(method, target, headers, body) -> Request``
    Builds a ``Request`` from a request-line target (``/a/b?x=1``); for requests
    embedded in other requests, e.g. the parts of a batch.

``Response(status=200, body=b"", headers={})`` plus builders
    ``json_response(obj, status=200, headers=None)``, ``text_response(text,
    status=200, content_type=...)``, ``html_response(html, status=200)``,
    ``redirect(location, status=302)``, ``empty_response(status=204)``.

``HTTPError(response)``
    Raise from anywhere inside ``handle`` to answer with ``response``.

``DropConnection(mode="close")``
    Raise to close the socket without sending a response.  ``"close"`` sends a FIN
    (clients see ``RemoteDisconnected``; httplib2 silently re-sends once on that),
    ``"reset"`` sends an RST (clients see ``ConnectionResetError``; no re-send).

``Fault`` / ``Faults(seed=0, targets=())``
    Seeded, thread-safe fault injection.  Probabilities (0..1, checked in this
    order with a single random draw per request, so a seed gives a reproducible
    sequence): ``error_rate`` (status from ``error_statuses``, default 500/503),
    ``rate_limit_rate`` (429 with ``Retry-After: retry_after``), ``quota_rate``
    (provider's 403 throttling shape), ``drop_rate`` (drop before processing),
    ``drop_after_commit_rate`` (process, then drop: "committed but lost"),
    ``slow_rate`` (sleep ``slow_seconds`` before processing).  ``drop_mode`` is
    ``"close"`` or ``"reset"``.  ``fail_next(count=1, status=503, *,
    retry_after=None, kind=None, delay=None)`` queues deterministic faults that win
    over the random ones.  ``targets`` is the set of request classes (strings the
    fake defines, e.g. ``"api"``) that faults apply to; ``applies_to(target)``.
    ``decide(target) -> Fault | None`` consumes one decision.  ``reset()`` clears
    rates and the queue; ``injected`` counts faults by kind.  Fault kinds:
    ``"error"``, ``"rate_limit"``, ``"quota"``, ``"drop"``, ``"drop_after_commit"``,
    ``"slow"``.

``run_with_fault(fault, process, error_response, drop_mode="close") -> Response``
    Applies one decided fault around a ``process()`` callable: sleeps for slow,
    raises ``DropConnection`` before/after ``process()`` for the drop kinds, and
    returns ``error_response(fault)`` for the error kinds (the fake supplies the
    provider-specific error body).

``Stats``
    Thread-safe counter: ``incr(*keys, n=1)``, ``stats["key"]`` (0 if absent),
    ``snapshot() -> dict[str, int]``, ``reset()``.
"""

from __future__ import annotations

import collections
import contextlib
import email.message
import http.server
import json
import random
import socket
import struct
import threading
import time
import traceback
import urllib.parse
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any, Literal, Self

DropMode = Literal["close", "reset"]
FaultKind = Literal["error", "rate_limit", "quota", "drop", "drop_after_commit", "slow"]
FAULT_KINDS: tuple[str, ...] = ("error", "rate_limit", "quota", "drop", "drop_after_commit", "slow")


# --------------------------------------------------------------------------- requests


@dataclass
class Request:
    """One parsed HTTP request as seen by a fake's ``handle`` method."""

    method: str
    path: str
    raw_path: str
    query: dict[str, list[str]]
    headers: email.message.Message
    body: bytes = b""

    def param(self, name: str, default: str | None = None) -> str | None:
        """Return the first value of query parameter ``name`` (or ``default``)."""
        values = self.query.get(name)
        return values[0] if values else default

    def header(self, name: str, default: str | None = None) -> str | None:
        """Return header ``name`` (case-insensitive) or ``default``."""
        value = self.headers.get(name)
        return default if value is None else str(value)

    def json(self) -> Any:
        """Decode the body as JSON; an empty body decodes to ``{}``."""
        if not self.body.strip():
            return {}
        try:
            return json.loads(self.body.decode("utf-8"))
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise HTTPError(
                json_response({"error": "invalid_json", "message": str(exc)}, 400)
            ) from exc

    def form(self) -> dict[str, str]:
        """Decode an ``application/x-www-form-urlencoded`` body (first values)."""
        parsed = urllib.parse.parse_qs(self.body.decode("utf-8"), keep_blank_values=True)
        return {key: values[0] for key, values in parsed.items()}

    def bearer_token(self) -> str | None:
        """Return the token of an ``Authorization: Bearer`` header, if any."""
        value = self.header("Authorization") or ""
        scheme, _, token = value.partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            return None
        return token.strip()


def parse_target(method: str, target: str, headers: email.message.Message, body: bytes) -> Request:
    """Build a ``Request`` from a request line target such as ``/a/b?x=1``.

    Exposed so fakes can parse requests embedded in other requests (batch parts).
    """
    split = urllib.parse.urlsplit(target)
    return Request(
        method=method.upper(),
        path=urllib.parse.unquote(split.path),
        raw_path=split.path,
        query=urllib.parse.parse_qs(split.query, keep_blank_values=True),
        headers=headers,
        body=body,
    )


# -------------------------------------------------------------------------- responses


@dataclass
class Response:
    """An HTTP response a fake returns; ``Content-Length`` is added when sent."""

    status: int = 200
    body: bytes = b""
    headers: dict[str, str] = field(default_factory=dict)


def json_response(obj: Any, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    """Serialise ``obj`` as a JSON response."""
    all_headers = {"Content-Type": "application/json; charset=UTF-8"}
    all_headers.update(headers or {})
    return Response(status, json.dumps(obj, indent=1).encode("utf-8"), all_headers)


def text_response(
    text: str, status: int = 200, content_type: str = "text/plain; charset=utf-8"
) -> Response:
    """Return a plain text (or any textual ``content_type``) response."""
    return Response(status, text.encode("utf-8"), {"Content-Type": content_type})


def html_response(html: str, status: int = 200) -> Response:
    """Return an HTML page."""
    return text_response(html, status, "text/html; charset=utf-8")


def redirect(location: str, status: int = 302) -> Response:
    """Return a redirect to ``location``."""
    return Response(status, b"", {"Location": location})


def empty_response(status: int = 204) -> Response:
    """Return a response without a body."""
    return Response(status, b"", {})


class HTTPError(Exception):
    """Raised inside a handler to answer with a prepared error response."""

    def __init__(self, response: Response) -> None:
        """Wrap ``response``."""
        super().__init__(f"HTTP {response.status}")
        self.response = response


class DropConnection(Exception):
    """Raised inside a handler to close the connection without any response."""

    def __init__(self, mode: DropMode = "close") -> None:
        """``mode`` is ``"close"`` (FIN) or ``"reset"`` (RST)."""
        super().__init__(mode)
        self.mode: DropMode = mode


# ----------------------------------------------------------------------------- faults


@dataclass(frozen=True)
class Fault:
    """One injected fault; ``status``/``retry_after`` only matter for error kinds."""

    kind: FaultKind
    status: int | None = None
    retry_after: float | None = None
    delay: float = 0.0


class Faults:
    """Seeded, thread-safe fault injection shared by the fakes."""

    def __init__(self, seed: int = 0, targets: Iterable[str] = ()) -> None:
        """Create a fault source with every rate at zero (no faults)."""
        self._lock = threading.Lock()
        self._rng = random.Random(seed)
        self._queue: collections.deque[Fault] = collections.deque()
        self.targets: set[str] = set(targets)
        self.error_rate = 0.0
        self.error_statuses: tuple[int, ...] = (500, 503)
        self.rate_limit_rate = 0.0
        self.quota_rate = 0.0
        self.retry_after: float = 1
        self.drop_rate = 0.0
        self.drop_after_commit_rate = 0.0
        self.slow_rate = 0.0
        self.slow_seconds = 2.0
        self.drop_mode: DropMode = "close"
        self.injected: collections.Counter[str] = collections.Counter()

    def seed(self, seed: int) -> None:
        """Re-seed the random source (reproducible fault sequences)."""
        with self._lock:
            self._rng.seed(seed)

    def reset(self) -> None:
        """Turn every fault off and forget queued ones (targets and seed stay)."""
        with self._lock:
            self._queue.clear()
            self.error_rate = self.rate_limit_rate = self.quota_rate = 0.0
            self.drop_rate = self.drop_after_commit_rate = self.slow_rate = 0.0
            self.injected.clear()

    def applies_to(self, target: str) -> bool:
        """Whether requests of class ``target`` are subject to faults."""
        return target in self.targets

    def fail_next(
        self,
        count: int = 1,
        status: int = 503,
        *,
        retry_after: float | None = None,
        kind: FaultKind | None = None,
        delay: float | None = None,
    ) -> None:
        """Queue ``count`` deterministic faults for the next targeted requests.

        Without ``kind`` the fault is a plain error with ``status``; 429 becomes
        ``rate_limit`` (with ``retry_after``, default ``self.retry_after``).  Give
        ``kind="quota"`` for a 403 throttle, or ``"drop"``, ``"drop_after_commit"``,
        ``"slow"`` (sleeping ``delay`` seconds, default ``slow_seconds``).
        """
        if kind is None:
            kind = "rate_limit" if status == 429 else "error"
        if kind not in FAULT_KINDS:
            raise ValueError(f"unknown fault kind {kind!r}")
        if kind == "quota":
            status = 403
        if kind == "rate_limit":
            status = 429
            retry_after = self.retry_after if retry_after is None else retry_after
        fault = Fault(
            kind=kind,
            status=status if kind in ("error", "rate_limit", "quota") else None,
            retry_after=retry_after,
            delay=self.slow_seconds if delay is None else delay,
        )
        with self._lock:
            self._queue.extend([fault] * count)

    @property
    def pending(self) -> int:
        """How many queued deterministic faults are left."""
        with self._lock:
            return len(self._queue)

    def decide(self, target: str | None = None) -> Fault | None:
        """Consume one fault decision for a request of class ``target``.

        Returns ``None`` when ``target`` is not in ``targets`` (pass ``None`` to
        skip that check).
        """
        if target is not None and not self.applies_to(target):
            return None
        with self._lock:
            fault = self._queue.popleft() if self._queue else self._roll()
            if fault is not None:
                self.injected[fault.kind] += 1
            return fault

    def _roll(self) -> Fault | None:
        # One draw per request keeps a seed's fault sequence independent of which
        # rates are zero, which makes reproductions across configs easier.
        draw = self._rng.random()
        threshold = 0.0
        for kind, rate in (
            ("error", self.error_rate),
            ("rate_limit", self.rate_limit_rate),
            ("quota", self.quota_rate),
            ("drop", self.drop_rate),
            ("drop_after_commit", self.drop_after_commit_rate),
            ("slow", self.slow_rate),
        ):
            threshold += rate
            if draw < threshold:
                if kind == "error":
                    return Fault("error", status=self._rng.choice(self.error_statuses))
                if kind == "rate_limit":
                    return Fault("rate_limit", status=429, retry_after=self.retry_after)
                if kind == "quota":
                    return Fault("quota", status=403)
                if kind == "slow":
                    return Fault("slow", delay=self.slow_seconds)
                return Fault(kind)  # type: ignore[arg-type]
        return None


def run_with_fault(
    fault: Fault | None,
    process: Callable[[], Response],
    error_response: Callable[[Fault], Response],
    drop_mode: DropMode = "close",
) -> Response:
    """Run ``process`` under ``fault`` (see the module docstring)."""
    if fault is None:
        return process()
    if fault.kind == "slow":
        time.sleep(fault.delay)
        return process()
    if fault.kind == "drop":
        raise DropConnection(drop_mode)
    if fault.kind == "drop_after_commit":
        process()
        raise DropConnection(drop_mode)
    return error_response(fault)


# ------------------------------------------------------------------------------ stats


class Stats:
    """Thread-safe named counters (requests by kind, for tests and benchmarks)."""

    def __init__(self) -> None:
        """Start with every counter at zero."""
        self._lock = threading.Lock()
        self._counts: collections.Counter[str] = collections.Counter()

    def incr(self, *keys: str, n: int = 1) -> None:
        """Add ``n`` to each of ``keys``."""
        with self._lock:
            for key in keys:
                self._counts[key] += n

    def __getitem__(self, key: str) -> int:
        """Current value of ``key`` (0 when never incremented)."""
        with self._lock:
            return self._counts[key]

    def snapshot(self) -> dict[str, int]:
        """A copy of all counters."""
        with self._lock:
            return dict(self._counts)

    def reset(self) -> None:
        """Zero all counters."""
        with self._lock:
            self._counts.clear()

    def __repr__(self) -> str:
        """Show the counters, sorted, for assertion messages."""
        return f"Stats({dict(sorted(self.snapshot().items()))})"


# ----------------------------------------------------------------------------- server


class _Handler(http.server.BaseHTTPRequestHandler):
    # HTTP/1.1 so clients keep connections alive, like against the real services;
    # that is also what makes httplib2's stale-connection re-send observable.
    protocol_version = "HTTP/1.1"
    # Headers and body go out in separate writes; with Nagle on, delayed ACKs on loopback
    # add ~40 ms to every response and distort round-trip timings.
    disable_nagle_algorithm = True
    server: _ThreadingServer
    # Idle keep-alive connections are closed after this many seconds.
    timeout = 30

    def log_message(self, format: str, *args: Any) -> None:
        if self.server.owner.verbose:
            super().log_message(format, *args)

    def _read_body(self) -> bytes:
        if "chunked" in (self.headers.get("Transfer-Encoding") or "").lower():
            chunks = []
            while True:
                size = int(self.rfile.readline().split(b";")[0].strip() or b"0", 16)
                if size == 0:
                    # Trailer section ends with an empty line.
                    while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                        pass
                    return b"".join(chunks)
                chunks.append(self.rfile.read(size))
                self.rfile.readline()
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length else b""

    def _dispatch(self) -> None:
        body = self._read_body()
        request = parse_target(self.command, self.path, self.headers, body)
        owner = self.server.owner
        try:
            with owner.handling():
                response = owner.handle(request)
        except HTTPError as exc:
            response = exc.response
        except DropConnection as exc:
            self._drop(exc.mode)
            return
        except Exception:
            trace = traceback.format_exc()
            owner.server_errors.append((request, trace))
            response = text_response(f"fake server error\n{trace}", 500)
        self._send(response)

    def _send(self, response: Response) -> None:
        self.send_response(response.status)
        headers = dict(response.headers)
        headers["Content-Length"] = str(len(response.body))
        for name, value in headers.items():
            self.send_header(name, value)
        self.end_headers()
        if self.command != "HEAD" and response.body:
            self.wfile.write(response.body)
        self.wfile.flush()

    def _drop(self, mode: DropMode) -> None:
        self.close_connection = True
        sock = self.connection
        with contextlib.suppress(OSError):
            if mode == "reset":
                # SO_LINGER with a zero timeout turns close() into an RST.  The
                # makefile() reader holds a reference that would defer the real
                # close (and socketserver would send a FIN first), so drop it now.
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                self.rfile.close()
                sock.close()
            else:
                sock.shutdown(socket.SHUT_RDWR)

    do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = do_HEAD = do_OPTIONS = _dispatch


class _ThreadingServer(http.server.ThreadingHTTPServer):
    daemon_threads = True
    # Keep-alive handler threads may idle for a long time; stop() must not wait.
    block_on_close = False

    def __init__(self, address: tuple[str, int], owner: FakeHTTPServer) -> None:
        self.owner = owner
        self._conn_lock = threading.Lock()
        self._connections: set[socket.socket] = set()
        super().__init__(address, _Handler)

    def process_request(self, request: Any, client_address: Any) -> None:
        with self._conn_lock:
            self._connections.add(request)
        super().process_request(request, client_address)

    def shutdown_request(self, request: Any) -> None:
        with self._conn_lock:
            self._connections.discard(request)
        super().shutdown_request(request)

    def handle_error(self, request: Any, client_address: Any) -> None:
        # Clients that time out or hang up mid-response are routine in fault tests;
        # socketserver's default would print a traceback for each one.
        if self.owner.verbose:
            super().handle_error(request, client_address)

    def close_all_connections(self) -> None:
        with self._conn_lock:
            connections = list(self._connections)
            self._connections.clear()
        for conn in connections:
            with contextlib.suppress(OSError):
                conn.shutdown(socket.SHUT_RDWR)
            with contextlib.suppress(OSError):
                conn.close()


class FakeHTTPServer:
    """Threaded loopback HTTP server base; subclasses implement ``handle``."""

    def __init__(self, host: str = "127.0.0.1", port: int = 0, *, verbose: bool = False) -> None:
        """Configure (but do not bind) the server; port 0 picks a free port."""
        self.host = host
        self._requested_port = port
        self.verbose = verbose
        self.server_errors: list[tuple[Request, str]] = []
        self._server: _ThreadingServer | None = None
        self._thread: threading.Thread | None = None
        self._in_flight = 0
        self._idle = threading.Condition()

    @contextlib.contextmanager
    def handling(self) -> Iterator[None]:
        """Count one request as in flight while the block runs (see ``wait_idle``)."""
        with self._idle:
            self._in_flight += 1
        try:
            yield
        finally:
            with self._idle:
                self._in_flight -= 1
                self._idle.notify_all()

    def wait_idle(self, timeout: float = 10) -> None:
        """Block until no request is being handled; AssertionError after ``timeout``."""
        with self._idle:
            settled = self._idle.wait_for(lambda: self._in_flight == 0, timeout)
            assert settled, f"{type(self).__name__}: {self._in_flight} request(s) still running"

    def handle(self, request: Request) -> Response:
        """Answer one request; subclasses override this."""
        raise NotImplementedError

    def start(self) -> Self:
        """Bind and serve from a daemon thread; returns ``self``."""
        if self._server is not None:
            raise RuntimeError("server already started")
        self._server = _ThreadingServer((self.host, self._requested_port), self)
        self._thread = threading.Thread(
            target=self._server.serve_forever,
            kwargs={"poll_interval": 0.05},
            name=f"{type(self).__name__}-{self.port}",
            daemon=True,
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop serving and close every open connection (idempotent)."""
        server, self._server = self._server, None
        if server is None:
            return
        server.shutdown()
        # Pooled keep-alive connections would otherwise still be answered by
        # their handler threads after stop().
        server.close_all_connections()
        server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None

    @property
    def running(self) -> bool:
        """Whether the server is currently serving."""
        return self._server is not None

    @property
    def port(self) -> int:
        """The bound port (only valid after ``start``)."""
        if self._server is None:
            raise RuntimeError("server not started")
        return int(self._server.server_address[1])

    @property
    def url(self) -> str:
        """Base URL such as ``http://127.0.0.1:54321`` (no trailing slash)."""
        return f"http://{self.host}:{self.port}"

    def __enter__(self) -> Self:
        """Start the server if needed."""
        if not self.running:
            self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        """Stop the server."""
        self.stop()
