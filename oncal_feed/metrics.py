"""Prometheus metrics, in multiprocess mode when gunicorn runs several workers.

Set PROMETHEUS_MULTIPROC_DIR (gunicorn.conf.py does) and every worker writes its samples
to files there; `/metrics` merges them. Without it, metrics live in this process only.

Sync counters are written by whichever process runs the sync: a web worker for "sync
now", `oncal-feed worker` for the queue. `/metrics` includes the worker's counts only when
the worker runs on the same machine with the same PROMETHEUS_MULTIPROC_DIR.

Label values come from small closed sets (below), never from ids, addresses or messages:
they cost a time series each, and an error message may carry what must not leave.
"""

from __future__ import annotations

import glob
import os
from collections.abc import Callable, Iterator

from flask import Response
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    REGISTRY,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
    multiprocess,
    start_http_server,
)
from prometheus_client.metrics_core import GaugeMetricFamily, Metric

from oncal_feed.providers.base import (
    AuthorizationLost,
    PermanentError,
    ProviderError,
    RateLimited,
    RemoteConflict,
    RemoteNotFound,
    TransientError,
)
from oncal_feed.providers.registry import provider_names

__all__ = [
    "FEED_RENDER_SECONDS",
    "FEED_REQUESTS",
    "FEED_USER_CACHE_LISTENING",
    "QUEUE_LAG",
    "SYNC_ACTIONS",
    "SYNC_ERRORS",
    "SYNC_RUNS",
    "metrics_response",
    "record_error",
    "record_run",
    "record_write",
    "serve_metrics",
]

FEED_REQUESTS = Counter(
    "oncal_feed_requests_total", "Feed requests by HTTP status (304 share = 304 / all).", ["status"]
)
FEED_RENDER_SECONDS = Histogram(
    "oncal_feed_render_seconds",
    "Time to answer a feed request that had to send a body.",
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5),
)
# livesum: a process's sample goes when it exits (gunicorn.conf.py's child_exit).
FEED_USER_CACHE_LISTENING = Gauge(
    "oncal_feed_user_cache_listening",
    "Web processes whose feed user cache hears PostgreSQL's change notifications, and so "
    "answers feeds from memory. Fewer than the web processes that serve feeds means some "
    "read the database for every feed: still correct, slower. 0 on SQLite or with the cache "
    "off.",
    multiprocess_mode="livesum",
)
SYNC_RUNS = Counter(
    "oncal_sync_runs_total",
    "Sync runs by provider and outcome: ok, failed, needs_reauth, busy (another worker holds "
    "the lease), inactive, missing, lease_lost, crashed (an internal error).",
    ["provider", "outcome"],
)
SYNC_ACTIONS = Counter(
    "oncal_sync_actions_total",
    "Remote writes the calendar confirmed, by provider and kind: create, update, delete, "
    "calendar (our own calendar created).",
    ["provider", "kind"],
)
SYNC_ERRORS = Counter(
    "oncal_sync_errors_total",
    "Failed remote operations by provider and kind: auth, throttled, transient, not_found, "
    "conflict, permanent, other. A batch lost as a whole counts each of its operations; "
    "not_found and conflict are often handled (a delete of a gone event, a replayed insert).",
    ["provider", "kind"],
)
QUEUE_LAG = "oncal_queue_lag_seconds"
_QUEUE_LAG_HELP = (
    "Age of the oldest connection waiting to be synced: seconds since the earliest due time "
    "that has passed without a sync starting; 0 when none waits. Measured from the database "
    "at each scrape; no sample when the database did not answer."
)

# The registry's providers; a run that failed before reading its connection is
# `unknown`, and any other name `other`.
_PROVIDERS = frozenset(provider_names())
_OUTCOMES = frozenset(
    {
        "ok",
        "partial",
        "failed",
        "needs_reauth",
        "busy",
        "inactive",
        "missing",
        "lease_lost",
        "crashed",
    }
)
_WRITE_KINDS = frozenset({"create", "update", "delete", "calendar"})
_ERROR_KINDS: tuple[tuple[type[ProviderError], str], ...] = (
    (AuthorizationLost, "auth"),
    (RateLimited, "throttled"),
    (TransientError, "transient"),
    (RemoteNotFound, "not_found"),
    (RemoteConflict, "conflict"),
    (PermanentError, "permanent"),
)


def _provider(name: str | None) -> str:
    if name is None:
        return "unknown"
    return name if name in _PROVIDERS else "other"


def record_run(provider: str | None, outcome: str) -> None:
    """Count one sync run of a `provider` connection that ended with `outcome`."""
    SYNC_RUNS.labels(_provider(provider), outcome if outcome in _OUTCOMES else "other").inc()


def record_write(provider: str | None, kind: str) -> None:
    """Count one remote write the calendar confirmed: create, update, delete or calendar."""
    SYNC_ACTIONS.labels(_provider(provider), kind if kind in _WRITE_KINDS else "other").inc()


def record_error(provider: str | None, error: ProviderError) -> None:
    """Count one failed remote operation by the class of its error (never its message)."""
    kind = next((name for cls, name in _ERROR_KINDS if isinstance(error, cls)), "other")
    SYNC_ERRORS.labels(_provider(provider), kind).inc()


class _QueueLag:
    """The queue lag measured for this scrape, as a collector of one gauge family.

    Not a `Gauge`: in multiprocess mode each process's last value would stay in its file,
    and every merge mode (max, mostrecent...) could then report a figure from an earlier
    scrape as if it were current.
    """

    def __init__(self, seconds: float | None) -> None:
        self.seconds = seconds

    def collect(self) -> Iterator[Metric]:
        """Yield the family, with a sample only when the lag was measured."""
        yield GaugeMetricFamily(QUEUE_LAG, _QUEUE_LAG_HELP, value=self.seconds)


def metrics_response(queue_lag: float | None = None) -> Response:
    """Render all metrics in the Prometheus text format (merged across workers).

    `queue_lag` is the caller's measurement for this scrape (see `ops.queue_lag`). None —
    the database did not answer — leaves `oncal_queue_lag_seconds` without a sample, so an
    `absent()` alert notices, rather than a made-up value that looks healthy.
    """
    body = generate_latest(_registry())
    body += generate_latest(_QueueLag(queue_lag))
    return Response(body, mimetype=CONTENT_TYPE_LATEST)


def serve_metrics(host: str, port: int) -> Callable[[], None]:
    """Serve this process's metrics over HTTP in a background thread; return a stopper.

    For `oncal-feed worker`, which has no web server of its own: its sync counters would
    otherwise reach Prometheus only through a gunicorn on the same machine.
    """
    server, thread = start_http_server(port, addr=host, registry=_registry())

    def stop() -> None:
        server.shutdown()
        server.server_close()
        thread.join()

    return stop


# The used-bytes count and its padding at the start of each multiprocess file.
_MMAP_HEADER_BYTES = 8


class _ProcessFiles:
    """Every process's samples, merged from its file in the multiprocess directory.

    prometheus_client's own `MultiProcessCollector`, but for files still empty: a process
    creates its file and sizes it a moment later, and a process killed in between (a
    gunicorn timeout, the OOM killer, SIGKILL) leaves it empty for good. The library's
    reader fails on such a file, and with it the whole scrape, every scrape after
    (prometheus/client_python#1199). An empty file holds no samples, so skipping it loses
    nothing.
    """

    def __init__(self, directory: str) -> None:
        self.directory = directory

    def collect(self) -> Iterator[Metric]:
        """Yield the merged families of every file that has been sized."""
        files = [path for path in glob.glob(os.path.join(self.directory, "*.db")) if _sized(path)]
        yield from multiprocess.MultiProcessCollector.merge(files, accumulate=True)


def _sized(path: str) -> bool:
    """Whether the file has its header yet (a file that has just gone is skipped too)."""
    try:
        return os.path.getsize(path) >= _MMAP_HEADER_BYTES
    except FileNotFoundError:
        return False


def _registry() -> CollectorRegistry:
    """The registry to expose: merged from every process's files in multiprocess mode."""
    directory = os.environ.get("PROMETHEUS_MULTIPROC_DIR")
    if not directory:
        return REGISTRY
    registry = CollectorRegistry()
    registry.register(_ProcessFiles(directory))
    return registry
