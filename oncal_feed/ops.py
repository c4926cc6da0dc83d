"""Operational endpoints: liveness, readiness and metrics."""

from __future__ import annotations

import logging
from pathlib import Path

from flask import Blueprint, Response, current_app, jsonify
from sqlalchemy import text

from oncal_feed.db import get_database
from oncal_feed.metrics import metrics_response
from oncal_feed.migrate import is_current

__all__ = ["check_queue", "ops_blueprint"]

ops_blueprint = Blueprint("ops", __name__)
log = logging.getLogger(__name__)


@ops_blueprint.get("/healthz")
def healthz() -> Response:
    """Answer 200 while the process can serve requests (no dependencies checked)."""
    return jsonify({"status": "ok"})


@ops_blueprint.get("/readyz")
def readyz() -> tuple[Response, int]:
    """Answer 200 only when the database, its schema and the queue are all usable."""
    checks = {
        "database": _check(_database_reachable),
        "migrations": _check(lambda: is_current(get_database())),
        "queue": _check(lambda: check_queue(current_app.config["QUEUE_URL"])),
    }
    ready = all(result == "ok" for result in checks.values())
    return jsonify({"status": "ready" if ready else "not_ready", "checks": checks}), (
        200 if ready else 503
    )


@ops_blueprint.get("/metrics")
def metrics() -> Response:
    """Prometheus metrics (keep this path internal at the proxy)."""
    return metrics_response()


def _database_reachable() -> bool:
    with get_database().engine.connect() as connection:
        connection.execute(text("SELECT 1"))
    return True


def check_queue(queue_url: str) -> bool:
    """Tell whether the task queue's storage answers: Redis PING, or the SQLite folder."""
    if queue_url.startswith(("redis://", "rediss://", "unix://")):
        import redis

        client = redis.Redis.from_url(queue_url, socket_connect_timeout=1, socket_timeout=1)
        try:
            return bool(client.ping())
        finally:
            client.close()
    path = Path(queue_url.removeprefix("sqlite:///"))
    return path.parent.is_dir()


def _check(probe: object) -> str:
    """Run one probe; report `ok`, `failed` or the exception type (never its message)."""
    try:
        return "ok" if probe() else "failed"  # type: ignore[operator]
    except Exception as exc:  # any failure at all means "not ready"
        log.warning("readiness probe failed: %s", type(exc).__name__)
        return f"error: {type(exc).__name__}"
