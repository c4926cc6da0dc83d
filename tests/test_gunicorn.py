"""The production server: gunicorn with our config, on a real socket."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.processes import free_port, start_gunicorn, wait_until_serving


@pytest.fixture
def gunicorn(database_url: str, tmp_path: Path) -> Iterator[tuple[str, subprocess.Popen]]:
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
    }
    process = start_gunicorn(env, subprocess.PIPE)
    url = f"http://127.0.0.1:{port}"
    wait_until_serving(url, process, lambda: process.communicate(timeout=30)[0])
    yield url, process
    if process.poll() is None:
        process.terminate()
    process.communicate(timeout=30)


def test_access_log_never_contains_a_feed_token(gunicorn) -> None:
    """Requests for feed URLs are logged with the token replaced."""
    url, process = gunicorn
    token = "SECRETtoken123.abcDEF"
    with pytest.raises(urllib.error.HTTPError) as caught:
        urllib.request.urlopen(f"{url}/feeds/{token}.ics", timeout=5)
    assert caught.value.code == 404
    caught.value.close()
    process.terminate()
    output, _ = process.communicate(timeout=30)
    assert "/feeds/[redacted]" in output
    assert token not in output


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
