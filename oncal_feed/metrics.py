"""Prometheus metrics, in multiprocess mode when gunicorn runs several workers.

Set PROMETHEUS_MULTIPROC_DIR (gunicorn.conf.py does) and every worker writes its samples
to files there; `/metrics` merges them. Without it, metrics live in this process only.
"""

from __future__ import annotations

import os
import time

from flask import Flask, Response, g, request
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
    multiprocess,
)

__all__ = [
    "FEED_RENDER_SECONDS",
    "FEED_REQUESTS",
    "QUEUE_LAG_SECONDS",
    "SYNC_ACTIONS",
    "SYNC_ERRORS",
    "SYNC_RUNS",
    "init_metrics",
    "metrics_response",
]

FEED_REQUESTS = Counter(
    "oncal_feed_requests_total", "Feed requests by HTTP status (304 share = 304 / all).", ["status"]
)
FEED_RENDER_SECONDS = Histogram(
    "oncal_feed_render_seconds",
    "Time to answer a feed request that had to send a body.",
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5),
)
SYNC_RUNS = Counter(
    "oncal_sync_runs_total", "Sync runs by provider and outcome.", ["provider", "outcome"]
)
SYNC_ACTIONS = Counter(
    "oncal_sync_actions_total", "Remote writes by provider and kind.", ["provider", "kind"]
)
SYNC_ERRORS = Counter(
    "oncal_sync_errors_total", "Remote call failures by provider and kind.", ["provider", "kind"]
)
QUEUE_LAG_SECONDS = Gauge(
    "oncal_queue_lag_seconds",
    "Age of the oldest connection waiting to be synced.",
    multiprocess_mode="max",
)


def metrics_response() -> Response:
    """Render all metrics in the Prometheus text format (merged across workers)."""
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)
        body = generate_latest(registry)
    else:
        body = generate_latest()
    return Response(body, mimetype=CONTENT_TYPE_LATEST)


def init_metrics(app: Flask) -> None:
    """Count feed responses by status and time the ones that carried a body."""

    @app.before_request
    def start_timer() -> None:
        if request.endpoint and request.endpoint.startswith("feeds."):
            g.metrics_started = time.perf_counter()

    @app.after_request
    def record_feed(response: Response) -> Response:
        started = g.pop("metrics_started", None)
        if started is not None:
            FEED_REQUESTS.labels(str(response.status_code)).inc()
            if response.status_code == 200:
                FEED_RENDER_SECONDS.observe(time.perf_counter() - started)
        return response
