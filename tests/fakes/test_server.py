"""The werkzeug-based HTTP layer of the fakes (tests/fakes/server.py)."""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterator

import pytest
import requests

from tests.fakes.server import (
    DropConnection,
    FakeHTTPServer,
    Request,
    Response,
    json_response,
)


class _Echo(FakeHTTPServer):
    """Answers with what it parsed; ``/drop/<mode>`` drops, ``/boom`` crashes."""

    def __init__(self) -> None:
        super().__init__()
        self.release = threading.Event()

    def handle(self, request: Request) -> Response:
        if request.path.startswith("/drop/"):
            raise DropConnection("reset" if request.path.endswith("reset") else "close")
        if request.path == "/boom":
            raise RuntimeError("handler bug")
        if request.path == "/wait":
            self.release.wait(5)
        return json_response(
            {
                "method": request.method,
                "path": request.path,
                "raw_path": request.raw_path,
                "query": request.query,
                "header": request.header("x-test"),
                "body": request.body.decode(),
            },
            201,
        )


@pytest.fixture
def echo() -> Iterator[_Echo]:
    """A started echo server."""
    with _Echo() as server:
        yield server


def test_request_is_parsed_with_escapes_kept_in_raw_path(echo: _Echo) -> None:
    """Path decoded, raw path as sent, repeated query values, headers any case, body."""
    answer = requests.post(
        f"{echo.url}/calendars/a%40b/events?x=1&x=2&y=",
        data=b"payload",
        headers={"X-Test": "yes"},
        timeout=5,
    )
    assert answer.status_code == 201
    assert answer.json() == {
        "method": "POST",
        "path": "/calendars/a@b/events",
        "raw_path": "/calendars/a%40b/events",
        "query": {"x": ["1", "2"], "y": [""]},
        "header": "yes",
        "body": "payload",
    }
    assert answer.headers["Content-Length"] == str(len(answer.content))


def test_a_crashing_handler_is_a_500_recorded_for_the_test(echo: _Echo) -> None:
    """The fake's own bugs surface in ``server_errors``, not as a hung client."""
    answer = requests.get(f"{echo.url}/boom", timeout=5)
    assert answer.status_code == 500
    assert len(echo.server_errors) == 1
    assert "handler bug" in echo.server_errors[0][1]
    echo.server_errors.clear()


@pytest.mark.parametrize(
    ("mode", "error"),
    [
        ("close", requests.exceptions.ConnectionError),
        ("reset", requests.exceptions.ConnectionError),
    ],
)
def test_drop_closes_the_connection_without_an_answer(
    echo: _Echo, mode: str, error: type[Exception]
) -> None:
    """A dropped request gets no status line at all."""
    with pytest.raises(error):
        requests.get(f"{echo.url}/drop/{mode}", timeout=5)


def test_reset_is_an_rst_and_close_a_fin() -> None:
    """On a raw socket: ``reset`` raises ConnectionResetError, ``close`` reads end of file."""
    with _Echo() as server:
        for mode in ("reset", "close"):
            with socket.create_connection(("127.0.0.1", server.port), timeout=5) as sock:
                sock.sendall(f"GET /drop/{mode} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
                if mode == "reset":
                    with pytest.raises(ConnectionResetError):
                        sock.recv(100)
                else:
                    assert sock.recv(100) == b""


def test_wait_idle_waits_for_requests_still_running(echo: _Echo) -> None:
    """A request whose client gave up still counts until its handler returns."""
    with pytest.raises(requests.exceptions.Timeout):
        requests.get(f"{echo.url}/wait", timeout=0.2)
    with pytest.raises(AssertionError):
        echo.wait_idle(timeout=0.1)
    echo.release.set()
    echo.wait_idle(timeout=5)
