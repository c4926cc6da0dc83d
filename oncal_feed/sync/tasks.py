"""Push sync on a task queue: Huey, on SQLite by default or on Redis across machines.

The queue carries only "reconcile connection N" nudges; the truth lives in the database
(`dirty_since`, `sync_due_at`, the sync records), so a lost or duplicated nudge costs
nothing but a moment, and the periodic sweep catches whatever a nudge missed.

* A committed shift write calls our `notify` listener with the touched users. It marks
  their connections dirty and pushes each one's due time half a second out (a short
  debounce that extends while writes keep coming, capped so a steady stream of writes
  still syncs every half minute). Only a connection that was clean gets a nudge: an
  import of 1,000 shifts, however it arrives, is one sync per connection.
* A nudge runs when its connection is due; if the due time moved on (more writes) it
  reschedules itself for then, and if another worker holds the connection's lease it
  tries again shortly.
* "Sync now" (`sync_user_now`) runs the user's syncs in the request and queues the
  ones a worker holds at that moment.
* A worker about to call a connection's calendar first queues a watch for the moment its
  lease runs out. Should the worker die mid-sync (its task lost with it), the watch finds the
  lease expired and syncs the connection then; a live worker renews its lease, and the
  watch looks again at the new expiry; a released lease ends it.
* Every minute the sweep selects the connections that are overdue — a failed sync whose
  retry time came, a window that moved, a daily full check, a worker that died mid-sync
  (its lease expiry is its due time), a dirty mark older than its nudge — with one
  indexed query, and nudges them.

No module-level Huey instance and no app at import time: `init_app(app)` builds a
`SyncQueue` from the app's `QUEUE_URL` and registers the tasks on it, so the web process
(producer) and `oncal-feed worker` (consumer, which builds the same app) agree on task
names. Huey's own `huey_consumer` command, which imports a module-level instance, is not
used; `oncal-feed worker` and `start_embedded_worker()` run Huey's consumer instead.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Iterable
from datetime import UTC, datetime, timedelta
from functools import partial
from typing import Any
from urllib.parse import urlsplit

from flask import Flask, current_app
from huey import Huey, RedisHuey, SqliteHuey, crontab
from huey.consumer import Consumer, Scheduler
from sqlalchemy import case, func, or_, select, update

from oncal_feed.db import create_private_file, get_database, utcnow
from oncal_feed.errors import ConfigError
from oncal_feed.models import CalendarConnection, Shift, User
from oncal_feed.notify import add_listener
from oncal_feed.sync.engine import SyncReport
from oncal_feed.sync.lease import ACTIVE_STATUSES
from oncal_feed.sync.service import run_sync

__all__ = [
    "DEBOUNCE",
    "SyncQueue",
    "get_queue",
    "init_app",
    "make_huey",
    "mark_dirty",
    "request_sync",
    "start_embedded_worker",
    "sweep_due",
    "sync_user_now",
]

log = logging.getLogger(__name__)

# Short, so a change shows in the calendar in about a second (the debounce, then up to one
# scheduler tick and one idle worker poll, then the sync); each further write extends it,
# so a burst of writes (an import, a script's PUTs in a row) still ends in one sync.
DEBOUNCE = timedelta(seconds=0.5)
# How often the consumer moves due nudges onto the queue, and the longest an idle worker
# waits between polls (SQLite has no blocking dequeue). Huey's own floor is one second
# for the tick, which alone would add half a second to the median change; a quarter
# second costs one indexed read of the schedule per tick.
SCHEDULER_TICK = timedelta(seconds=0.25)
IDLE_POLL = timedelta(seconds=0.25)
MAX_DEBOUNCE = timedelta(seconds=30)
# The sweep leaves connections alone this long past their due time, so it doesn't race
# the nudges already scheduled for them.
SWEEP_GRACE = timedelta(seconds=30)
# A swept connection is marked due again this much later, in case its nudge is lost.
SWEEP_CLAIM = timedelta(minutes=10)
SWEEP_LIMIT = 5000
BUSY_RETRY = timedelta(seconds=5)
# A nudge whose connection is due further out than this is dropped; the sweep takes over.
MAX_DEFER = timedelta(hours=1)
# A watch looks this long after the lease's expiry (the clocks of two machines differ).
WATCH_MARGIN = timedelta(seconds=1)
_EXTENSION = "oncal_sync_queue"


def make_huey(queue_url: str, name: str) -> Huey:
    """Return a Huey on Redis for `redis://` / `rediss://` URLs, else on a SQLite file."""
    scheme = urlsplit(queue_url).scheme
    if scheme in ("redis", "rediss", "unix"):
        return RedisHuey(name, url=queue_url, results=False)
    if scheme == "sqlite":
        path = queue_url.removeprefix("sqlite:///")
        if not path or path == ":memory:":
            raise ConfigError("QUEUE_URL must name a SQLite file (sqlite:////path/queue.sqlite).")
        directory = os.path.dirname(path)
        if directory:
            os.makedirs(directory, exist_ok=True)
        create_private_file(path)  # its tasks name connections; no one else's to read
        return SqliteHuey(name, filename=path, results=False)
    raise ConfigError(
        "QUEUE_URL must be sqlite:///<file> (one machine) or redis://host:6379/0 (several)."
    )


def _naive_utc(instant: datetime) -> datetime:
    """Huey (with utc=True) keeps naive UTC times."""
    return instant.astimezone(UTC).replace(tzinfo=None)


# ---------------------------------------------------------------- database side


def mark_dirty(
    app: Flask, user_ids: Iterable[int], now: datetime, debounce: timedelta = DEBOUNCE
) -> list[int]:
    """Mark the users' live connections dirty, and the schedule pushes of every schedule
    they have shifts in; return those that were clean until now.

    Every call pushes the due time `debounce` further out (trailing debounce), but not
    once the first change is `MAX_DEBOUNCE` old, so a steady stream of writes still
    syncs. Three statements whatever the number of connections. A schedule push shows
    everyone's shifts, so a change of anyone's may be one of its events; a push that
    turns out to have nothing to change writes nothing.
    """
    ids = sorted(set(user_ids))
    if not ids:
        return []
    with get_database(app).session() as session:
        # Lock the rows first, in id order. Each UPDATE below locks its own subset of them
        # as it finds them, so two overlapping calls (an edit of Alice's shift and a
        # hand-over from Alice to Bob) could lock them in opposite orders, and PostgreSQL
        # would abort one as a deadlock, losing its marks. (SQLite locks the whole file.)
        locked = list(
            session.scalars(
                select(CalendarConnection.id)
                .where(
                    or_(
                        CalendarConnection.user_id.in_(ids),
                        CalendarConnection.schedule_id.in_(
                            select(Shift.schedule_id).where(Shift.user_id.in_(ids)).distinct()
                        ),
                    ),
                    CalendarConnection.status.in_(ACTIVE_STATUSES),
                )
                .order_by(CalendarConnection.id)
                .with_for_update()
            )
        )
        if not locked:
            return []
        mine = (CalendarConnection.id.in_(locked),)
        newly_dirty = list(
            session.scalars(
                update(CalendarConnection)
                .where(*mine, CalendarConnection.dirty_since.is_(None))
                .values(dirty_since=now, sync_due_at=now + debounce)
                .returning(CalendarConnection.id)
                .execution_options(synchronize_session=False)
            )
        )
        session.execute(
            update(CalendarConnection)
            .where(
                *mine,
                CalendarConnection.dirty_since.is_not(None),
                CalendarConnection.dirty_since >= now + debounce - MAX_DEBOUNCE,
                CalendarConnection.id.not_in(newly_dirty),
            )
            .values(sync_due_at=now + debounce)
            .execution_options(synchronize_session=False)
        )
    return sorted(newly_dirty)


def sweep_due(app: Flask, now: datetime, limit: int = SWEEP_LIMIT) -> list[int]:
    """Claim the overdue connections and return their ids (no remote calls).

    One query on the indexed `sync_due_at` and `dirty_since`, locking what it finds
    (see below); the claim moves each connection's due time `SWEEP_CLAIM` ahead (and
    clears its dirty mark) so the next sweep doesn't pick it again while its nudge waits
    in the queue. It keeps the moment the connection became overdue in `overdue_since`
    (the first claim's, until a sync starts) for the queue lag.
    """
    overdue = now - SWEEP_GRACE
    # When it became overdue, counted as `ops.queue_lag` counts: from its due time once
    # that has passed, else (claimed for an old dirty mark, or with no due time) from its
    # dirty mark, else from its creation.
    overdue_from = case(
        (CalendarConnection.sync_due_at <= now, CalendarConnection.sync_due_at),
        else_=func.coalesce(CalendarConnection.dirty_since, CalendarConnection.created_at),
    )
    is_overdue = (
        CalendarConnection.status.in_(ACTIVE_STATUSES),
        or_(
            CalendarConnection.sync_due_at.is_(None),
            CalendarConnection.sync_due_at <= overdue,
            CalendarConnection.dirty_since <= overdue,
        ),
    )
    claimed: list[int] = []
    with get_database(app).session() as session:
        found = list(
            session.scalars(
                select(CalendarConnection.id)
                .where(*is_overdue)
                # No ORDER BY: sorting would trade the index scans for a table scan.
                .limit(limit)
                # PostgreSQL: rows locked by a write marking them dirty, or by another
                # sweep, are left for the next sweep. Never waiting for a lock, a sweep
                # can't be part of a deadlock.
                .with_for_update(skip_locked=True)
            )
        )
        found.sort()
        for offset in range(0, len(found), 500):
            # Overdue is checked again: SQLite locks nothing when reading, so a sweep
            # that ran meanwhile may have claimed some of these; each is claimed once.
            claimed += session.scalars(
                update(CalendarConnection)
                .where(CalendarConnection.id.in_(found[offset : offset + 500]), *is_overdue)
                # The forced nudge syncs whatever made it due (a dirty mark included);
                # should it be lost, the claim's due time brings the connection back.
                .values(
                    sync_due_at=now + SWEEP_CLAIM,
                    dirty_since=None,
                    overdue_since=func.coalesce(CalendarConnection.overdue_since, overdue_from),
                )
                .returning(CalendarConnection.id)
                .execution_options(synchronize_session=False)
            )
    return sorted(claimed)


# ---------------------------------------------------------------- the queue


class SyncQueue:
    """The app's Huey instance and its tasks: `reconcile` (a nudge), `watch` and the `sweep`.

    `clock` gives "now" to the tasks (tests replace it to step through time).
    """

    def __init__(self, app: Flask, huey: Huey | None = None) -> None:
        self.app = app
        name = str(app.config.get("QUEUE_NAME") or "oncal-feed")
        self.huey = huey or make_huey(str(app.config["QUEUE_URL"]), name)
        self.clock: Callable[[], datetime] = utcnow
        self.reconcile = self.huey.task(name="reconcile")(self._reconcile)
        self.watch = self.huey.task(name="watch")(self._watch)
        self.sweep = self.huey.periodic_task(crontab(minute="*"), name="sweep")(self._sweep)

    # -- producing

    def nudge(self, connection_id: int, at: datetime | None = None, *, force: bool = False) -> None:
        """Queue a reconcile of the connection, at `at` (default: now)."""
        # Aware times only: Huey turns a naive eta into UTC through local time, dropping
        # the fraction of a second (an early run would reschedule itself in a tight loop).
        eta = (at or self.clock()).astimezone(UTC)
        self.reconcile.schedule((connection_id,), {"force": force}, eta=eta)

    def on_shifts_changed(self, user_ids: set[int]) -> None:
        """`notify` listener: mark the users' connections dirty and nudge the clean ones.

        The database write comes first and the queue is only a shortcut: if enqueueing
        fails (Redis down), the sweep still finds the dirty connections.
        """
        now = self.clock()
        for connection_id in mark_dirty(self.app, user_ids, now):
            try:
                self.nudge(connection_id, now + DEBOUNCE)
            except Exception:
                log.exception(
                    "could not queue a sync of connection %s; the sweep will", connection_id
                )

    # -- consuming

    def _reconcile(self, connection_id: int, force: bool = False) -> str:
        """Sync one connection if it is due (always when `force`); reschedule otherwise."""
        with self.app.app_context():
            now = self.clock()
            if not force:
                with get_database(self.app).sessionmaker() as session:
                    row = session.execute(
                        select(CalendarConnection.status, CalendarConnection.sync_due_at).where(
                            CalendarConnection.id == connection_id
                        )
                    ).one_or_none()
                if row is None or row.status not in ACTIVE_STATUSES:
                    return "inactive"
                due = row.sync_due_at
                if due is not None and due > now:
                    # More writes arrived (debounce) or a retry is pending: come back then.
                    if due - now <= MAX_DEFER:
                        self.nudge(connection_id, due)
                        return "deferred"
                    return "not-due"
            watch = partial(self.watch_lease, connection_id)
            report = run_sync(self.app, connection_id, now=now, on_lease=watch, retry=True)
            self._after(report, now)
            return report.outcome

    def watch_lease(self, connection_id: int, expires: datetime) -> None:
        """Queue a look at the connection's lease just after `expires` (see the module doc).

        A watch that can't be queued is logged, not raised: the sweep is the fallback.
        """
        try:
            self.watch.schedule((connection_id,), eta=(expires + WATCH_MARGIN).astimezone(UTC))
        except Exception:
            log.exception("could not queue a lease watch of connection %s", connection_id)

    def _watch(self, connection_id: int) -> str:
        """Sync a connection whose lease ran out (its worker died); look again if renewed."""
        with self.app.app_context():
            now = self.clock()
            with get_database(self.app).sessionmaker() as session:
                row = session.execute(
                    select(
                        CalendarConnection.lease_owner, CalendarConnection.lease_expires_at
                    ).where(
                        CalendarConnection.id == connection_id,
                        CalendarConnection.status.in_(ACTIVE_STATUSES),
                    )
                ).one_or_none()
            if row is None or row.lease_owner is None or row.lease_expires_at is None:
                return "released"
            if row.lease_expires_at > now:
                self.watch_lease(connection_id, row.lease_expires_at)
                return "held"
            return self._reconcile(connection_id, force=True)

    def _after(self, report: SyncReport, now: datetime) -> None:
        if report.outcome == "busy":
            # Forced: the lease may be a dead worker's, taken over once it expires, and
            # the due time (a sweep's claim, minutes ahead) must not hold the retry back.
            self.nudge(report.connection_id, now + BUSY_RETRY, force=True)
        elif report.outcome in ("partial", "failed") and report.next_retry_at is not None:
            self.nudge(report.connection_id, report.next_retry_at)
        if report.recheck_at is not None and report.outcome != "busy":
            self.nudge(report.connection_id, report.recheck_at)

    def _sweep(self) -> int:
        """Periodic: nudge every overdue connection."""
        with self.app.app_context():
            now = self.clock()
            ids = sweep_due(self.app, now)
            for connection_id in ids:
                self.nudge(connection_id, force=True)
            if ids:
                log.info("sweep queued %d connection(s)", len(ids))
            return len(ids)

    # -- running

    def drain(self, now: datetime | None = None, limit: int = 100_000) -> int:
        """Run, in this thread, every queued task and every scheduled one due by `now`.

        For tests (with a stepped `clock`) and one-off runs; returns how many ran.
        """
        timestamp = _naive_utc(now or self.clock())
        ran = 0
        while ran < limit:
            for task in self.huey.read_schedule(timestamp):
                self.huey.enqueue(task)
            task = self.huey.dequeue()
            if task is None:
                return ran
            if not self.huey.ready_to_run(task, timestamp):
                self.huey.add_schedule(task)
                continue
            self.huey.execute(task, timestamp)
            ran += 1
        return ran

    def consumer(
        self, workers: int = 4, *, embedded: bool = False, periodic: bool = True
    ) -> Consumer:
        """A Huey consumer of this queue: worker threads plus the scheduler (and sweep).

        Embedded consumers run inside another program's process, so they leave its
        signal handlers alone.
        """
        consumer_class = _EmbeddedConsumer if embedded else _Consumer
        return consumer_class(
            self.huey,
            workers=workers,
            periodic=periodic,
            worker_type="thread",
            initial_delay=0.05,
            max_delay=IDLE_POLL.total_seconds(),
            backoff=1.5,
            check_worker_health=True,
        )


class _QuickScheduler(Scheduler):  # type: ignore[misc]
    """Huey's scheduler, ticking every `SCHEDULER_TICK` instead of at most once a second.

    Periodic tasks (the sweeps) are unaffected: Huey times them on their own clock.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.interval = SCHEDULER_TICK.total_seconds()


class _Consumer(Consumer):  # type: ignore[misc]
    """Huey's consumer with the quicker scheduler."""

    scheduler_class = _QuickScheduler


class _EmbeddedConsumer(_Consumer):
    """A consumer that doesn't install signal handlers (it isn't the process's owner)."""

    def _set_signal_handlers(self) -> None:
        pass


def init_app(app: Flask) -> SyncQueue:
    """Create the app's sync queue and listen for shift writes."""
    queue = SyncQueue(app)
    app.extensions[_EXTENSION] = queue
    add_listener(app, queue.on_shifts_changed)
    return queue


def get_queue(app: Flask | None = None) -> SyncQueue:
    """Return the app's `SyncQueue` (the current app's by default)."""
    queue = (app or current_app).extensions[_EXTENSION]
    assert isinstance(queue, SyncQueue)
    return queue


def request_sync(app: Flask, connection_ids: Iterable[int], *, delay: timedelta = DEBOUNCE) -> None:
    """Ask for a sync of these connections soon (e.g. right after connecting a calendar).

    Marks them dirty in the database first, so the sweep finds them if the queue fails.
    """
    ids = list(connection_ids)
    if not ids:
        return
    queue = get_queue(app)
    now = queue.clock()
    with get_database(app).session() as session:
        session.execute(
            update(CalendarConnection)
            .where(CalendarConnection.id.in_(ids), CalendarConnection.dirty_since.is_(None))
            .values(dirty_since=now)
            .execution_options(synchronize_session=False)
        )
        session.execute(
            update(CalendarConnection)
            .where(CalendarConnection.id.in_(ids))
            .values(sync_due_at=now + delay)
            .execution_options(synchronize_session=False)
        )
    for connection_id in ids:
        try:
            queue.nudge(connection_id, now + delay)
        except Exception:
            log.exception("could not queue a sync of connection %s; the sweep will", connection_id)


def start_embedded_worker(app: Flask, workers: int = 2) -> Callable[[], None]:
    """Run the queue's consumer (workers, scheduler, sweep) in this process's threads.

    Returns `stop()`, which lets running syncs finish and then returns. For `oncal-feed
    demo` and other single-process setups; production runs `oncal-feed worker`.
    """
    consumer = get_queue(app).consumer(workers, embedded=True)
    consumer.start()

    def stop() -> None:
        consumer.stop(graceful=True)

    return stop


def sync_user_now(user: User, days: int | None = None) -> dict[str, Any]:
    """Sync each of the user's active connections (and schedule pushes) now; return what
    each one did.

    `days` widens or narrows the window ahead for this run only (the connection keeps
    its own setting). A manual sync also lists the remote calendar, so events the user
    deleted there come back at once. A connection a worker is syncing at this moment is
    queued to run again right after (`busy` in the answer).
    """
    app: Flask = current_app._get_current_object()  # type: ignore[attr-defined]
    with get_database(app).sessionmaker() as session:
        rows = session.execute(
            select(
                CalendarConnection.id,
                CalendarConnection.provider,
                CalendarConnection.parent_id,
                CalendarConnection.calendar_name,
            )
            .where(
                CalendarConnection.user_id == user.id,
                CalendarConnection.status.in_(ACTIVE_STATUSES),
            )
            # Each account connection first, then its schedule pushes.
            .order_by(
                CalendarConnection.provider,
                CalendarConnection.parent_id.is_not(None),
                CalendarConnection.calendar_name,
            )
        ).all()
    results = []
    totals = {"created": 0, "updated": 0, "deleted": 0, "failed": 0}
    for connection_id, provider, parent_id, calendar_name in rows:
        report = run_sync(
            app,
            connection_id,
            full_check=True,
            window_days=days,
            on_lease=partial(get_queue(app).watch_lease, connection_id),
        )
        if report.outcome == "busy":
            request_sync(app, [connection_id])
        totals["created"] += report.created
        totals["updated"] += report.updated
        totals["deleted"] += report.deleted
        totals["failed"] += report.outcome in ("failed", "needs_reauth")
        # A schedule push is named by its calendar ("Payments API on-call").
        push = calendar_name if parent_id is not None else None
        results.append({"provider": provider, "schedule_calendar": push, **report.as_dict()})
    return {"connections": results, **totals}
