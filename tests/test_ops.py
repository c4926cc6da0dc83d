"""Liveness, readiness and metrics endpoints."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient
from freezegun import freeze_time
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy import update

from oncal_feed import create_app
from oncal_feed.db import get_database
from oncal_feed.errors import ConfigError
from oncal_feed.logs import redact
from oncal_feed.models import CalendarConnection
from oncal_feed.providers.memory import MemoryProvider
from oncal_feed.sync.tasks import sweep_due
from tests.conftest import stamped
from tests.sync.support import NOW, World


def test_healthz_answers_ok(client: FlaskClient) -> None:
    """The liveness probe needs nothing but the process."""
    response = client.get("/healthz")
    assert response.status_code == 200
    assert response.get_json() == {"status": "ok"}


def test_readyz_ready_on_migrated_database(client: FlaskClient) -> None:
    """Database reachable, schema current, queue folder present: ready."""
    response = client.get("/readyz")
    assert response.status_code == 200, response.get_json()
    assert response.get_json()["checks"] == {"database": "ok", "migrations": "ok", "queue": "ok"}


def test_readyz_not_ready_when_schema_is_behind(app: Flask, client: FlaskClient) -> None:
    """A database whose migration stamp is behind the code is not ready."""
    with stamped(app, "0001"):
        response = client.get("/readyz")
    assert response.status_code == 503
    assert response.get_json()["checks"]["migrations"] == "failed"


def test_readyz_stays_ready_on_a_newer_releases_schema(app: Flask, client: FlaskClient) -> None:
    """A rolling deploy: a newer release migrated the database (to a revision this code does
    not know), and the processes still running this one stay ready, saying so."""
    with stamped(app, "9999"):
        response = client.get("/readyz")
    assert response.status_code == 200, response.get_json()
    assert response.get_json()["checks"] == {
        "database": "ok",
        "migrations": "ahead",
        "queue": "ok",
    }


def test_readyz_not_ready_when_redis_queue_is_down(app_config: dict[str, Any]) -> None:
    """An unreachable Redis queue makes the app not ready (nothing listens on port 9)."""
    app = create_app({**app_config, "QUEUE_URL": "redis://127.0.0.1:9/0"})
    response = app.test_client().get("/readyz")
    assert response.status_code == 503
    assert response.get_json()["checks"]["queue"].startswith("error")
    get_database(app).dispose()


def test_metrics_exposes_feed_and_sync_families(client: FlaskClient) -> None:
    """The Prometheus endpoint lists our metric families."""
    body = client.get("/metrics").get_data(as_text=True)
    for name in ("oncal_feed_requests_total", "oncal_sync_runs_total", "oncal_queue_lag_seconds"):
        assert name in body


def queue_lag(client: FlaskClient) -> float | None:
    """The `oncal_queue_lag_seconds` sample in /metrics, or None when it has none."""
    response = client.get("/metrics")
    assert response.status_code == 200
    for family in text_string_to_metric_families(response.get_data(as_text=True)):
        if family.name == "oncal_queue_lag_seconds":
            assert family.type == "gauge"
            return family.samples[0].value if family.samples else None
    raise AssertionError("no oncal_queue_lag_seconds family in /metrics")


LAG = timedelta(seconds=40)


def due(world: World, connection_id: int, **values: Any) -> None:
    """Set one connection's columns (due time, dirty mark, status)."""
    world.execute(
        update(CalendarConnection).where(CalendarConnection.id == connection_id).values(**values)
    )


def test_queue_lag_is_zero_when_nothing_waits(app: Flask, client: FlaskClient) -> None:
    """No connection, one still in its debounce, one paused for reauthorisation: no lag."""
    with freeze_time(NOW):
        assert queue_lag(client) == 0
        world = World(app)
        memory = MemoryProvider()
        debouncing = world.connect(memory, user="alice")
        due(world, debouncing, dirty_since=NOW, sync_due_at=NOW + timedelta(seconds=2))
        paused = world.connect(memory, user="bob")
        due(world, paused, status="needs_reauth", sync_due_at=NOW - timedelta(hours=1))
        assert queue_lag(client) == 0


def test_queue_lag_is_the_age_of_the_oldest_waiting_connection(
    app: Flask, client: FlaskClient
) -> None:
    """Seconds since the earliest due time that passed without a sync taking the lease."""
    world = World(app)
    memory = MemoryProvider()
    with freeze_time(NOW):
        alice = world.connect(memory, user="alice")
        bob = world.connect(memory, user="bob")
        due(world, alice, sync_due_at=NOW - timedelta(seconds=90))
        due(world, bob, sync_due_at=NOW - timedelta(seconds=30), status="error")
        assert queue_lag(client) == 90
        # No due time at all (the sweep takes it as overdue): waiting since its dirty mark.
        undated = world.connect(memory, user="alice", kind="microsoft")
        due(world, undated, sync_due_at=None, dirty_since=NOW - timedelta(seconds=200))
        assert queue_lag(client) == 200
        due(world, undated, status="disconnected")
        assert queue_lag(client) == 90
        # A sync moves the connection's due time ahead: it no longer waits.
        assert world.sync(alice, memory).outcome == "ok"
        assert queue_lag(client) == 30


def test_queue_lag_keeps_growing_while_claimed_nudges_wait_in_a_backed_up_queue(
    app: Flask, client: FlaskClient
) -> None:
    """The sweep's claim moves the due time ahead; the wait still counts from when the
    connection became overdue, across claims, until a sync starts."""
    world = World(app)
    memory = MemoryProvider()
    with freeze_time(NOW) as clock:
        changed = world.connect(memory, user="alice")  # a change, due after its debounce
        due(world, changed, dirty_since=NOW - timedelta(seconds=42), sync_due_at=NOW - LAG)
        undated = world.connect(memory, user="bob")  # dirty, with no due time
        due(world, undated, dirty_since=NOW - timedelta(seconds=50), sync_due_at=None)
        assert sorted(sweep_due(app, NOW)) == sorted([changed, undated])
        assert queue_lag(client) == 50
        # No worker takes the nudges: ten minutes on, the claim has run out and the next
        # sweep claims again; the lag still counts from the first time each was overdue.
        for minutes in (1, 11, 25):
            clock.move_to(NOW + timedelta(minutes=minutes))
            sweep_due(app, NOW + timedelta(minutes=minutes))
            assert queue_lag(client) == minutes * 60 + 50
        assert world.sync(undated, memory).outcome == "ok"  # taking the lease ends its wait
        assert queue_lag(client) == 25 * 60 + LAG.total_seconds()
        assert world.sync(changed, memory).outcome == "ok"
        assert queue_lag(client) == 0


def test_metrics_answers_when_the_database_is_down(app_config: dict[str, Any], caplog) -> None:
    """Without a database the lag has no sample (not a made-up one); the rest is served."""
    down = create_app({**app_config, "DATABASE_URL": "postgresql://oncal@127.0.0.1:9/down"})
    client = down.test_client()
    body = client.get("/metrics").get_data(as_text=True)
    assert "oncal_sync_runs_total" in body
    assert queue_lag(client) is None
    assert "queue lag not measured: OperationalError" in caplog.text
    assert "127.0.0.1:9" not in caplog.text  # the exception's type, never its message
    get_database(down).dispose()


def test_redact_removes_feed_tokens_and_credentials() -> None:
    """Log lines lose feed tokens, OAuth codes and bearer keys."""
    line = 'GET /feeds/abc.DEF-123.ics?code=xyz&state=s1 "Bearer ocf_secret"'
    cleaned = redact(line)
    for secret in ("abc.DEF-123", "xyz", "s1", "ocf_secret"):
        assert secret not in cleaned


@pytest.mark.parametrize(
    ("line", "expected"),
    [
        ("GET /feeds/ocf1.tok-EN_9.ics HTTP/1.1", "GET /feeds/[redacted] HTTP/1.1"),
        ("/feeds/tok?past_days=3", "/feeds/[redacted]?past_days=3"),
        ("/cb?code=4/0Ab&state=xy z", "/cb?code=[redacted]&state=[redacted] z"),
        ("?access_token=a.b&Key=k", "?access_token=[redacted]&Key=[redacted]"),
        ("refresh_token=r", "refresh_token=[redacted]"),
        ('"token=abc"', '"token=[redacted]"'),
        ("authorization: bearer ocf_A1+/=", "authorization: bearer [redacted]"),
        ("/feeds/t1 /feeds/t2 Bearer k", "/feeds/[redacted] /feeds/[redacted] Bearer [redacted]"),
        ("GET /settings?past_days=3 200", "GET /settings?past_days=3 200"),
    ],
)  # fmt: skip
def test_redact_keeps_each_prefix_and_hides_only_the_secret(line: str, expected: str) -> None:
    """Each kind of secret is cut at its own boundary; what surrounds it is kept."""
    assert redact(line) == expected


def test_development_server_request_log_is_redacted(app, caplog) -> None:
    """Werkzeug's request lines (the dev server's access log) lose feed tokens."""
    import logging

    with caplog.at_level(logging.INFO, logger="werkzeug"):
        logging.getLogger("werkzeug").info(
            '%s - - "%s" %s', "127.0.0.1", "GET /feeds/SECRETtok.ics?code=abc HTTP/1.1", 200
        )
    assert "SECRETtok" not in caplog.text
    assert "abc" not in caplog.text
    assert "/feeds/[redacted]" in caplog.text


@pytest.mark.parametrize("path", ["/readyz", "/metrics"])
def test_internal_probes_answer_only_the_allowed_networks(client: FlaskClient, path: str) -> None:
    """Issue 13.12: /metrics and /readyz answered anyone on the app port."""
    assert client.get(path).status_code == 200  # the test client is 127.0.0.1
    client.environ_base["REMOTE_ADDR"] = "10.1.2.3"  # private: a probe or Prometheus
    assert client.get(path).status_code == 200
    client.environ_base["REMOTE_ADDR"] = "203.0.113.9"
    hidden = client.get(path)
    assert hidden.status_code == 404
    assert hidden.get_json()["errors"] == [{"field": "path", "problem": "no such endpoint"}]
    assert client.get("/healthz").status_code == 200  # liveness tells nothing: public


def test_the_allowed_networks_are_a_setting(app_config: dict[str, Any]) -> None:
    app = create_app({**app_config, "OPS_ALLOWED_NETWORKS": "203.0.113.0/24"})
    try:
        client = app.test_client()
        assert client.get("/metrics").status_code == 404
        client.environ_base["REMOTE_ADDR"] = "203.0.113.9"
        assert client.get("/metrics").status_code == 200
    finally:
        get_database(app).dispose()


def test_a_bad_allowed_network_is_a_clear_error(app_config: dict[str, Any]) -> None:
    with pytest.raises(ConfigError, match="OPS_ALLOWED_NETWORKS entry 'intranet'"):
        create_app({**app_config, "OPS_ALLOWED_NETWORKS": "intranet"})


TOKEN = "WyJ1X2FiYyIsMV0." + "S" * 43  # shaped like a feed token


@pytest.mark.parametrize(
    "line",
    [
        f"GET /feeds%2F{TOKEN}.ics HTTP/1.1",
        f"GET /%66eeds/{TOKEN}.ics HTTP/1.1",
        f"GET /fe%65ds/{TOKEN}.ics HTTP/1.1",
        f"GET /feeds//{TOKEN}.ics HTTP/1.1",
        f"GET /FEEDS/{TOKEN}.ics HTTP/1.1",
        f"GET /feeds/{TOKEN[:4]}%{ord(TOKEN[4]):02X}{TOKEN[5:]}.ics HTTP/1.1",
        f"Referer: https://elsewhere.example/{TOKEN}",
    ],
)
def test_redact_finds_feed_tokens_in_any_spelling(line: str) -> None:
    """Issue 13.4: these reached gunicorn's access log in clear."""
    cleaned = redact(line)
    assert "SSSSSSSSSS" not in cleaned, cleaned
    assert "[redacted]" in cleaned


@pytest.mark.parametrize(
    ("line", "expected"),
    [
        ("error x\n2099 CRITICAL fake", "error x\\x0a2099 CRITICAL fake"),
        ("a\rb\x1b[31mc\x00", "a\\x0db\\x1b[31mc\\x00"),
        ("line\u2028sep\x85", "line\\u2028sep\\x85"),
        ("/path?q=%0Afake", "/path?q=%0Afake"),  # encoded stays encoded: one line already
    ],
)
def test_redact_escapes_control_characters(line: str, expected: str) -> None:
    """Issue 13.5: a value a client sent must never start a log line of its own."""
    assert redact(line) == expected


def test_redact_leaves_ordinary_lines_alone() -> None:
    line = "GET /settings?page=2&q=50%25 HTTP/1.1 200 ua=Mozilla/5.0"
    assert redact(line) == line
