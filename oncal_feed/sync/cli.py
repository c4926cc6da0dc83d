"""CLI command `oncal-feed worker`: the push-sync queue's consumer."""

from __future__ import annotations

import logging
import os

import click
from flask import Flask

from oncal_feed.cli.helpers import require_schema, with_app
from oncal_feed.db import get_database
from oncal_feed.metrics import serve_metrics
from oncal_feed.sync.tasks import get_queue

__all__ = ["worker"]


def _default_workers() -> int:
    # Syncs wait on the network, not the CPU: a few threads per core, within reason.
    return max(2, min(8, 2 * (os.cpu_count() or 1)))


@click.command("worker")
@click.option(
    "--workers",
    type=click.IntRange(1, 64),
    default=_default_workers,
    show_default="2 per CPU, 2 to 8",
    help="Worker threads; each syncs one connection at a time.",
)
@click.option(
    "--no-sweep",
    is_flag=True,
    help="Don't run the periodic sweep here (when another worker machine runs it).",
)
@click.option(
    "--metrics-port",
    type=click.IntRange(1, 65535),
    default=None,
    help="Serve Prometheus metrics (sync runs, writes, errors) on this port.",
)
@click.option(
    "--metrics-host",
    default="127.0.0.1",
    show_default=True,
    help="Address for --metrics-port; 0.0.0.0 to let another machine scrape it.",
)
@with_app
def worker(
    app: Flask, workers: int, no_sweep: bool, metrics_port: int | None, metrics_host: str
) -> None:
    """Run the push-sync worker: syncs nudged connections, and sweeps every minute.

    Uses the queue in QUEUE_URL: the default SQLite file for one machine, or Redis
    (redis://host:6379/0) to spread workers over several; any number may run at once (a
    lease keeps each connection to one worker at a time). Ctrl+C or SIGINT stops after
    the syncs in progress; SIGTERM stops at once (their connections resume later).
    """
    require_schema(get_database(app))
    # Huey reports task starts and failures on its own loggers; show them with ours.
    ours = logging.getLogger("oncal_feed")
    huey_logger = logging.getLogger("huey")
    huey_logger.setLevel(logging.INFO)
    for handler in ours.handlers:
        if handler not in huey_logger.handlers:
            huey_logger.addHandler(handler)
    huey_logger.propagate = False
    queue = get_queue(app)
    stop_metrics = None
    if metrics_port is not None:
        try:
            stop_metrics = serve_metrics(metrics_host, metrics_port)
        except OSError as exc:
            raise click.ClickException(
                f"Can't serve metrics on {metrics_host}:{metrics_port}: {exc.strerror}."
            ) from None
    click.echo(
        f"Push-sync worker: {workers} thread(s), queue {type(queue.huey).__name__}, "
        f"sweep {'off' if no_sweep else 'every minute'}"
        + (f", metrics on http://{metrics_host}:{metrics_port}/metrics" if stop_metrics else "")
        + ".",
        err=True,
    )
    try:
        queue.consumer(workers, periodic=not no_sweep).run()
    finally:
        if stop_metrics is not None:
            stop_metrics()
