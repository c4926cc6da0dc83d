"""Polling sources on the push-sync queue (Huey): no scheduler of its own.

Each poll schedules the next one at the source's `next_poll_at` (its interval, or a
back-off after failures), so a source is polled about every interval. A poll task that
finds its source not due, or being polled by another worker (the source's lease), is
dropped: whoever holds the due time has scheduled it. Every minute the sweep claims the
sources whose poll is overdue (a lost task, a dead worker) and polls them.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime, timedelta

from flask import Flask, current_app
from huey import crontab
from sqlalchemy import or_, select, update

from oncal_feed.db import get_database
from oncal_feed.models import Source
from oncal_feed.sources.service import PollReport, poll_source
from oncal_feed.sync.tasks import SyncQueue, get_queue

__all__ = ["SourcePoller", "get_poller", "init_app"]

log = logging.getLogger(__name__)

_EXTENSION = "oncal_source_poller"
# The sweep leaves sources alone this long past their due time (their task is on its way).
SWEEP_GRACE = timedelta(seconds=30)
# A swept source is due again this much later, should its forced poll be lost too.
SWEEP_CLAIM = timedelta(minutes=10)
SWEEP_LIMIT = 5000


class SourcePoller:
    """The `poll_source` task and the `source_sweep` periodic task, on the sync queue."""

    def __init__(self, app: Flask, queue: SyncQueue) -> None:
        self.app = app
        self.queue = queue
        self.poll = queue.huey.task(name="poll_source")(self._poll)
        self.sweep = queue.huey.periodic_task(crontab(minute="*"), name="source_sweep")(self._sweep)

    def nudge(self, source_id: int, at: datetime | None = None, *, force: bool = False) -> None:
        """Queue a poll of the source at `at` (default: now)."""
        eta = (at or self.queue.clock()).astimezone(UTC)
        self.poll.schedule((source_id,), {"force": force}, eta=eta)

    def _poll(self, source_id: int, force: bool = False) -> str:
        """Poll the source if it is due (always when `force`), then schedule the next poll."""
        with self.app.app_context():
            now = self.queue.clock()
            if not force:
                with get_database(self.app).sessionmaker() as session:
                    due = session.scalar(select(Source.next_poll_at).where(Source.id == source_id))
                if due is None or due > now:
                    return "not-due"
            report = poll_source(self.app, source_id, now)
            self._after(report)
            return report.outcome

    def _after(self, report: PollReport) -> None:
        if report.next_poll_at is not None and report.outcome not in ("busy", "missing"):
            self.nudge(report.source_id, report.next_poll_at)

    def _sweep(self) -> int:
        """Periodic: poll every source whose poll is overdue."""
        with self.app.app_context():
            now = self.queue.clock()
            ids = claim_overdue(self.app, now)
            for source_id in ids:
                self.nudge(source_id, force=True)
            if ids:
                log.info("source sweep queued %d poll(s)", len(ids))
            return len(ids)


def claim_overdue(app: Flask, now: datetime, limit: int = SWEEP_LIMIT) -> list[int]:
    """Claim the sources whose poll is overdue by more than the grace; return their ids."""
    overdue = or_(Source.next_poll_at.is_(None), Source.next_poll_at <= now - SWEEP_GRACE)
    with get_database(app).session() as session:
        found = list(
            session.scalars(
                select(Source.id).where(overdue).limit(limit).with_for_update(skip_locked=True)
            )
        )
        if not found:
            return []
        # Overdue is checked again: SQLite locks nothing when reading.
        return sorted(
            session.scalars(
                update(Source)
                .where(Source.id.in_(found), overdue)
                .values(next_poll_at=now + SWEEP_CLAIM)
                .returning(Source.id)
                .execution_options(synchronize_session=False)
            )
        )


def init_app(app: Flask) -> SourcePoller:
    """Register source polling on the app's sync queue (after `sync.tasks.init_app`)."""
    poller = SourcePoller(app, get_queue(app))
    app.extensions[_EXTENSION] = poller
    return poller


def get_poller(app: Flask | None = None) -> SourcePoller:
    """Return the app's `SourcePoller`."""
    return (app or current_app).extensions[_EXTENSION]  # type: ignore[no-any-return]
