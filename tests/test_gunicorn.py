"""The production server: gunicorn with our config, on a real socket."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from tests.processes import free_port, start_gunicorn, wait_until_serving


@contextmanager
def serving(
    database_url: str, tmp_path: Path, **settings: str
) -> Iterator[tuple[str, subprocess.Popen]]:
    """Run `gunicorn wsgi:app` with gunicorn.conf.py on 127.0.0.1; yield its URL and process."""
    port = free_port()
    env = {
        **os.environ,
        "BIND": f"127.0.0.1:{port}",
        "WEB_CONCURRENCY": "2",
        "DATABASE_URL": database_url,
        "SECRET_KEY": "gunicorn-test-" + "k" * 40,
        "QUEUE_URL": f"sqlite:///{tmp_path / 'queue.sqlite'}",
        "PROMETHEUS_MULTIPROC_DIR": str(tmp_path),
        "ONCAL_MODE": "production",
        **settings,
    }
    process = start_gunicorn(env, subprocess.PIPE)
    url = f"http://127.0.0.1:{port}"
    try:
        wait_until_serving(url, process, lambda: process.communicate(timeout=30)[0])
        yield url, process
    finally:
        if process.poll() is None:
            process.terminate()
        process.communicate(timeout=30)


@pytest.fixture
def gunicorn(database_url: str, tmp_path: Path) -> Iterator[tuple[str, subprocess.Popen]]:
    """gunicorn as production runs it (see `serving`)."""
    with serving(database_url, tmp_path) as running:
        yield running


# Every atom that can carry the URL: request line, path, query, referrer, a request
# header and the environ.
URL_ATOMS_FORMAT = '"%(r)s" %(U)s %(q)s "%(f)s" %({x-original-url}i)s %({raw_uri}e)s'


@pytest.mark.parametrize(
    "settings",
    [{}, {"GUNICORN_CMD_ARGS": f"--access-logformat '{URL_ATOMS_FORMAT}'"}, {"LOG_FORMAT": "json"}],
    ids=["default", "every-url-atom", "json"],
)
def test_access_log_never_contains_a_feed_token(
    database_url: str, tmp_path: Path, settings: dict[str, str]
) -> None:
    """Requests for feed URLs are logged with the token replaced, in every log format."""
    token = "SECRETtoken123.abcDEF"
    with serving(database_url, tmp_path, **settings) as (url, process):
        request = urllib.request.Request(
            f"{url}/feeds/{token}.ics?code=SECRETcode",
            headers={
                "Referer": f"{url}/feeds/{token}.ics",
                "X-Original-URL": f"/feeds/{token}.ics",
            },
        )
        with pytest.raises(urllib.error.HTTPError) as caught:
            urllib.request.urlopen(request, timeout=5)
        assert caught.value.code == 404
        caught.value.close()
        process.terminate()
        output, _ = process.communicate(timeout=30)
    lines = [line for line in output.splitlines() if "feeds/" in line]
    assert len(lines) == 1, output
    assert "/feeds/[redacted]" in lines[0]
    assert "SECRET" not in output
    if settings.get("LOG_FORMAT") == "json":
        assert json.loads(lines[0])["path"] == "/feeds/[redacted]"
    if "GUNICORN_CMD_ARGS" in settings:
        assert lines[0].count("/feeds/[redacted]") == 5  # r, U, f, the header, raw_uri


def test_sigterm_drains_a_request_in_flight(gunicorn, app, api_key: str) -> None:
    """A request whose body is still arriving when SIGTERM lands is answered in full.

    The body is sent in two halves around the signal, so the view is provably running
    (blocked reading its input) while gunicorn shuts down.
    """
    url, process = gunicorn
    host, port = url.removeprefix("http://").split(":")
    body = b'{"email": "drain@example.com", "display_name": "Drain Test"}'
    head = (
        f"POST /api/v1/users HTTP/1.1\r\nHost: {host}\r\n"
        f"Authorization: Bearer {api_key}\r\nContent-Type: application/json\r\n"
        f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n"
    ).encode()
    with socket.create_connection((host, int(port)), timeout=20) as conn:
        conn.sendall(head + body[:10])
        # Ample time for a booted worker to accept and enter the view, even on a busy machine.
        time.sleep(2)
        process.send_signal(signal.SIGTERM)
        time.sleep(0.5)
        conn.sendall(body[10:])
        answer = b""
        while chunk := conn.recv(65536):
            answer += chunk
    assert answer.startswith(b"HTTP/1.1 201"), answer[:200]
    assert process.wait(timeout=30) == 0
