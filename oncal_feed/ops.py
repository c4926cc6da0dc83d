"""Operational endpoints: liveness, readiness and metrics."""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import datetime
from pathlib import Path

from flask import Blueprint, Response, current_app, jsonify, request
from flask.blueprints import BlueprintSetupState
from sqlalchemy import func, select, text

from oncal_feed.db import Database, get_database, utcnow
from oncal_feed.errors_http import error_response
from oncal_feed.metrics import metrics_response
from oncal_feed.migrate import schema_state
from oncal_feed.models import CalendarConnection
from oncal_feed.sync.lease import ACTIVE_STATUSES
from oncal_feed.web.security import address_in, parse_proxies

__all__ = ["check_queue", "ops_blueprint", "queue_lag"]

ops_blueprint = Blueprint("ops", __name__)
log = logging.getLogger(__name__)

# Probes that tell more than "alive" (schema state, queue, every metric): answered only to
# clients in OPS_ALLOWED_NETWORKS; anyone else gets the 404 of a path that isn't there.
_INTERNAL_ENDPOINTS = ("ops.readyz", "ops.metrics")
_NETWORKS = "oncal_ops_networks"


@ops_blueprint.record_once
def _read_allowed_networks(state: BlueprintSetupState) -> None:
    config = state.app.config
    networks = parse_proxies(config["OPS_ALLOWED_NETWORKS"], "OPS_ALLOWED_NETWORKS")
    state.app.extensions[_NETWORKS] = networks


@ops_blueprint.before_request
def _internal_only() -> Response | None:
    """Hide /readyz and /metrics from clients outside OPS_ALLOWED_NETWORKS.

    The client's address is `request.remote_addr`: the TCP peer, or behind
    TRUSTED_PROXY_COUNT proxies the address they forwarded.
    """
    if request.endpoint not in _INTERNAL_ENDPOINTS:
        return None
    if address_in(request.remote_addr, current_app.extensions[_NETWORKS]):
        return None
    return error_response(
        404, "not_found", "No such endpoint.", [{"field": "path", "problem": "no such endpoint"}]
    )


# What /readyz says of the schema. `ahead`, a newer release's schema (a rolling deploy
# under way), still passes: migrations only ever add what older code does not notice.
_SCHEMA_CHECK = {"current": "ok", "ahead": "ahead", "behind": "failed"}
_PASSING = {"ok", "ahead"}


@ops_blueprint.get("/healthz")
def healthz() -> Response:
    """Answer 200 while the process can serve requests (no dependencies checked)."""
    return jsonify({"status": "ok"})


@ops_blueprint.get("/readyz")
def readyz() -> tuple[Response, int]:
    """Answer 200 only when the database, its schema and the queue are all usable."""
    checks = {
        "database": _check(_database_reachable),
        "migrations": _check(lambda: _SCHEMA_CHECK[schema_state(get_database())]),
        "queue": _check(lambda: check_queue(current_app.config["QUEUE_URL"])),
    }
    ready = all(result in _PASSING for result in checks.values())
    return jsonify({"status": "ready" if ready else "not_ready", "checks": checks}), (
        200 if ready else 503
    )


@ops_blueprint.get("/metrics")
def metrics() -> Response:
    """Prometheus metrics (keep this path internal at the proxy); answers without a database."""
    return metrics_response(queue_lag=_measure_queue_lag())


def queue_lag(database: Database, now: datetime) -> float:
    """Seconds the oldest connection waiting to be synced has waited; 0 when none waits.

    A syncing connection waits from its `sync_due_at` (a debounced change, a retry, the
    daily window move or full check, a crashed worker's lease running out), once that has
    passed without a sync taking the lease (which moves it ahead). One without a due time
    is overdue for the sweep: it waits from its dirty mark, else from its creation. The
    debounce itself is not lag: a change waits its couple of seconds by design.

    The sweep claims a connection 30 s overdue by moving its due time ten minutes ahead (and
    queueing a nudge); the wait still counts from when it became overdue (`overdue_since`),
    so while the task queue itself is backed up the lag keeps growing.

    One statement of three index lookups (NULL due times are rare).
    """
    live = CalendarConnection.status.in_(ACTIVE_STATUSES)
    due = CalendarConnection.sync_due_at
    oldest_due = select(func.min(due)).where(live, due <= now).scalar_subquery()
    claimed = CalendarConnection.overdue_since
    oldest_claimed = select(func.min(claimed)).where(live, claimed.is_not(None)).scalar_subquery()
    undated = (
        select(
            func.min(func.coalesce(CalendarConnection.dirty_since, CalendarConnection.created_at))
        )
        .where(live, due.is_(None))
        .scalar_subquery()
    )
    with database.sessionmaker() as session:
        row = session.execute(select(oldest_due, oldest_claimed, undated)).one()
    waiting = [instant for instant in row if instant is not None]
    return max(0.0, (now - min(waiting)).total_seconds()) if waiting else 0.0


def _measure_queue_lag() -> float | None:
    """The queue lag for this scrape, or None when the database doesn't answer."""
    try:
        return queue_lag(get_database(), utcnow())
    except Exception as exc:  # /metrics must answer whatever the database does
        log.warning("queue lag not measured: %s", type(exc).__name__)
        return None


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


def _check(probe: Callable[[], bool | str]) -> str:
    """Run one probe; report `ok` or `failed` for its truth, the word it returns, or the
    exception type (never its message)."""
    try:
        result = probe()
    except Exception as exc:  # any failure at all means "not ready"
        log.warning("readiness probe failed: %s", type(exc).__name__)
        return f"error: {type(exc).__name__}"
    if isinstance(result, str):
        return result
    return "ok" if result else "failed"
