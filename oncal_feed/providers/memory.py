"""An in-memory calendar provider with Google's id semantics, for tests and dry runs.

It is a real implementation of `CalendarProvider`, not a mock: the contract tests run
against it as well as against the Google and Graph adapters.
"""

from __future__ import annotations

import itertools
import threading
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field

from oncal_feed.providers.base import (
    Operation,
    OperationResult,
    PreconditionFailed,
    RemoteConflict,
    RemoteEvent,
    RemoteNotFound,
    apply_one_by_one,
    read_back,
)
from oncal_feed.rendering.event import EventSpec

__all__ = ["MemoryProvider", "StoredEvent"]


@dataclass
class StoredEvent:
    """An event as the memory calendar keeps it."""

    remote_id: str
    spec: EventSpec
    etag: str
    cancelled: bool = False

    def read_back(self) -> RemoteEvent:
        """The event as a read of it shows: tags, etag, title and times."""
        return read_back(self.remote_id, self.spec, self.etag, self.cancelled)


@dataclass
class _Calendar:
    name: str
    time_zone: str
    events: dict[str, StoredEvent] = field(default_factory=dict)


class MemoryProvider:
    """A thread-safe calendar store in a dict; counts writes for assertions."""

    kind = "memory"
    max_batch = 50
    client_chosen_ids = True  # like Google

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._calendars: dict[str, _Calendar] = {}
        self._ids = itertools.count(1)
        self.writes = 0

    def _calendar(self, calendar_id: str) -> _Calendar:
        try:
            return self._calendars[calendar_id]
        except KeyError:
            raise RemoteNotFound("calendar not found", 404) from None

    def _etag(self) -> str:
        return f'"{next(self._ids)}"'

    def create_calendar(self, name: str, time_zone: str) -> str:
        """Create an empty calendar."""
        with self._lock:
            calendar_id = f"cal-{next(self._ids)}"
            self._calendars[calendar_id] = _Calendar(name, time_zone)
            self.writes += 1
            return calendar_id

    def calendar_name(self, calendar_id: str) -> str | None:
        """The name a calendar was created with, or None when there is no such calendar."""
        with self._lock:
            found = self._calendars.get(calendar_id)
            return found.name if found is not None else None

    def calendar_exists(self, calendar_id: str) -> bool:
        """Tell whether the calendar exists."""
        with self._lock:
            return calendar_id in self._calendars

    def delete_calendar(self, calendar_id: str) -> None:
        """Drop a calendar and its events; a missing one is fine."""
        with self._lock:
            self._calendars.pop(calendar_id, None)
            self.writes += 1

    def insert_event(self, calendar_id: str, spec: EventSpec, event_key: str) -> RemoteEvent:
        """Create an event with id `event_key`; a taken id (even cancelled) is a conflict."""
        with self._lock:
            events = self._calendar(calendar_id).events
            if event_key in events:
                raise RemoteConflict("event id already exists", 409)
            stored = StoredEvent(event_key, spec, self._etag())
            events[event_key] = stored
            self.writes += 1
            return stored.read_back()

    def update_event(
        self, calendar_id: str, remote_id: str, spec: EventSpec, *, etag: str | None = None
    ) -> RemoteEvent:
        """Replace an event's content, restoring it if it was cancelled (If-Match: `etag`)."""
        with self._lock:
            events = self._calendar(calendar_id).events
            if remote_id not in events:
                raise RemoteNotFound("event not found", 404)
            _check_etag(events[remote_id].etag, etag)
            stored = StoredEvent(remote_id, spec, self._etag())
            events[remote_id] = stored
            self.writes += 1
            return stored.read_back()

    def delete_event(self, calendar_id: str, remote_id: str, *, etag: str | None = None) -> None:
        """Cancel an event (it keeps its id, as in Google); missing counts as done."""
        with self._lock:
            stored = self._calendar(calendar_id).events.get(remote_id)
            if stored is not None:
                _check_etag(stored.etag, etag)
            if stored is not None and not stored.cancelled:
                stored.cancelled = True
                stored.etag = self._etag()
                self.writes += 1

    def get_event(self, calendar_id: str, remote_id: str) -> RemoteEvent | None:
        """Read one event by id, cancelled ones included."""
        with self._lock:
            stored = self._calendar(calendar_id).events.get(remote_id)
            if stored is None:
                return None
            return stored.read_back()

    def find_event(self, calendar_id: str, uid: str) -> RemoteEvent | None:
        """Find the live event tagged with `uid`."""
        return next((e for e in self.list_events(calendar_id) if e.uid == uid), None)

    def list_events(self, calendar_id: str) -> Iterator[RemoteEvent]:
        """List live events (a snapshot)."""
        with self._lock:
            stored = list(self._calendar(calendar_id).events.values())
        for event in stored:
            if not event.cancelled:
                yield event.read_back()

    def apply(self, calendar_id: str, operations: Sequence[Operation]) -> list[OperationResult]:
        """Apply operations one by one."""
        return apply_one_by_one(self, calendar_id, operations)

    def live_specs(self, calendar_id: str) -> list[EventSpec]:
        """Return the specs of live events, for test assertions."""
        with self._lock:
            events = self._calendar(calendar_id).events.values()
            return [e.spec for e in events if not e.cancelled]


def _check_etag(current: str, wanted: str | None) -> None:
    """Answer like the real APIs' If-Match: 412 when the event moved on."""
    if wanted is not None and wanted != current:
        raise PreconditionFailed("the event changed since it was read", 412)
