"""Production gunicorn settings: `gunicorn wsgi:app` reads this file.

Every value can be overridden with GUNICORN_* style flags or environment variables named
below. Each worker is a gevent loop (oncal_feed.gunicorn_worker): a slow or stalled
client costs a greenlet, not one of a few threads, so hundreds of them don't keep
/healthz or a feed from answering (benchmarks/slow_clients.py measures it).
"""

from __future__ import annotations

import multiprocessing
import os
import tempfile
from typing import Any

bind = os.environ.get("BIND", "0.0.0.0:8000")
workers = int(os.environ.get("WEB_CONCURRENCY", min(2 * multiprocessing.cpu_count() + 1, 9)))
worker_class = "oncal_feed.gunicorn_worker.JsonErrorGeventWorker"
# Open connections per worker, slow ones included; past it a worker stops accepting.
worker_connections = int(os.environ.get("GUNICORN_WORKER_CONNECTIONS", "1000"))
# The longest request line gunicorn reads (its maximum): a long shift external id or
# query must reach the app, which answers 422 naming the field. Headers keep gunicorn's
# limits (100 fields of 8190 bytes); what it still refuses gets a short JSON answer.
limit_request_line = 8190
# Feeds answer in milliseconds; anything near this limit is stuck.
timeout = int(os.environ.get("GUNICORN_TIMEOUT", "30"))
# SIGTERM: stop accepting, let in-flight requests finish for up to this long.
graceful_timeout = int(os.environ.get("GUNICORN_GRACEFUL_TIMEOUT", "30"))
keepalive = 5
# A safety net against slow memory growth, not a routine: replacing a worker costs about
# a second of CPU (importing the app) and its warm caches, so at a few thousand requests
# a second a limit of 10,000 replaced a worker every few seconds.
max_requests = 100_000
max_requests_jitter = 10_000
accesslog = "-"
errorlog = "-"
logger_class = "oncal_feed.gunicorn_logging.RedactingAccessLogger"
forwarded_allow_ips = os.environ.get("FORWARDED_ALLOW_IPS", "127.0.0.1,::1")

# Prometheus multiprocess mode: each worker writes samples here and /metrics merges them.
# Set before workers import prometheus_client.
_metrics_dir = os.environ.setdefault(
    "PROMETHEUS_MULTIPROC_DIR", tempfile.mkdtemp(prefix="oncal-metrics-")
)


def child_exit(server: Any, worker: Any) -> None:
    """Drop a dead worker's live gauges so they don't linger in /metrics."""
    from prometheus_client import multiprocess

    multiprocess.mark_process_dead(worker.pid)
