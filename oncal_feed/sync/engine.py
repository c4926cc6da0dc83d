"""The push-sync engine: plan, apply each action, record each result.

`sync_connection()` reconciles one calendar connection: it takes the connection's lease
(so two workers never sync it at once), reads what the calendar should show, asks the
pure planner (`sync.plan`) what to change, and applies the actions through the
provider, batched. Intent is committed before every remote write — a `creating` record
carrying the idempotency key (Google's client-chosen event id, Graph's transactionId),
or a `deleting` mark — so a crash between a call and its answer is resolved on the next
run without a duplicate. Each batch's answers are recorded in their own small
transaction as soon as they arrive.

Failures are states: the connection's status columns say when it last synced, what
changed, what went wrong in plain words and when it will be retried.
"""

from __future__ import annotations

import logging
import os
import random
import socket
import threading
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, Literal

from sqlalchemy import bindparam, case, delete, or_, select, update
from sqlalchemy.orm import InstrumentedAttribute, Session, sessionmaker

from oncal_feed.db import Database, instant_json
from oncal_feed.metrics import record_error, record_run, record_write
from oncal_feed.models import CalendarConnection, Shift, SyncRecord, User, mark_needs_reauth
from oncal_feed.providers.base import (
    CALENDAR_NAME,
    AuthorizationLost,
    CalendarProvider,
    Operation,
    OperationResult,
    PermanentError,
    ProviderError,
    RateLimited,
    RemoteConflict,
    RemoteEvent,
    RemoteNotFound,
    TransientError,
)
from oncal_feed.rendering.event import EventSpec, RenderOptions, shift_event
from oncal_feed.shifts import shift_facts, shifts_for_user
from oncal_feed.sync.plan import (
    Action,
    Adopt,
    Create,
    Delete,
    Forget,
    Prune,
    Record,
    Recover,
    Update,
    google_event_id,
    plan,
)

__all__ = [
    "ACTIVE_STATUSES",
    "BACK_DAYS",
    "FULL_CHECK_INTERVAL",
    "LEASE_TTL",
    "ProviderSource",
    "SyncReport",
    "backoff_delay",
    "describe_error",
    "next_window_move",
    "reset_batch_hints",
    "sync_connection",
    "sync_window",
]

log = logging.getLogger(__name__)

# The window: from a week back to `window_days` ahead, on whole UTC days so that it moves
# once a day (and the sweep re-syncs once a day for it, not every minute).
BACK_DAYS = 7
FULL_CHECK_INTERVAL = timedelta(days=1)
LEASE_TTL = timedelta(minutes=2)
BACKOFF_BASE = timedelta(seconds=5)
BACKOFF_CAP = timedelta(hours=1)
# The daily window move of all connections is spread over this span, not all at midnight.
WINDOW_MOVE_SPREAD = timedelta(hours=1)
ACTIVE_STATUSES = ("active", "error")
# Providers whose event ids the client chooses (Google, and the in-memory provider that
# mimics it): a retried insert is a 409, never a duplicate.
CLIENT_CHOSEN_IDS = frozenset({"google", "memory"})
_LABELS = {"google": "Google Calendar", "microsoft": "Outlook"}
_SQL_CHUNK = 500
_RECORDS = SyncRecord.__table__
_ROW_COLUMNS = (
    "shift_id", "shift_uid", "state", "remote_id", "transaction_id", "content_hash",
    "remote_etag", "updated_at",
)  # fmt: skip
# Give up a sync after this many batches in a row were lost entirely: the remote is down.
_MAX_FAILED_BATCHES = 3
# Batch sizes learned on flaky links, by connection id, for the connection's next run (in
# this process only: a hint, not state). Only reduced sizes are kept.
_BATCH_HINTS: dict[int, int] = {}
_HINTS_LOCK = threading.Lock()

ProviderFactory = Callable[[CalendarConnection], CalendarProvider]
ProviderSource = CalendarProvider | ProviderFactory
SessionSource = Database | sessionmaker[Session]
Outcome = Literal["ok", "failed", "needs_reauth", "busy", "inactive", "missing", "lease_lost"]


@dataclass
class SyncReport:
    """What one `sync_connection()` call did.

    `outcome` is `ok`, `failed` (retried at `next_retry_at`), `needs_reauth`, or one of
    `busy` (another worker holds the lease), `inactive` (paused or disconnected),
    `missing` (no such connection) and `lease_lost` (the lease expired mid-sync), which
    leave the status columns alone. `writes` counts remote write operations sent,
    `reads` remote lookups and listings. `provider` is the connection's provider, once
    the connection was read.
    """

    connection_id: int
    outcome: Outcome
    created: int = 0
    updated: int = 0
    deleted: int = 0
    writes: int = 0
    reads: int = 0
    full_check: bool = False
    error: str | None = None
    next_retry_at: datetime | None = None
    provider: str | None = None

    def as_dict(self) -> dict[str, object]:
        """Return the report as JSON-ready values."""
        return {
            "connection_id": self.connection_id,
            "outcome": self.outcome,
            "created": self.created,
            "updated": self.updated,
            "deleted": self.deleted,
            "full_check": self.full_check,
            "error": self.error,
            "next_retry_at": instant_json(self.next_retry_at),
        }


# ---------------------------------------------------------------- pure helpers


def _day_start(instant: datetime) -> datetime:
    return instant.astimezone(UTC).replace(hour=0, minute=0, second=0, microsecond=0)


def reset_batch_hints() -> None:
    """Forget the batch sizes learned on flaky links (tests start from a clean slate)."""
    with _HINTS_LOCK:
        _BATCH_HINTS.clear()


def sync_window(now: datetime, window_days: int) -> tuple[datetime, datetime]:
    """Return the [start, end) a connection shows at `now`: 7 days back to N days ahead.

    Both ends sit on UTC midnight (the end one day further out), so the window always
    covers [now - 7 days, now + N days) and only moves once a day.
    """
    today = _day_start(now)
    return today - timedelta(days=BACK_DAYS), today + timedelta(days=window_days + 1)


def next_window_move(now: datetime, connection_id: int) -> datetime:
    """Return when the connection's window next moves, spread over the first hour of a day."""
    spread = (connection_id * 2_654_435_761) % int(WINDOW_MOVE_SPREAD.total_seconds())
    return _day_start(now) + timedelta(days=1, seconds=spread)


def backoff_delay(
    failures: int, retry_after: float | None = None, rng: random.Random | None = None
) -> timedelta:
    """Return how long to wait after the `failures`-th failure in a row.

    Exponential from 5 s, capped at an hour, with "full jitter" in its upper half (so a
    fleet of connections that failed together does not come back together), and never
    sooner than the server's `Retry-After`.
    """
    rng = rng or _jitter
    exponent = min(max(failures - 1, 0), 20)
    ceiling = min(BACKOFF_CAP, BACKOFF_BASE * (2**exponent))
    delay = ceiling * rng.uniform(0.5, 1.0)
    if retry_after is not None and retry_after > 0:
        delay = max(delay, timedelta(seconds=retry_after))
    return delay


# Jitter needs no cryptographic strength; a module-level generator is seedable in tests.
_jitter = random.Random()  # noqa: S311


def describe_error(exc: ProviderError, provider: str) -> str:
    """Say what went wrong in plain words for the settings page (never a secret).

    Adapters already put the service's name, the HTTP status and the service's reason in
    their messages (and never a token or URL), so those are quoted as they are.
    """
    label = _LABELS.get(provider, "The calendar")
    detail = str(exc).strip().rstrip(".")
    if exc.status and str(exc.status) not in detail:
        detail = f"{detail} (HTTP {exc.status})"
    if isinstance(exc, AuthorizationLost):
        return (
            f"{label} access was revoked or has expired ({detail}). "
            "Reconnect the calendar to resume syncing."
        )
    if isinstance(exc, RateLimited):
        return f"{label} asked us to slow down (too many requests). Syncing resumes by itself."
    if isinstance(exc, TransientError):
        return f"Syncing with {label} failed for now: {detail}. It will be retried automatically."
    if isinstance(exc, RemoteNotFound):
        return (
            f"The calendar we write to in {label} no longer exists. "
            "Reconnect the calendar to choose where shifts go."
        )
    return f"{label} refused a change: {detail}."


# ---------------------------------------------------------------- database plumbing


def _factory(source: SessionSource) -> sessionmaker[Session]:
    return source.sessionmaker if isinstance(source, Database) else source


@contextmanager
def _transaction(factory: sessionmaker[Session]) -> Iterator[Session]:
    with factory() as session, session.begin():
        yield session


def _default_owner() -> str:
    host = socket.gethostname()[:32]
    return f"{host}:{os.getpid()}:{threading.get_ident() % 100_000}:{uuid.uuid4().hex[:8]}"


class _Clock:
    """The sync's `now`, moving on with real time (for leases and finishing stamps)."""

    def __init__(self, now: datetime) -> None:
        self.start = now
        self._t0 = time.monotonic()

    def __call__(self) -> datetime:
        return self.start + timedelta(seconds=time.monotonic() - self._t0)


class _LeaseLost(Exception):
    """Another worker took the lease over (ours expired): stop without writing status."""


class _CalendarGone(Exception):
    """The calendar itself answered 404."""


def _acquire_lease(
    factory: sessionmaker[Session], connection_id: int, owner: str, now: datetime, ttl: timedelta
) -> bool:
    """Take the connection's lease with one conditional UPDATE: portable and cross-machine.

    The UPDATE also clears `dirty_since` (every change committed before this point will be
    read by this sync) and `overdue_since` (the wait is over), and makes the connection due
    again at the lease's expiry, so a worker killed mid-sync is picked up by the sweep once
    its lease runs out.
    """
    expires = now + ttl
    with _transaction(factory) as session:
        result = session.execute(
            update(CalendarConnection)
            .where(
                CalendarConnection.id == connection_id,
                CalendarConnection.status.in_(ACTIVE_STATUSES),
                or_(
                    CalendarConnection.lease_owner.is_(None),
                    CalendarConnection.lease_expires_at < now,
                    CalendarConnection.lease_owner == owner,
                ),
            )
            .values(
                lease_owner=owner,
                lease_expires_at=expires,
                last_sync_started_at=now,
                dirty_since=None,
                sync_due_at=expires,
                overdue_since=None,
            )
            .execution_options(synchronize_session=False)
        )
        return result.rowcount == 1  # type: ignore[attr-defined]


def _renew_lease(
    factory: sessionmaker[Session], connection_id: int, owner: str, now: datetime, ttl: timedelta
) -> None:
    with _transaction(factory) as session:
        result = session.execute(
            update(CalendarConnection)
            .where(CalendarConnection.id == connection_id, CalendarConnection.lease_owner == owner)
            .values(
                lease_expires_at=now + ttl,
                # A change committed during the sync set its own (earlier) due time: keep it.
                sync_due_at=case(
                    (CalendarConnection.dirty_since.is_(None), now + ttl),
                    else_=CalendarConnection.sync_due_at,
                ),
            )
            .execution_options(synchronize_session=False)
        )
        if result.rowcount != 1:  # type: ignore[attr-defined]
            raise _LeaseLost


def _why_not_acquired(
    factory: sessionmaker[Session], connection_id: int
) -> tuple[Outcome, str | None]:
    """Say why the lease was not ours, and the connection's provider (None when missing)."""
    with factory() as session:
        row = session.execute(
            select(CalendarConnection.status, CalendarConnection.provider).where(
                CalendarConnection.id == connection_id
            )
        ).one_or_none()
    if row is None:
        return "missing", None
    return ("busy" if row.status in ACTIVE_STATUSES else "inactive"), row.provider


# ---------------------------------------------------------------- what should be shown


@dataclass
class _State:
    """Everything one pass reads from the database before planning."""

    connection: CalendarConnection
    user: User
    window: tuple[datetime, datetime]
    desired: dict[int, EventSpec]
    rows: dict[int, dict[str, Any]]  # the status store, by shift id, as column values
    kept: set[int]

    @property
    def records(self) -> list[Record]:
        """The status store as the planner sees it."""
        return [_record(row) for row in self.rows.values()]


def _load_state(
    factory: sessionmaker[Session],
    connection_id: int,
    now: datetime,
    base_url: str,
    window_days: int | None,
) -> _State:
    with factory() as session:
        connection = session.get(CalendarConnection, connection_id)
        assert connection is not None
        user = session.get(User, connection.user_id)
        assert user is not None
        start, end = sync_window(now, window_days or connection.window_days)
        options = RenderOptions(base_url, busy=user.feed_busy)
        shifts = shifts_for_user(
            session, user.id, start, end, schedule_keys=user.feed_schedule_keys or None
        )
        desired = {shift.id: shift_event(shift_facts(shift), options) for shift in shifts}
        rows = {
            row["shift_id"]: dict(row)
            for row in session.execute(
                select(*[_RECORDS.c[name] for name in _ROW_COLUMNS]).where(
                    _RECORDS.c.connection_id == connection_id
                )
            ).mappings()
        }
        # Every other record's shift is gone (deleted, reassigned, filtered out) and its
        # event will be deleted remotely, unless the shift just lies outside the window.
        others = [shift_id for shift_id in rows if shift_id not in desired]
        kept = set(_live_outside_window(session, user.id, Shift.id, others, (start, end)))
        session.expunge_all()
    return _State(connection, user, (start, end), desired, rows, kept)


def _record(row: dict[str, Any]) -> Record:
    return Record(
        shift_id=row["shift_id"],
        uid=row["shift_uid"],
        state=row["state"],
        remote_id=row["remote_id"],
        content_hash=row["content_hash"],
        transaction_id=row["transaction_id"],
    )


def _live_outside_window(
    session: Session,
    user_id: int,
    key: InstrumentedAttribute[Any],
    values: Sequence[Any],
    window: tuple[datetime, datetime],
) -> dict[Any, int]:
    """Of the user's live shifts whose `key` (id or UID) is in `values`, those outside the
    window, as key -> shift id: their events stay (as aged-out events do)."""
    start, end = window
    found: dict[Any, int] = {}
    for offset in range(0, len(values), _SQL_CHUNK):
        rows = session.execute(
            select(key, Shift.id, Shift.starts_at, Shift.ends_at).where(
                key.in_(values[offset : offset + _SQL_CHUNK]),
                Shift.user_id == user_id,
                Shift.deleted_at.is_(None),
            )
        )
        found.update({value: sid for value, sid, s, e in rows if not (s < end and e > start)})
    return found


def _adoptable(
    factory: sessionmaker[Session],
    user_id: int,
    uids: Sequence[str],
    window: tuple[datetime, datetime],
) -> dict[str, int]:
    """Of these listed UIDs without a record, the user's live shifts outside the window.

    Their events stay instead of being pruned as orphans; this matters only when records
    were lost, e.g. after restoring a database backup.
    """
    with factory() as session:
        return _live_outside_window(session, user_id, Shift.uid, uids, window)


# ---------------------------------------------------------------- applying a plan


@dataclass(frozen=True)
class _Restore:
    """After a 409 on insert: update the event that holds our key (restores a cancelled one)."""

    shift_id: int
    spec: EventSpec
    remote_id: str


_Remote = Create | Update | Delete | Prune | _Restore


class _Store:
    """Writes to the status store within one transaction, batched, mirrored in `rows`.

    `put` upserts a record (full column values), `drop` deletes one; everything is sent
    when the transaction closes, as one executemany per kind of statement.
    """

    def __init__(self, session: Session, run: _Run) -> None:
        self.session = session
        self.run = run
        self.puts: dict[int, dict[str, Any]] = {}
        self.drops: set[int] = set()

    def put(self, shift_id: int, uid: str, **changes: Any) -> None:
        """Upsert the shift's record with these column values."""
        base = self.puts.get(shift_id) or self.run.rows.get(shift_id) or _empty_row(shift_id, uid)
        self.puts[shift_id] = {**base, **changes, "updated_at": self.run.clock()}
        self.drops.discard(shift_id)

    def drop(self, shift_id: int) -> None:
        """Delete the shift's record."""
        self.puts.pop(shift_id, None)
        self.drops.add(shift_id)

    def flush(self) -> None:
        """Send the batched statements (the caller's transaction commits them)."""
        rows, cid = self.run.rows, self.run.connection_id
        connection = self.session.connection()
        inserts = [row for sid, row in self.puts.items() if sid not in rows]
        updates = [row for sid, row in self.puts.items() if sid in rows]
        if inserts:
            connection.execute(
                _RECORDS.insert(), [{"connection_id": cid, **row} for row in inserts]
            )
        if updates:
            connection.execute(
                _RECORDS.update()
                .where(
                    _RECORDS.c.connection_id == cid,
                    _RECORDS.c.shift_id == bindparam("key_shift_id"),
                )
                .values({name: bindparam(name) for name in _ROW_COLUMNS if name != "shift_id"}),
                [{"key_shift_id": row["shift_id"], **row} for row in updates],
            )
        gone = [sid for sid in self.drops if sid in rows]
        for offset in range(0, len(gone), _SQL_CHUNK):
            connection.execute(
                _RECORDS.delete().where(
                    _RECORDS.c.connection_id == cid,
                    _RECORDS.c.shift_id.in_(gone[offset : offset + _SQL_CHUNK]),
                )
            )

    def mirror(self) -> None:
        """After the commit: make `rows` say what the database now holds."""
        self.run.rows.update(self.puts)
        for shift_id in self.drops:
            self.run.rows.pop(shift_id, None)


def _empty_row(shift_id: int, uid: str) -> dict[str, Any]:
    return {
        "shift_id": shift_id,
        "shift_uid": uid,
        "state": "creating",
        "remote_id": None,
        "transaction_id": None,
        "content_hash": None,
        "remote_etag": None,
    }


@dataclass
class _Run:
    """One pass of applying a plan; collects counts and errors.

    The provider is built on first use: a sync with nothing to send never decrypts a
    token or builds an API client (that alone costs tens of milliseconds for Google).
    """

    factory: sessionmaker[Session]
    connection_id: int
    source: Callable[[], CalendarProvider]
    calendar_id: str
    generation: int
    clock: _Clock
    owner: str
    lease_ttl: timedelta
    rows: dict[int, dict[str, Any]]
    created: int = 0
    updated: int = 0
    deleted: int = 0
    writes: int = 0
    reads: int = 0
    errors: list[ProviderError] = field(default_factory=list)
    stop: ProviderError | None = None  # AuthorizationLost or RateLimited: stop at once
    batch_size: int = 0  # set when the first batch goes out
    provider_name: str | None = None  # the connection's provider, for metrics labels
    _bumped: bool = False
    _provider: CalendarProvider | None = None

    @property
    def provider(self) -> CalendarProvider:
        """The remote calendar's adapter (built on first use)."""
        if self._provider is None:
            try:
                self._provider = self.source()
            except ProviderError as exc:  # e.g. a token refresh answered invalid_grant
                self.count_error(exc)
                raise
        return self._provider

    def count_error(self, exc: ProviderError) -> None:
        """Count a failed remote operation in the metrics."""
        record_error(self.provider_name, exc)

    def count_write(self, kind: str) -> None:
        """Count a remote write the calendar confirmed in the metrics."""
        record_write(self.provider_name, kind)

    def start_batch_size(self) -> None:
        """Start at the provider's largest batch, or at what the last run learned."""
        if not self.batch_size:
            with _HINTS_LOCK:
                hint = _BATCH_HINTS.get(self.connection_id, self.max_batch)
            self.batch_size = min(self.max_batch, hint)

    def remember_batch_size(self) -> None:
        """Start this connection's next run at the batch size this one ended with."""
        if not self.batch_size:
            return
        with _HINTS_LOCK:
            if self.batch_size < self.max_batch:
                _BATCH_HINTS[self.connection_id] = self.batch_size
            else:
                _BATCH_HINTS.pop(self.connection_id, None)

    @property
    def max_batch(self) -> int:
        """The provider's largest batch."""
        return max(1, int(self.provider.max_batch))

    @property
    def client_ids(self) -> bool:
        """Whether the provider takes client-chosen event ids (Google semantics)."""
        return self.provider.kind in CLIENT_CHOSEN_IDS

    def new_key(self, uid: str) -> str:
        """The idempotency key of a fresh insert for `uid`."""
        if self.client_ids:
            return google_event_id(uid, self.generation)
        return uuid.uuid4().hex

    @contextmanager
    def store(self) -> Iterator[_Store]:
        """A transaction on the status store; committed, then mirrored, on exit."""
        with _transaction(self.factory) as session:
            store = _Store(session, self)
            yield store
            store.flush()
        store.mirror()

    def _fail(self, exc: ProviderError) -> None:
        if isinstance(exc, AuthorizationLost | RateLimited):
            if self.stop is None or isinstance(exc, AuthorizationLost):
                self.stop = exc
        else:
            self.errors.append(exc)

    # -- the pass

    def apply(self, actions: Sequence[Action]) -> None:
        """Apply a plan: database-only actions first, then remote writes in batches."""
        local = [a for a in actions if isinstance(a, Adopt | Forget)]
        if local:
            with self.store() as store:
                for action in local:
                    if isinstance(action, Adopt):
                        store.put(
                            action.shift_id, action.uid, state="synced",
                            remote_id=action.remote_id, transaction_id=None,
                            content_hash=action.content_hash, remote_etag=None,
                        )  # fmt: skip
                    else:
                        store.drop(action.shift_id)
        remote: list[_Remote] = []
        for action in actions:
            if isinstance(action, Recover):
                remote.extend(self._recover(action))
            elif isinstance(action, Create | Update | Delete | Prune):
                remote.append(action)
            if self.stop is not None:
                return
        self._write(remote)

    def _recover(self, action: Recover) -> list[_Remote]:
        """Turn an uncertain insert into what it needs now.

        Where ids are client-chosen, inserting again with the same id is the cheapest
        question (a 409 means it exists, and the update that follows restores it). Else
        the event is looked up by its tag.
        """
        if action.spec is not None and self.client_ids:
            return [Create(action.shift_id, action.spec, action.event_key)]
        provider = self.provider  # built (and a failed build counted) outside the try
        try:
            self.reads += 1
            found = provider.find_event(self.calendar_id, action.uid)
        except ProviderError as exc:
            self.count_error(exc)
            self._fail(exc)
            return []
        if found is None:
            if action.spec is None:
                with self.store() as store:
                    store.drop(action.shift_id)
                return []
            # The insert never landed: send it again with the same key.
            return [Create(action.shift_id, action.spec, action.event_key)]
        with self.store() as store:
            if action.spec is None and not action.keep:
                store.drop(action.shift_id)
                return [Prune(action.uid, found.remote_id)]
            # Nothing proves the event found is the one our lost insert made (rather than
            # an older one with other content), so it is adopted as unknown and rewritten.
            store.put(
                action.shift_id, action.uid, state="synced", remote_id=found.remote_id,
                transaction_id=None, content_hash=None, remote_etag=found.etag,
            )  # fmt: skip
        if action.spec is not None:
            return [Update(action.shift_id, found.remote_id, action.spec)]
        return []

    def _write(self, ops: Sequence[_Remote], depth: int = 0) -> None:
        """Send remote writes in batches; follow up 409s and vanished events.

        Batches start at the provider's `max_batch`. A batch lost as a whole (a dropped
        connection or a failed envelope takes every member with it) halves the size of
        the next one, and a clean batch doubles it again, so a flaky link costs retries
        of a few operations rather than of fifty.
        """
        follow_ups: list[_Remote] = []
        failed_batches = 0
        offset = 0
        if ops:
            self.start_batch_size()
        while offset < len(ops):
            if self.stop is not None:
                return
            chunk = ops[offset : offset + self.batch_size]
            offset += len(chunk)
            _renew_lease(self.factory, self.connection_id, self.owner, self.clock(), self.lease_ttl)
            self._commit_intent(chunk)
            operations = [self._operation(op) for op in chunk]
            self.writes += len(operations)
            try:
                results = self.provider.apply(self.calendar_id, operations)
            except ProviderError as exc:
                results = [OperationResult(error=exc)] * len(operations)
            if len(results) != len(operations):
                # A provider bug; treat every answer as lost rather than mis-assign them.
                lost = TransientError("the calendar returned an incomplete batch answer")
                results = [OperationResult(error=lost)] * len(operations)
            follow_ups.extend(self._record_results(chunk, results))
            lost_count = sum(isinstance(r.error, TransientError | RateLimited) for r in results)
            if lost_count == len(results):
                failed_batches += 1
                self.batch_size = max(1, self.batch_size // 2)
                if failed_batches >= _MAX_FAILED_BATCHES:
                    return
            else:
                failed_batches = 0
                if lost_count == 0:
                    self.batch_size = min(self.max_batch, self.batch_size * 2)
        if follow_ups and self.stop is None and depth < 3:
            self._write(follow_ups, depth + 1)

    def _operation(self, op: _Remote) -> Operation:
        if isinstance(op, Create):
            return Operation("insert", spec=op.spec, event_key=op.event_key)
        if isinstance(op, Update | _Restore):
            return Operation("update", spec=op.spec, remote_id=op.remote_id)
        return Operation("delete", remote_id=op.remote_id)

    def _commit_intent(self, chunk: Sequence[_Remote]) -> None:
        """Record what is about to be sent, before sending it (crash safety)."""
        intents = [op for op in chunk if isinstance(op, Create | Delete)]
        if not intents:
            return
        with self.store() as store:
            for op in intents:
                if isinstance(op, Create):
                    key = op.event_key
                    store.put(
                        op.shift_id, op.spec.uid, state="creating",
                        remote_id=key if self.client_ids else None,
                        transaction_id=None if self.client_ids else key,
                        content_hash=op.spec.content_hash, remote_etag=None,
                    )  # fmt: skip
                elif op.shift_id in self.rows:
                    store.put(op.shift_id, self.rows[op.shift_id]["shift_uid"], state="deleting")

    def _record_results(
        self, chunk: Sequence[_Remote], results: Sequence[OperationResult]
    ) -> list[_Remote]:
        """Record one batch's answers in one transaction; return the follow-up writes."""
        follow_ups: list[_Remote] = []
        calendar_gone = False
        with self.store() as store:
            for op, result in zip(chunk, results, strict=True):
                error = result.error
                if error is not None:
                    self.count_error(error)
                if isinstance(op, Delete | Prune):
                    if error is None or isinstance(error, RemoteNotFound):
                        if isinstance(op, Delete):
                            store.drop(op.shift_id)
                        if error is None:
                            self.deleted += 1
                            self.count_write("delete")
                    else:
                        self._fail(error)
                    continue
                if error is None:
                    self._record_written(store, op, result.event)
                elif isinstance(op, Create) and isinstance(error, RemoteConflict):
                    follow_ups.extend(self._conflict(op))
                elif isinstance(op, Create) and isinstance(error, RemoteNotFound):
                    calendar_gone = True
                elif isinstance(op, Update) and isinstance(error, RemoteNotFound):
                    # The event vanished (Graph deletes for good): insert it afresh.
                    follow_ups.append(Create(op.shift_id, op.spec, self.new_key(op.spec.uid)))
                elif isinstance(op, _Restore) and isinstance(
                    error, RemoteNotFound | PermanentError
                ):
                    # Google refused to bring the old event back: use a new generation of ids.
                    follow_ups.append(self._regenerate(store.session, op))
                else:
                    self._fail(error)
        if calendar_gone:
            raise _CalendarGone
        return follow_ups

    def _record_written(
        self, store: _Store, op: Create | Update | _Restore, event: RemoteEvent | None
    ) -> None:
        if event is not None and event.remote_id:
            remote_id: str | None = event.remote_id
        elif isinstance(op, Create):
            remote_id = op.event_key if self.client_ids else None
        else:
            remote_id = op.remote_id
        store.put(
            op.shift_id, op.spec.uid, state="synced", remote_id=remote_id,
            transaction_id=None, content_hash=op.spec.content_hash,
            remote_etag=event.etag if event is not None else None,
        )  # fmt: skip
        # A restore after a 409 brings back the event our lost insert made: a create.
        if isinstance(op, Update):
            self.updated += 1
            self.count_write("update")
        else:
            self.created += 1
            self.count_write("create")

    def _conflict(self, op: Create) -> list[_Remote]:
        """A 409 on insert: the key is taken, by our own earlier (or replayed) insert."""
        if self.client_ids:
            return [_Restore(op.shift_id, op.spec, op.event_key)]
        # Graph has no client-chosen ids; a conflict means it found our transactionId.
        # Leave the record `creating`: the next pass looks the event up by its tag.
        self._fail(TransientError("the calendar reported the event as already created"))
        return []

    def _regenerate(self, session: Session, op: _Restore) -> Create:
        if not self._bumped:
            self.generation = session.execute(
                update(CalendarConnection)
                .where(CalendarConnection.id == self.connection_id)
                .values(id_generation=CalendarConnection.id_generation + 1)
                .returning(CalendarConnection.id_generation)
            ).scalar_one()
            self._bumped = True
        return Create(op.shift_id, op.spec, self.new_key(op.spec.uid))


# ---------------------------------------------------------------- the public entry point


def sync_connection(
    database: SessionSource,
    connection_id: int,
    provider: ProviderSource,
    now: datetime,
    *,
    base_url: str,
    full_check: bool | None = None,
    window_days: int | None = None,
    lease_owner: str | None = None,
    lease_ttl: timedelta = LEASE_TTL,
    rng: random.Random | None = None,
) -> SyncReport:
    """Reconcile one connection's remote calendar with its user's shifts; never raises
    for remote failures, which are recorded on the connection instead.

    `provider` is a ready adapter, or a factory called with the connection once its lease
    is held (building one may fail, e.g. with `AuthorizationLost`). `full_check=None`
    lists the remote calendar when the last listing is a day old (or never happened);
    True or False forces it. `window_days` overrides the connection's window for this
    run only. `base_url` is where event links point.

    Every run is counted in `oncal_sync_runs_total` by its outcome, or as `crashed` when
    an internal error escapes.
    """
    report = SyncReport(connection_id, "ok")
    try:
        _sync_connection(
            report, _factory(database), provider, now, base_url=base_url,
            full_check=full_check, window_days=window_days,
            owner=lease_owner or _default_owner(), lease_ttl=lease_ttl, rng=rng,
        )  # fmt: skip
    except Exception:
        record_run(report.provider, "crashed")
        raise
    record_run(report.provider, report.outcome)
    return report


def _sync_connection(
    report: SyncReport,
    factory: sessionmaker[Session],
    provider: ProviderSource,
    now: datetime,
    *,
    base_url: str,
    full_check: bool | None,
    window_days: int | None,
    owner: str,
    lease_ttl: timedelta,
    rng: random.Random | None,
) -> None:
    """Run `sync_connection()`, filling in `report`."""
    connection_id = report.connection_id
    clock = _Clock(now)
    if not _acquire_lease(factory, connection_id, owner, now, lease_ttl):
        report.outcome, report.provider = _why_not_acquired(factory, connection_id)
        return
    state: _State | None = None
    run: _Run | None = None
    try:
        for attempt in range(2):
            state = _load_state(factory, connection_id, now, base_url, window_days)
            connection = state.connection
            report.provider = connection.provider
            if attempt == 0:
                check = full_check if full_check is not None else _full_check_due(connection, now)
            report.full_check = check
            source = _provider_source(provider, connection)
            run = _Run(factory, connection_id, source, "", connection.id_generation, clock,
                       owner, lease_ttl, state.rows,
                       provider_name=connection.provider)  # fmt: skip
            try:
                _sync_once(run, state, check)
                break
            except _CalendarGone:
                if attempt or not _forget_calendar(factory, connection):
                    raise RemoteNotFound("the calendar was deleted", 404) from None
                # A new calendar is made on the second attempt; list it to be sure.
                check = True
    except _LeaseLost:
        log.warning("lease of connection %s was lost mid-sync", connection_id)
        _copy_counts(report, run)
        report.outcome = "lease_lost"
        return
    except ProviderError as exc:
        _copy_counts(report, run)
        _finish(factory, report, state, now, clock, owner, exc, rng)
        return
    except Exception:
        log.exception("push sync of connection %s failed", connection_id)
        _copy_counts(report, run)
        internal = TransientError("an internal error stopped the sync")
        _finish(factory, report, state, now, clock, owner, internal, rng)
        raise
    _copy_counts(report, run)
    assert run is not None
    run.remember_batch_size()
    failure = run.stop or (run.errors[0] if run.errors else None)
    _finish(factory, report, state, now, clock, owner, failure, rng)


def _provider_source(
    provider: ProviderSource, connection: CalendarConnection
) -> Callable[[], CalendarProvider]:
    if hasattr(provider, "apply"):
        adapter: CalendarProvider = provider  # type: ignore[assignment]
        return lambda: adapter
    return lambda: provider(connection)  # type: ignore[operator]


def _full_check_due(connection: CalendarConnection, now: datetime) -> bool:
    last = connection.last_full_check_at
    return last is None or now - last >= FULL_CHECK_INTERVAL


def _sync_once(run: _Run, state: _State, check: bool) -> None:
    """Make sure there is a calendar, plan against the records (and listing), apply.

    When the full check's listing fails for a passing reason, the sync carries on from
    the records alone (the failure is reported, so the check is tried again soon).
    """
    connection = state.connection
    kept = state.kept
    calendar_id = connection.calendar_id
    listing: list[RemoteEvent] | None = None
    if calendar_id is None:
        calendar_id = _create_calendar(run, state)
        kept = set()
    elif check:
        try:
            listing = _list_remote(run, connection, calendar_id)
        except _CalendarGone:
            if not _forget_calendar(run.factory, connection):
                raise
            calendar_id = _create_calendar(run, state)
            kept = set()
        except TransientError as exc:
            run.errors.append(exc)
    run.calendar_id = calendar_id
    records = state.records
    adoptable: dict[str, int] = {}
    if listing is not None:
        known = {spec.uid for spec in state.desired.values()} | {r.uid for r in records}
        unknown = sorted({e.uid for e in listing if e.uid is not None} - known)
        adoptable = _adoptable(run.factory, state.user.id, unknown, state.window)
    actions = list(
        plan(
            state.desired,
            records,
            new_key=run.new_key,
            kept=kept,
            remote=listing,
            adoptable=adoptable,
        )
    )
    if actions:
        run.apply(actions)


def _list_remote(run: _Run, connection: CalendarConnection, calendar_id: str) -> list[RemoteEvent]:
    """List our tagged events; raise `_CalendarGone` when the calendar itself is gone."""
    provider = run.provider  # built (and a failed build counted) outside the try
    if connection.owns_calendar and not connection.use_primary:
        run.reads += 1
        try:
            exists = provider.calendar_exists(calendar_id)
        except ProviderError as exc:
            run.count_error(exc)
            raise
        if not exists:
            raise _CalendarGone
    run.reads += 1
    try:
        return list(provider.list_events(calendar_id))
    except ProviderError as exc:
        run.count_error(exc)
        if isinstance(exc, RemoteNotFound):
            raise _CalendarGone from None
        raise


def _create_calendar(run: _Run, state: _State) -> str:
    """Create the app's own calendar and remember it before writing anything into it."""
    name = state.connection.calendar_name or CALENDAR_NAME
    provider = run.provider  # built (and a failed build counted) outside the try
    try:
        calendar_id = provider.create_calendar(name, state.user.time_zone)
    except ProviderError as exc:
        run.count_error(exc)
        raise
    run.writes += 1
    run.count_write("calendar")
    with _transaction(run.factory) as session:
        session.execute(
            update(CalendarConnection)
            .where(CalendarConnection.id == run.connection_id)
            .values(calendar_id=calendar_id, calendar_name=name, owns_calendar=True)
        )
        session.execute(delete(SyncRecord).where(SyncRecord.connection_id == run.connection_id))
    run.rows.clear()
    return calendar_id


def _forget_calendar(factory: sessionmaker[Session], connection: CalendarConnection) -> bool:
    """Our own calendar was deleted by the user: drop it and its records to start afresh.

    Returns False when the calendar is not ours to re-create (the user's primary one).
    """
    if not connection.owns_calendar or connection.use_primary:
        return False
    with _transaction(factory) as session:
        session.execute(
            update(CalendarConnection)
            .where(CalendarConnection.id == connection.id)
            .values(calendar_id=None)
        )
        session.execute(delete(SyncRecord).where(SyncRecord.connection_id == connection.id))
    connection.calendar_id = None
    return True


def _copy_counts(report: SyncReport, run: _Run | None) -> None:
    if run is not None:
        report.created, report.updated, report.deleted = run.created, run.updated, run.deleted
        report.writes, report.reads = run.writes, run.reads


def _finish(
    factory: sessionmaker[Session],
    report: SyncReport,
    state: _State | None,
    now: datetime,
    clock: _Clock,
    owner: str,
    failure: ProviderError | None,
    rng: random.Random | None,
) -> None:
    """Write the status columns and release the lease, in one transaction.

    The connection as read at the start of the sync is current enough: while we hold
    the lease nobody else writes its sync columns.
    """
    finished = clock()
    connection_id = report.connection_id
    with _transaction(factory) as session:
        connection = state.connection if state is not None else None
        if connection is None:
            connection = session.get(CalendarConnection, connection_id)
            if connection is None:
                report.outcome = "missing"
                return
            session.expunge(connection)
        values: dict[str, object] = {
            "last_sync_at": finished,
            "last_created": report.created,
            "last_updated": report.updated,
            "last_deleted": report.deleted,
            "lease_owner": None,
            "lease_expires_at": None,
            "updated_at": finished,
        }
        if failure is None:
            assert state is not None
            next_due = next_window_move(now, connection_id)
            full_check_at = now if report.full_check else connection.last_full_check_at
            if full_check_at is not None:
                next_due = min(next_due, full_check_at + FULL_CHECK_INTERVAL)
            values.update(
                status="active",
                last_success_at=finished,
                last_window_start=state.window[0],
                last_full_check_at=full_check_at,
                last_error=None,
                failure_count=0,
                next_retry_at=None,
                # A change committed during the sync keeps the due time its writer set.
                sync_due_at=case(
                    (CalendarConnection.dirty_since.is_(None), next_due),
                    else_=CalendarConnection.sync_due_at,
                ),
            )
            report.outcome = "ok"
        elif isinstance(failure, AuthorizationLost):
            # The connections package decides what "paused until reconnected" means; its
            # values are written below, under the lease condition, with our wording.
            mark_needs_reauth(connection, failure, finished)
            report.outcome = "needs_reauth"
            report.error = describe_error(failure, connection.provider)
            values.update(
                status=connection.status,
                last_error=report.error,
                last_error_at=connection.last_error_at,
                next_retry_at=connection.next_retry_at,
                sync_due_at=None,
            )
        else:
            failures = connection.failure_count + 1
            retry_after = failure.retry_after if isinstance(failure, RateLimited) else None
            retry_at = finished + backoff_delay(failures, retry_after, rng)
            report.outcome = "failed"
            report.error = describe_error(failure, connection.provider)
            report.next_retry_at = retry_at
            values.update(
                status="error",
                last_error=report.error,
                last_error_at=finished,
                failure_count=failures,
                next_retry_at=retry_at,
                sync_due_at=retry_at,
            )
        result = session.execute(
            update(CalendarConnection)
            .where(CalendarConnection.id == connection_id, CalendarConnection.lease_owner == owner)
            .values(**values)
            .execution_options(synchronize_session=False)
        )
        if result.rowcount != 1:  # type: ignore[attr-defined]
            # Our lease expired and another worker took over: its sync writes the status.
            report.outcome = "lease_lost"
