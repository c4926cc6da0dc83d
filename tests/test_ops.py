"""Liveness, readiness and metrics endpoints."""

from __future__ import annotations

from typing import Any

from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import text

from oncal_feed import create_app
from oncal_feed.db import get_database
from oncal_feed.logs import redact


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
    database = get_database(app)
    with database.engine.begin() as connection:
        current = connection.execute(text("SELECT version_num FROM alembic_version")).scalar()
        connection.execute(text("UPDATE alembic_version SET version_num = '0001'"))
    try:
        response = client.get("/readyz")
        assert response.status_code == 503
        assert response.get_json()["checks"]["migrations"] == "failed"
    finally:
        with database.engine.begin() as connection:
            connection.execute(text("UPDATE alembic_version SET version_num = :v"), {"v": current})


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


def test_redact_removes_feed_tokens_and_credentials() -> None:
    """Log lines lose feed tokens, OAuth codes and bearer keys."""
    line = 'GET /feeds/abc.DEF-123.ics?code=xyz&state=s1 "Bearer ocf_secret"'
    cleaned = redact(line)
    for secret in ("abc.DEF-123", "xyz", "s1", "ocf_secret"):
        assert secret not in cleaned


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
