"""Helpers for push-sync tests: a small world of users and shifts, and provider doubles.

The doubles are real in-memory implementations of `CalendarProvider`, not mocks:
`GraphLikeProvider` follows Graph's id semantics (server-chosen ids, deletes are final),
and `FlakyProvider` wraps any provider to inject failures before or after the write.
"""

from __future__ import annotations

import itertools
import random
import threading
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from flask import Flask
from sqlalchemy import select
from sqlalchemy.orm import Session

from oncal_feed import accounts, shifts
from oncal_feed.db import get_database
from oncal_feed.models import CalendarConnection, Schedule, Shift, SyncRecord, User
from oncal_feed.providers.base import (
    CalendarProvider,
    Operation,
    OperationResult,
    PreconditionFailed,
    ProviderError,
    RemoteConflict,
    RemoteEvent,
    RemoteNotFound,
    TransientError,
    apply_one_by_one,
    read_back,
)
from oncal_feed.providers.memory import MemoryProvider
from oncal_feed.rendering.event import EventSpec
from oncal_feed.sync.apply import BatchSizer
from oncal_feed.sync.engine import SyncReport, sync_connection
from oncal_feed.validation import ScheduleInput, ShiftInput, UserInput

# Noon on a Tuesday; the window is [2030-01-08, 2030-04-16) with the default 90 days.
NOW = datetime(2030, 1, 15, 12, tzinfo=UTC)
BASE_URL = "https://oncal.example.test"


class World:
    """Users, one schedule and their shifts in the test database, with shortcuts."""

    def __init__(self, app: Flask) -> None:
        self.app = app
        self.database = get_database(app)
        # One per world, as one per process in production: a flaky provider's lesson
        # carries over to the next sync of this test, never to the next test.
        self.batch_sizer = BatchSizer()
        with self.database.session() as session:
            shifts.upsert_schedule(
                session, "payments", ScheduleInput("Payments", "Europe/Berlin"), NOW
            )
            for name in ("alice", "bob"):
                accounts.create_user(
                    session, UserInput(f"{name}@example.com", name.title(), "Europe/Berlin"), NOW
                )

    def user_id(self, name: str) -> int:
        """Return the id of `alice` or `bob`."""
        with self.database.sessionmaker() as session:
            return session.scalars(select(User.id).where(User.email == f"{name}@example.com")).one()

    def put_shift(
        self,
        external_id: str,
        day: float,
        *,
        user: str = "alice",
        hours: float = 12,
        notes: str = "",
        now: datetime = NOW,
    ) -> None:
        """Create or change a shift starting `day` days from NOW's midnight (may be negative)."""
        start = NOW.replace(hour=0) + timedelta(days=day)
        data = ShiftInput(
            external_id, f"{user}@example.com", start, start + timedelta(hours=hours), notes=notes
        )
        with self.database.session() as session:
            schedule = shifts.get_schedule(session, "payments")
            shifts.upsert_shift(session, schedule, data, now)

    def put_many(
        self, count: int, *, every_hours: float = 4, hours: float = 3, prefix: str = "s"
    ) -> None:
        """Create `count` shifts in one write, one every `every_hours` from NOW's midnight."""
        start = NOW.replace(hour=0)
        items = [
            ShiftInput(
                f"{prefix}{n}",
                "alice@example.com",
                start + timedelta(hours=n * every_hours),
                start + timedelta(hours=n * every_hours + hours),
            )
            for n in range(count)
        ]
        with self.database.session() as session:
            schedule = shifts.get_schedule(session, "payments")
            shifts.import_window(
                session, schedule, items[0].starts_at, items[-1].ends_at, items, NOW
            )

    def delete_shift(self, external_id: str, now: datetime = NOW) -> None:
        """Tombstone a shift."""
        with self.database.session() as session:
            shifts.delete_shift(session, shifts.get_schedule(session, "payments"), external_id, now)

    def rename_schedule(self, name: str) -> None:
        """Rename the schedule (changes every event's title)."""
        with self.database.session() as session:
            shifts.upsert_schedule(session, "payments", ScheduleInput(name, "Europe/Berlin"), NOW)

    def connect(
        self, provider: CalendarProvider, *, user: str = "alice", kind: str = "google", **extra
    ) -> int:
        """Create an active connection with its own calendar in `provider`; return its id."""
        calendar_id = provider.create_calendar("On-call shifts", "Europe/Berlin")
        with self.database.session() as session:
            connection = CalendarConnection(
                user_id=self.user_id(user), provider=kind, calendar_id=calendar_id, **extra
            )
            session.add(connection)
            session.flush()
            return connection.id

    def connection(self, connection_id: int) -> CalendarConnection:
        """Read a connection row afresh."""
        with self.database.sessionmaker() as session:
            connection = session.get(CalendarConnection, connection_id)
            assert connection is not None
            session.expunge(connection)
            return connection

    def records(self, connection_id: int) -> list[SyncRecord]:
        """The connection's sync records, by shift id."""
        with self.database.sessionmaker() as session:
            rows = session.scalars(
                select(SyncRecord)
                .where(SyncRecord.connection_id == connection_id)
                .order_by(SyncRecord.shift_id)
            ).all()
            session.expunge_all()
            return list(rows)

    def uid(self, external_id: str) -> str:
        """The UID of a shift."""
        with self.database.sessionmaker() as session:
            return session.scalars(
                select(Shift.uid).join(Schedule).where(Shift.external_id == external_id)
            ).one()

    def execute(self, statement) -> None:
        """Run one statement in its own transaction (to stage odd states)."""
        with self.database.session() as session:
            session.execute(statement)

    def session(self) -> Session:
        """A plain session (caller closes it)."""
        return self.database.sessionmaker()

    def sync(
        self, connection_id: int, provider: CalendarProvider, now: datetime = NOW, **options
    ) -> SyncReport:
        """Run `sync_connection` for one connection."""
        options.setdefault("batch_sizer", self.batch_sizer)
        return sync_connection(
            self.database, connection_id, provider, now, base_url=BASE_URL, **options
        )


def live(provider: MemoryProvider | GraphLikeProvider, calendar_id: str) -> list[EventSpec]:
    """The live events of a calendar, sorted by start."""
    return sorted(provider.live_specs(calendar_id), key=lambda s: (s.starts_at, s.uid))


def live_uids(provider: MemoryProvider | GraphLikeProvider, calendar_id: str) -> list[str]:
    """UIDs of live events, sorted (duplicates show up twice)."""
    return sorted(spec.uid for spec in provider.live_specs(calendar_id))


class CountingProvider:
    """Wraps a provider and counts every call by name (for "no write" assertions)."""

    def __init__(self, inner: CalendarProvider) -> None:
        self.inner = inner
        self.kind = inner.kind
        self.client_chosen_ids = inner.client_chosen_ids
        self.max_batch = inner.max_batch
        self.calls: dict[str, int] = {}

    def _count(self, name: str, n: int = 1) -> None:
        self.calls[name] = self.calls.get(name, 0) + n

    @property
    def writes(self) -> int:
        """Remote write operations (batched operations count one each)."""
        return sum(v for k, v in self.calls.items() if k.startswith(("op:", "create_cal")))

    @property
    def round_trips(self) -> int:
        """Calls made (a batch is one)."""
        return sum(v for k, v in self.calls.items() if not k.startswith("op:"))

    def create_calendar(self, name: str, time_zone: str) -> str:
        """Count and delegate."""
        self._count("create_calendar")
        return self.inner.create_calendar(name, time_zone)

    def calendar_exists(self, calendar_id: str) -> bool:
        """Count and delegate."""
        self._count("calendar_exists")
        return self.inner.calendar_exists(calendar_id)

    def delete_calendar(self, calendar_id: str) -> None:
        """Count and delegate."""
        self._count("delete_calendar")
        self.inner.delete_calendar(calendar_id)

    def insert_event(self, calendar_id: str, spec: EventSpec, event_key: str) -> RemoteEvent:
        """Count and delegate."""
        self._count("insert_event")
        return self.inner.insert_event(calendar_id, spec, event_key)

    def update_event(
        self, calendar_id: str, remote_id: str, spec: EventSpec, *, etag: str | None = None
    ) -> RemoteEvent:
        """Count and delegate."""
        self._count("update_event")
        return self.inner.update_event(calendar_id, remote_id, spec, etag=etag)

    def delete_event(self, calendar_id: str, remote_id: str, *, etag: str | None = None) -> None:
        """Count and delegate."""
        self._count("delete_event")
        self.inner.delete_event(calendar_id, remote_id, etag=etag)

    def get_event(self, calendar_id: str, remote_id: str) -> RemoteEvent | None:
        """Count and delegate."""
        self._count("get_event")
        return self.inner.get_event(calendar_id, remote_id)

    def find_event(self, calendar_id: str, uid: str) -> RemoteEvent | None:
        """Count and delegate."""
        self._count("find_event")
        return self.inner.find_event(calendar_id, uid)

    def list_events(self, calendar_id: str) -> Iterator[RemoteEvent]:
        """Count and delegate."""
        self._count("list_events")
        return self.inner.list_events(calendar_id)

    def apply(self, calendar_id: str, operations: Sequence[Operation]) -> list[OperationResult]:
        """Count the batch and each operation in it, then delegate."""
        self._count("apply")
        for op in operations:
            self._count(f"op:{op.kind}")
        return self.inner.apply(calendar_id, operations)


@dataclass
class _GraphEvent:
    remote_id: str
    spec: EventSpec
    etag: str
    transaction_id: str


class GraphLikeProvider:
    """An in-memory calendar with Graph's semantics: the server picks ids, the client sends a
    transactionId (ignored for dedupe, as the fault tests must not rely on it), deletes are
    final (404 afterwards), and batches hold up to 20 operations.
    """

    kind = "graph-like"
    max_batch = 20
    client_chosen_ids = False

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._calendars: dict[str, dict[str, _GraphEvent]] = {}
        self._ids = itertools.count(1)

    def _events(self, calendar_id: str) -> dict[str, _GraphEvent]:
        try:
            return self._calendars[calendar_id]
        except KeyError:
            raise RemoteNotFound("calendar not found", 404) from None

    def create_calendar(self, name: str, time_zone: str) -> str:
        """Create an empty calendar."""
        with self._lock:
            calendar_id = f"gcal-{next(self._ids)}"
            self._calendars[calendar_id] = {}
            return calendar_id

    def calendar_exists(self, calendar_id: str) -> bool:
        """Tell whether the calendar exists."""
        return calendar_id in self._calendars

    def delete_calendar(self, calendar_id: str) -> None:
        """Drop a calendar."""
        with self._lock:
            self._calendars.pop(calendar_id, None)

    def insert_event(self, calendar_id: str, spec: EventSpec, event_key: str) -> RemoteEvent:
        """Create an event with a fresh server id."""
        with self._lock:
            events = self._events(calendar_id)
            remote_id = f"AAMk-{next(self._ids)}"
            events[remote_id] = _GraphEvent(remote_id, spec, f"W/{next(self._ids)}", event_key)
            return read_back(remote_id, spec, events[remote_id].etag)

    def update_event(
        self, calendar_id: str, remote_id: str, spec: EventSpec, *, etag: str | None = None
    ) -> RemoteEvent:
        """Patch an event; a deleted one is 404."""
        with self._lock:
            events = self._events(calendar_id)
            if remote_id not in events:
                raise RemoteNotFound("event not found", 404)
            old = events[remote_id]
            if etag is not None and etag != old.etag:
                raise PreconditionFailed("change key mismatch", 412)
            events[remote_id] = _GraphEvent(
                remote_id, spec, f"W/{next(self._ids)}", old.transaction_id
            )
            return read_back(remote_id, spec, events[remote_id].etag)

    def delete_event(self, calendar_id: str, remote_id: str, *, etag: str | None = None) -> None:
        """Delete for good; missing is 404."""
        with self._lock:
            stored = self._events(calendar_id).get(remote_id)
            if stored is not None and etag is not None and etag != stored.etag:
                raise PreconditionFailed("change key mismatch", 412)
            if self._events(calendar_id).pop(remote_id, None) is None:
                raise RemoteNotFound("event not found", 404)

    def get_event(self, calendar_id: str, remote_id: str) -> RemoteEvent | None:
        """Read one event; None once deleted."""
        with self._lock:
            stored = self._events(calendar_id).get(remote_id)
        return None if stored is None else read_back(remote_id, stored.spec, stored.etag)

    def find_event(self, calendar_id: str, uid: str) -> RemoteEvent | None:
        """Find an event by its tag."""
        return next((e for e in self.list_events(calendar_id) if e.uid == uid), None)

    def list_events(self, calendar_id: str) -> Iterator[RemoteEvent]:
        """List every event (all are ours and live)."""
        with self._lock:
            stored = list(self._events(calendar_id).values())
        for event in stored:
            yield read_back(event.remote_id, event.spec, event.etag)

    def apply(self, calendar_id: str, operations: Sequence[Operation]) -> list[OperationResult]:
        """Apply operations one by one."""
        return apply_one_by_one(self, calendar_id, operations)

    def live_specs(self, calendar_id: str) -> list[EventSpec]:
        """Specs of the events, for assertions."""
        with self._lock:
            return [e.spec for e in self._events(calendar_id).values()]

    def delete_by_user(self, calendar_id: str, uid: str) -> None:
        """Delete an event as the user would in Outlook."""
        with self._lock:
            events = self._events(calendar_id)
            for remote_id in [k for k, e in events.items() if e.spec.uid == uid]:
                del events[remote_id]


class FlakyProvider:
    """Wraps a provider; each write fails with probability `rate`, half of them *after* the
    write took effect (the answer is lost: the engine must not duplicate), and reads fail
    too. Seeded, so a test sees the same sequence every run.
    """

    def __init__(self, inner: CalendarProvider, rate: float, seed: int = 0) -> None:
        self.inner = inner
        self.kind = inner.kind
        self.client_chosen_ids = inner.client_chosen_ids
        self.max_batch = inner.max_batch
        self.rate = rate
        self.rng = random.Random(seed)
        self.injected = 0

    def _roll(self) -> str | None:
        draw = self.rng.random()
        if draw < self.rate / 2:
            self.injected += 1
            return "before"
        if draw < self.rate:
            self.injected += 1
            return "after"
        return None

    def _call(self, call, *args, **kwargs):
        fault = self._roll()
        if fault == "before":
            raise TransientError("injected failure", 503)
        result = call(*args, **kwargs)
        if fault == "after":
            raise TransientError("injected: answer lost after the write", None)
        return result

    def create_calendar(self, name: str, time_zone: str) -> str:
        """Never flaky: calendars are made by the connect flow in real life."""
        return self.inner.create_calendar(name, time_zone)

    def calendar_exists(self, calendar_id: str) -> bool:
        """Maybe fail, else delegate."""
        return self._call(self.inner.calendar_exists, calendar_id)

    def delete_calendar(self, calendar_id: str) -> None:
        """Delegate."""
        self.inner.delete_calendar(calendar_id)

    def insert_event(self, calendar_id: str, spec: EventSpec, event_key: str) -> RemoteEvent:
        """Maybe fail, else delegate."""
        return self._call(self.inner.insert_event, calendar_id, spec, event_key)

    def update_event(
        self, calendar_id: str, remote_id: str, spec: EventSpec, *, etag: str | None = None
    ) -> RemoteEvent:
        """Maybe fail, else delegate."""
        return self._call(self.inner.update_event, calendar_id, remote_id, spec, etag=etag)

    def delete_event(self, calendar_id: str, remote_id: str, *, etag: str | None = None) -> None:
        """Maybe fail, else delegate."""
        self._call(self.inner.delete_event, calendar_id, remote_id, etag=etag)

    def get_event(self, calendar_id: str, remote_id: str) -> RemoteEvent | None:
        """Maybe fail, else delegate."""
        return self._call(self.inner.get_event, calendar_id, remote_id)

    def find_event(self, calendar_id: str, uid: str) -> RemoteEvent | None:
        """Maybe fail, else delegate."""
        return self._call(self.inner.find_event, calendar_id, uid)

    def list_events(self, calendar_id: str) -> Iterator[RemoteEvent]:
        """Maybe fail, else delegate (materialised, so the failure happens here)."""
        return iter(self._call(lambda c: list(self.inner.list_events(c)), calendar_id))

    def apply(self, calendar_id: str, operations: Sequence[Operation]) -> list[OperationResult]:
        """Apply one by one through the flaky single calls."""
        return apply_one_by_one(self, calendar_id, operations)


class ScriptedErrors:
    """Wraps a provider and raises queued errors on the next matching calls."""

    def __init__(self, inner: CalendarProvider) -> None:
        self.inner = inner
        self.kind = inner.kind
        self.client_chosen_ids = inner.client_chosen_ids
        self.max_batch = inner.max_batch
        self.queue: list[tuple[str, ProviderError]] = []

    def fail_next(self, call: str, error: ProviderError) -> None:
        """Make the next call named `call` (e.g. "insert_event") raise `error`."""
        self.queue.append((call, error))

    def _check(self, call: str) -> None:
        for index, (name, error) in enumerate(self.queue):
            if name == call:
                del self.queue[index]
                raise error

    def __getattr__(self, name: str):
        target = getattr(self.inner, name)
        if not callable(target):
            return target

        def wrapped(*args, **kwargs):
            self._check(name)
            return target(*args, **kwargs)

        return wrapped

    def apply(self, calendar_id: str, operations: Sequence[Operation]) -> list[OperationResult]:
        """Apply one by one through the scripted single calls."""
        return apply_one_by_one(self, calendar_id, operations)


__all__ = [
    "BASE_URL",
    "NOW",
    "CountingProvider",
    "FlakyProvider",
    "GraphLikeProvider",
    "RemoteConflict",
    "ScriptedErrors",
    "World",
    "live",
    "live_uids",
]


def add_schedule_push(world: World, parent_id: int, schedule: str = "payments") -> int:
    """A schedule push under connection `parent_id`, without a calendar yet; its id."""
    with world.database.session() as session:
        parent = session.get(CalendarConnection, parent_id)
        assert parent is not None
        push = CalendarConnection(
            user_id=parent.user_id,
            provider=parent.provider,
            parent_id=parent.id,
            schedule_id=shifts.get_schedule(session, schedule).id,
            calendar_name=f"{schedule.title()} on-call",
        )
        session.add(push)
        session.flush()
        return push.id
