"""The production server: gunicorn with our config, on a real socket."""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import Any

import pytest
from flask import Flask
from prometheus_client.parser import text_string_to_metric_families

from oncal_feed import accounts
from oncal_feed.db import get_database, utcnow
from oncal_feed.feeds.store import first_feed, rotate_feed
from oncal_feed.feeds.tokens import feed_links
from oncal_feed.gunicorn_worker import REFUSALS
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
            feed = first_feed(session, accounts.get_user(session, public_id))
            return feed_links(feed).https.removeprefix(app.config["BASE_URL"])

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
            rotate_feed(
                session, first_feed(session, accounts.get_user(session, public_id)), utcnow()
            )
        assert http_request("GET", url + feed_path())[0] == 200
        for _ in range(500):
            if all(http_request("GET", url + old)[0] == 404 for _ in range(20)):
                break
            time.sleep(0.01)
        else:
            pytest.fail("the old feed URL still answers 200 after 5 s")


# ------------------------------------------------------------- issue 13: the edges


class SlowClients:
    """Connections that send a request's headers one line every `interval` seconds and
    never finish them (a slowloris), held open until `close()`."""

    def __init__(self, url: str, count: int, interval: float = 1.5) -> None:
        host, port = url.removeprefix("http://").split(":")
        self.sockets = []
        for _ in range(count):
            conn = socket.create_connection((host, int(port)), timeout=10)
            conn.sendall(f"GET /healthz HTTP/1.1\r\nHost: {host}\r\n".encode())
            self.sockets.append(conn)
        self.interval = interval
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._trickle, daemon=True)
        self.thread.start()

    def _trickle(self) -> None:
        number = 0
        while not self.stop.wait(self.interval):
            number += 1
            for conn in self.sockets:
                with suppress(OSError):  # the server gave up on it: fine
                    conn.sendall(f"X-Slow-{number}: 1\r\n".encode())

    def close(self) -> None:
        self.stop.set()
        self.thread.join(timeout=5)
        for conn in self.sockets:
            conn.close()


def feed_path_of(app: Flask, email: str) -> str:
    """Create a user and return the path of their feed."""
    with app.app_context(), get_database(app).session() as session:
        user = accounts.create_user(session, UserInput(email, "Slow Test", "UTC"), utcnow())
        session.flush()
        return feed_links(first_feed(session, user)).https.removeprefix(app.config["BASE_URL"])


def test_slow_clients_do_not_stall_health_or_feeds(
    app_config: dict[str, Any], database_url: str, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    """Issue 13.1: 30 connections trickling header lines made /healthz time out (gthread
    gave each a thread). 60 here, on two workers; benchmarks/slow_clients.py goes to 1000s."""
    app_config["SECRET_KEY"] = SECRET_KEY
    app: Flask = request.getfixturevalue("app")
    feed = feed_path_of(app, "slow@example.com")
    with serving(database_url, tmp_path) as (url, _process):
        slow = SlowClients(url, 60)
        try:
            time.sleep(2)  # every slow connection accepted, a header line or two sent
            for path in ("/healthz", feed, "/healthz", feed):
                started = time.monotonic()
                status, _ = http_request("GET", url + path, timeout=5)
                assert status == 200, path
                assert time.monotonic() - started < 1.0, path
        finally:
            slow.close()


def test_sign_in_attempts_are_counted_across_workers(
    app_config: dict[str, Any], database_url: str, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    """Issue 13.2: with memory:// every gunicorn worker counted on its own (28 of 60
    guesses were checked). The SQLite counters in the instance folder are shared."""
    import requests

    with serving(
        database_url, tmp_path, WEB_CONCURRENCY="4", LOGIN_RATE_LIMIT="5 per minute",
        LOGIN_SLOWDOWN_SECONDS="0",
        RATELIMIT_STORAGE_URI=f"sqlite:///{tmp_path / 'ratelimit.sqlite'}",
    ) as (url, _process):  # fmt: skip
        statuses = []
        for attempt in range(7):
            # A fresh connection each time, so the attempts spread over the workers.
            session = requests.Session()
            session.trust_env = False
            page = session.get(f"{url}/login", headers={"Connection": "close"}, timeout=10)
            token = re.search(r'name="csrf_token" value="([^"]+)"', page.text)
            assert token, page.text
            answer = session.post(
                f"{url}/login",
                data={"email": f"guess{attempt}@example.com", "password": "x",
                      "csrf_token": token.group(1)},
                headers={"Connection": "close"},
                allow_redirects=False,
                timeout=10,
            )  # fmt: skip
            statuses.append(answer.status_code)
    assert statuses == [401] * 5 + [429] * 2, statuses


def test_what_gunicorn_refuses_is_answered_in_json(
    database_url: str, tmp_path: Path, api_key: str
) -> None:
    """Issue 13.10: gunicorn's 414 and 431 were HTML pages; a 5,000-character id now
    reaches the app (422 naming it); a chunked body over the limit is 413, not 'invalid'."""
    with serving(database_url, tmp_path) as (url, _process):
        auth = {"Authorization": f"Bearer {api_key}"}
        schedule = {"name": "X", "time_zone": "UTC"}
        assert http_request("PUT", f"{url}/api/v1/schedules/x", schedule, headers=auth)[0] == 201
        status, body = http_request(
            "PUT", f"{url}/api/v1/schedules/x/shifts/{'a' * 5000}", {}, headers=auth
        )
        assert status == 422, body
        assert body["errors"][0]["field"] == "external_id"

        status, body = http_request("GET", f"{url}/api/v1/users?after={'a' * 9000}", headers=auth)
        assert status == 414, body
        assert body["error"] == "uri_too_long"
        assert body["errors"] == [{"field": "path", "problem": REFUSALS[414][3]}]

        status, body = http_request(
            "GET", f"{url}/api/v1/users", headers={"Authorization": "Bearer " + "k" * 16_000}
        )
        assert status == 431, body
        assert body["errors"][0]["field"] == "headers"

        host, port = url.removeprefix("http://").split(":")
        with socket.create_connection((host, int(port)), timeout=20) as conn:
            conn.sendall(
                f"PUT /api/v1/schedules/x/shifts?from=2026-01-01T00:00:00Z&to=2026-02-01T00:00:00Z"
                f" HTTP/1.1\r\nHost: {host}\r\nAuthorization: Bearer {api_key}\r\n"
                "Content-Type: application/json\r\nTransfer-Encoding: chunked\r\n"
                "Connection: close\r\n\r\n".encode()
            )
            chunk = b"[" + b'{"external_id": "x"},' * 4000
            try:
                for _ in range(20):  # 1.6 MB in all
                    conn.sendall(b"%x\r\n%s\r\n" % (len(chunk), chunk))
                conn.sendall(b"0\r\n\r\n")
            except OSError:
                pass  # the server answered and closed before reading it all
            answer = b""
            try:
                while data := conn.recv(65536):
                    answer += data
            except ConnectionResetError:
                pass  # closed with our unread body in its buffer, after answering
        assert answer.startswith(b"HTTP/1.1 413"), answer[:300]
        assert b'"field":"body"' in answer.replace(b" ", b""), answer[-300:]


def test_no_spelling_of_a_feed_url_reaches_the_access_log(
    database_url: str, tmp_path: Path
) -> None:
    """Issue 13.4: percent-encoded, doubled and upper-case spellings were logged raw."""
    token = "WyJ1X2FiYyIsMV0." + "S" * 43
    spellings = [
        f"/feeds%2F{token}.ics", f"/%66eeds/{token}.ics", f"/fe%65ds/{token}.ics",
        f"/feeds//{token}.ics", f"/FEEDS/{token}.ics", f"/feeds/{token}=.ics",
    ]  # fmt: skip
    with serving(database_url, tmp_path, LOG_FORMAT="json") as (url, process):
        for path in spellings:
            assert http_request("GET", url + path)[0] == 404, path
        status, _ = http_request("GET", url + "/healthz%0A2099%20CRITICAL%20fake")
        assert status == 404
        process.terminate()
        output, _ = process.communicate(timeout=30)
    assert "SSSSSSSSSS" not in output
    assert "\n2099 CRITICAL" not in output
