"""The HTTP layer of the fake cloud servers (Google, Microsoft), built on werkzeug.

A fake is a real HTTP/1.1 server on 127.0.0.1 (werkzeug's threaded WSGI server)
served from a daemon thread, so the real client libraries (httplib2, requests,
urllib, a browser) talk to it over real sockets.  werkzeug parses requests and
writes responses; this module adds what a fake needs on top of it:

``FakeHTTPServer(host="127.0.0.1", port=0, *, verbose=False)``
    Base class.  Subclasses override ``handle(request: Request) -> Response``.
    ``start() -> Self`` binds (port 0 = ephemeral) and serves from a daemon thread,
    ``stop()`` shuts down and closes connections still open, context manager
    support (``with Fake() as fake:`` starts/stops), properties ``url``
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
    The parsed request a handler sees: ``method``, ``path`` (decoded, no query),
    ``raw_path``, ``query`` (``dict[str, list[str]]``), ``headers``
    (case-insensitive werkzeug ``Headers``), ``body`` (bytes).  Helpers:
    ``param(name, default=None)`` first query value, ``header(name,
    default=None)``, ``json()`` (raises ``HTTPError(400)`` on bad JSON), ``form()``
    (urlencoded body, first values), ``bearer_token()``.

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

werkzeug's development server answers every request with ``Connection: close``
(no keep-alive), so each call opens its own loopback connection; the clients'
behaviour on a dropped response (httplib2's single re-send) does not depend on
keep-alive.
"""

from __future__ import annotations

import contextlib
import json
import socket
import struct
import threading
import traceback
import urllib.parse
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any, Literal, Protocol, Self

from werkzeug.datastructures import Headers
from werkzeug.serving import ThreadedWSGIServer, WSGIRequestHandler
from werkzeug.wrappers import Request as WerkzeugRequest
from werkzeug.wrappers import Response as WerkzeugResponse

DropMode = Literal["close", "reset"]


class _HeaderSource(Protocol):
    def items(self) -> Iterable[tuple[str, Any]]: ...


# --------------------------------------------------------------------------- requests


@dataclass
class Request:
    """One parsed HTTP request as seen by a fake's ``handle`` method."""

    method: str
    path: str
    raw_path: str
    query: dict[str, list[str]]
    headers: Headers
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


def parse_target(method: str, target: str, headers: _HeaderSource, body: bytes) -> Request:
    """Build a ``Request`` from a request line target such as ``/a/b?x=1``.

    Exposed so fakes can parse requests embedded in other requests (batch parts).
    """
    split = urllib.parse.urlsplit(target)
    return Request(
        method=method.upper(),
        path=urllib.parse.unquote(split.path),
        raw_path=split.path,
        query=urllib.parse.parse_qs(split.query, keep_blank_values=True),
        headers=Headers([(str(name), str(value)) for name, value in headers.items()]),
        body=body,
    )


# -------------------------------------------------------------------------- responses


@dataclass
class Response:
    """An HTTP response a fake returns; werkzeug adds ``Content-Length`` when sent."""

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


class _Dropped(ConnectionError):
    # Raised out of the WSGI app: werkzeug treats a ConnectionError as a dropped
    # connection (no 500 written) and hands it to the handler's connection_dropped,
    # which is where the socket itself is reachable to close or reset.
    def __init__(self, mode: DropMode) -> None:
        super().__init__(mode)
        self.mode: DropMode = mode


# ----------------------------------------------------------------------------- server


class _Handler(WSGIRequestHandler):
    # Headers and body go out in separate writes; with Nagle on, delayed ACKs on loopback
    # add ~40 ms to every response and distort round-trip timings.
    disable_nagle_algorithm = True
    server: _Server

    def log(self, type: str, message: str, *args: Any) -> None:
        if self.server.owner.verbose:
            super().log(type, message, *args)

    def connection_dropped(
        self, error: BaseException, environ: dict[str, Any] | None = None
    ) -> None:
        self.close_connection = True
        if not isinstance(error, _Dropped):
            return
        sock = self.connection
        with contextlib.suppress(OSError):
            if error.mode == "reset":
                # SO_LINGER with a zero timeout turns close() into an RST.  The
                # makefile() reader holds a reference that would defer the real
                # close (and socketserver would send a FIN first), so drop it now.
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                self.rfile.close()
                sock.close()
            else:
                sock.shutdown(socket.SHUT_RDWR)


class _Server(ThreadedWSGIServer):
    # Handler threads of slow requests may outlive stop(); it must not wait for them.
    block_on_close = False

    def __init__(self, host: str, port: int, owner: FakeHTTPServer) -> None:
        self.owner = owner
        self._conn_lock = threading.Lock()
        self._connections: set[socket.socket] = set()
        super().__init__(host, port, owner.wsgi_app, handler=_Handler)

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
        self._server: _Server | None = None
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

    def wsgi_app(self, environ: dict[str, Any], start_response: Any) -> Iterable[bytes]:
        """The WSGI application werkzeug serves: one request through ``handle``."""
        incoming = WerkzeugRequest(environ)
        # RAW_URI is the request target as sent, so paths keep their escapes.
        target = str(environ.get("RAW_URI") or incoming.full_path)
        request = parse_target(incoming.method, target, incoming.headers, incoming.get_data())
        try:
            with self.handling():
                response = self.handle(request)
        except HTTPError as exc:
            response = exc.response
        except DropConnection as exc:
            raise _Dropped(exc.mode) from exc
        except Exception:
            trace = traceback.format_exc()
            self.server_errors.append((request, trace))
            response = text_response(f"fake server error\n{trace}", 500)
        headers = [(k, v) for k, v in response.headers.items() if k.lower() != "content-length"]
        outgoing = WerkzeugResponse(response.body, status=response.status, headers=headers)
        # werkzeug would add a default text/html type to a bare body; keep none.
        if not any(k.lower() == "content-type" for k, _ in headers):
            del outgoing.headers["Content-Type"]
        return outgoing(environ, start_response)

    def start(self) -> Self:
        """Bind and serve from a daemon thread; returns ``self``."""
        if self._server is not None:
            raise RuntimeError("server already started")
        self._server = _Server(self.host, self._requested_port, self)
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
        # Requests still being answered (slow faults) would otherwise keep their
        # sockets open after stop().
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
