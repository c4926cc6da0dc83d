"""The demo calendar: a calendar provider whose calendars live in oncal-feed's own database.

The embedded default for push sync, as SQLite is for storage: in demo mode a newcomer
connects "Demo calendar" and watches the same sync engine, planner, batching and records
that serve Google and Outlook write into it, with no account anywhere. It has Google's id
semantics (client-chosen event ids; a deleted event stays cancelled under its id and an
update restores it), and it passes the provider contract tests like the other adapters.

Every call is its own short transaction on its own connection, as a remote API call
would be: a sync's session never holds the provider's rows locked.
"""

from __future__ import annotations

import secrets
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass
from datetime import datetime
from typing import Any, Self

from sqlalchemy import Select, delete, select
from sqlalchemy.orm import Session

from oncal_feed.db import Database, utcnow
from oncal_feed.models import DemoCalendar, DemoEvent
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

__all__ = ["DemoCalendarProvider", "DemoEventView", "list_calendars", "list_live_events"]

_DATES = ("starts_at", "ends_at", "created", "last_modified")


def _spec_document(spec: EventSpec) -> dict[str, Any]:
    document = asdict(spec)
    for name in _DATES:
        document[name] = document[name].isoformat()
    return document


def _spec_from(document: dict[str, Any]) -> EventSpec:
    values = dict(document)
    for name in _DATES:
        values[name] = datetime.fromisoformat(values[name])
    return EventSpec(**values)


def _etag() -> str:
    return f'"{secrets.token_hex(8)}"'


@dataclass(frozen=True)
class DemoEventView:
    """A live event of a demo calendar, for the `/demo/calendar` page."""

    remote_id: str
    summary: str
    description: str
    starts_at: datetime
    ends_at: datetime


class DemoCalendarProvider:
    """`CalendarProvider` over the `demo_calendars` and `demo_events` tables.

    `owner_email` is the account the grant belongs to; calendars it creates are that
    account's, and it can reach no other account's calendars.
    """

    kind = "demo"
    max_batch = 50
    client_chosen_ids = True  # like Google

    def __init__(self, database: Database, owner_email: str) -> None:
        self._database = database
        self._owner = owner_email

    def close(self) -> None:
        """Nothing to close: every call used a pooled connection and gave it back."""

    def __enter__(self) -> Self:
        """Use as a context manager, like the HTTP adapters."""
        return self

    def __exit__(self, *_exc: object) -> None:
        """Close (a no-op)."""
        self.close()

    def _owned(self, calendar_id: str) -> Select[DemoCalendar]:
        return select(DemoCalendar).where(
            DemoCalendar.id == calendar_id, DemoCalendar.owner_email == self._owner
        )

    def create_calendar(self, name: str, time_zone: str) -> str:
        """Create an empty calendar for the grant's account."""
        calendar_id = f"demo-{secrets.token_hex(8)}"
        with self._database.session() as session:
            session.add(
                DemoCalendar(
                    id=calendar_id,
                    owner_email=self._owner,
                    name=name,
                    time_zone=time_zone,
                    created_at=utcnow(),
                )
            )
        return calendar_id

    def calendar_exists(self, calendar_id: str) -> bool:
        """Tell whether the account has this calendar."""
        with self._database.session() as session:
            return session.scalar(self._owned(calendar_id)) is not None

    def delete_calendar(self, calendar_id: str) -> None:
        """Drop a calendar and its events; a missing one is fine."""
        with self._database.session() as session:
            if session.scalar(self._owned(calendar_id)) is not None:
                session.execute(delete(DemoEvent).where(DemoEvent.calendar_id == calendar_id))
                session.execute(delete(DemoCalendar).where(DemoCalendar.id == calendar_id))

    def _require_calendar(self, session: Session, calendar_id: str) -> None:
        if session.scalar(self._owned(calendar_id)) is None:
            raise RemoteNotFound("calendar not found", 404)

    def insert_event(self, calendar_id: str, spec: EventSpec, event_key: str) -> RemoteEvent:
        """Create an event with id `event_key`; a taken id (even cancelled) is a conflict."""
        with self._database.session() as session:
            self._require_calendar(session, calendar_id)
            if session.get(DemoEvent, (calendar_id, event_key)) is not None:
                raise RemoteConflict("event id already exists", 409)
            event = DemoEvent(calendar_id=calendar_id, remote_id=event_key, cancelled=False)
            self._fill(event, spec)
            session.add(event)
            return read_back(event_key, spec, event.etag)

    def update_event(
        self, calendar_id: str, remote_id: str, spec: EventSpec, *, etag: str | None = None
    ) -> RemoteEvent:
        """Replace an event's content, restoring it if it was cancelled (If-Match: `etag`)."""
        with self._database.session() as session:
            self._require_calendar(session, calendar_id)
            event = session.get(DemoEvent, (calendar_id, remote_id))
            if event is None:
                raise RemoteNotFound("event not found", 404)
            _check_etag(event.etag, etag)
            self._fill(event, spec)
            event.cancelled = False
            return read_back(remote_id, spec, event.etag)

    @staticmethod
    def _fill(event: DemoEvent, spec: EventSpec) -> None:
        event.uid = spec.uid
        event.summary = spec.summary
        event.description = spec.description
        event.starts_at = spec.starts_at
        event.ends_at = spec.ends_at
        event.spec = _spec_document(spec)
        event.etag = _etag()
        event.updated_at = utcnow()

    def delete_event(self, calendar_id: str, remote_id: str, *, etag: str | None = None) -> None:
        """Cancel an event (it keeps its id, as in Google); missing counts as done."""
        with self._database.session() as session:
            self._require_calendar(session, calendar_id)
            event = session.get(DemoEvent, (calendar_id, remote_id))
            if event is not None:
                _check_etag(event.etag, etag)
            if event is not None and not event.cancelled:
                event.cancelled = True
                event.etag = _etag()
                event.updated_at = utcnow()

    def get_event(self, calendar_id: str, remote_id: str) -> RemoteEvent | None:
        """Read one event by id, cancelled ones included."""
        with self._database.session() as session:
            self._require_calendar(session, calendar_id)
            event = session.get(DemoEvent, (calendar_id, remote_id))
            if event is None:
                return None
            return read_back(remote_id, _spec_from(event.spec), event.etag, event.cancelled)

    def find_event(self, calendar_id: str, uid: str) -> RemoteEvent | None:
        """Find the live event tagged with `uid`."""
        return next((e for e in self.list_events(calendar_id) if e.uid == uid), None)

    def list_events(self, calendar_id: str) -> Iterator[RemoteEvent]:
        """List live events (a snapshot)."""
        with self._database.session() as session:
            self._require_calendar(session, calendar_id)
            rows = session.execute(
                select(DemoEvent.remote_id, DemoEvent.spec, DemoEvent.etag).where(
                    DemoEvent.calendar_id == calendar_id, DemoEvent.cancelled.is_(False)
                )
            ).all()
        for remote_id, document, etag in rows:
            yield read_back(remote_id, _spec_from(document), etag)

    def apply(self, calendar_id: str, operations: Sequence[Operation]) -> list[OperationResult]:
        """Apply operations one by one (each its own transaction, like one API call)."""
        return apply_one_by_one(self, calendar_id, operations)

    def live_specs(self, calendar_id: str) -> list[EventSpec]:
        """The specs of live events, read back from what was stored."""
        with self._database.session() as session:
            documents = session.scalars(
                select(DemoEvent.spec).where(
                    DemoEvent.calendar_id == calendar_id, DemoEvent.cancelled.is_(False)
                )
            ).all()
        return [_spec_from(document) for document in documents]


def _check_etag(current: str | None, wanted: str | None) -> None:
    """Answer like the real APIs' If-Match: 412 when the event moved on."""
    if wanted is not None and wanted != current:
        raise PreconditionFailed("the event changed since it was read", 412)


def list_calendars(database: Database, owner_email: str) -> list[DemoCalendar]:
    """The account's demo calendars, oldest first."""
    with database.session() as session:
        return list(
            session.scalars(
                select(DemoCalendar)
                .where(DemoCalendar.owner_email == owner_email)
                .order_by(DemoCalendar.created_at, DemoCalendar.id)
            )
        )


def list_live_events(
    database: Database, calendar_id: str, start: datetime, end: datetime
) -> list[DemoEventView]:
    """Live events of a calendar overlapping [start, end), by start time."""
    with database.session() as session:
        rows = session.scalars(
            select(DemoEvent)
            .where(
                DemoEvent.calendar_id == calendar_id,
                DemoEvent.cancelled.is_(False),
                DemoEvent.starts_at < end,
                DemoEvent.ends_at > start,
            )
            .order_by(DemoEvent.starts_at, DemoEvent.remote_id)
        )
        return [
            DemoEventView(e.remote_id, e.summary, e.description, e.starts_at, e.ends_at)
            for e in rows
        ]
