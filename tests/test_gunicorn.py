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
from typing import Any

import pytest
from flask import Flask
from prometheus_client.parser import text_string_to_metric_families

from oncal_feed import accounts
from oncal_feed.db import get_database, utcnow
from oncal_feed.feeds.tokens import feed_links, rotate_feed
from oncal_feed.models import User
from oncal_feed.validation import UserInput
from tests.processes import free_port, http_request, start_gunicorn, wait_until_serving

SECRET_KEY = "gunicorn-test-" + "k" * 40


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
        "SECRET_KEY": SECRET_KEY,
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


def listening_workers(url: str) -> float:
    """`oncal_feed_user_cache_listening` as gunicorn's /metrics merges it."""
    status, body = http_request("GET", f"{url}/metrics")
    assert status == 200
    return next(
        sample.value
        for family in text_string_to_metric_families(body.decode())
        for sample in family.samples
        if sample.name == "oncal_feed_user_cache_listening"
    )


def test_a_rotated_feed_url_stops_working_in_every_worker(
    app_config: dict[str, Any], postgres_url: str, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    """On PostgreSQL every worker keeps feed users in memory; a rotation reaches them all."""
    app_config.update(DATABASE_URL=postgres_url, SECRET_KEY=SECRET_KEY)
    app: Flask = request.getfixturevalue("app")
    database = get_database(app)
    with database.session() as session:
        user = accounts.create_user(session, UserInput("rota@example.com", "Rota", "UTC"), utcnow())
        public_id = user.public_id

    def feed_path() -> str:
        with app.app_context(), database.session() as session:
            user = accounts.get_user(session, public_id)
            return feed_links(user).https.removeprefix(app.config["BASE_URL"])

    with serving(postgres_url, tmp_path) as (url, _process):
        old = feed_path()
        # New connections each time, spread over both workers, which cache the user.
        for _ in range(20):
            assert http_request("GET", url + old)[0] == 200
        # Each worker that served a feed started its listener, and says so in /metrics.
        for _ in range(500):
            if (listening := listening_workers(url)) >= 1:
                break
            time.sleep(0.01)
        assert 1 <= listening <= 2, listening
        with database.session() as session:
            rotate_feed(session, session.get(User, user.id), utcnow())
        assert http_request("GET", url + feed_path())[0] == 200
        for _ in range(500):
            if all(http_request("GET", url + old)[0] == 404 for _ in range(20)):
                break
            time.sleep(0.01)
        else:
            pytest.fail("the old feed URL still answers 200 after 5 s")
