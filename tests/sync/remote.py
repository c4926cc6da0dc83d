"""Helpers for sync tests against the fake Google and Microsoft servers and real adapters."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import select

from oncal_feed.db import get_database, utcnow
from oncal_feed.models import CalendarConnection, User
from oncal_feed.rendering.event import EventSpec, RenderOptions, shift_event
from oncal_feed.rendering.google import UID_PROPERTY
from oncal_feed.rendering.graph import UID_PROPERTY_ID
from oncal_feed.shifts import shift_facts, shifts_for_user
from oncal_feed.sync.schedule import sync_window
from tests.connections.flows import connect
from tests.fakes.fixtures import sign_in_client
from tests.fakes.google import FakeGoogle
from tests.fakes.microsoft import FakeMicrosoft

ALICE = "alice@example.com"


@dataclass(frozen=True)
class Seen:
    """One event as a fake server holds it, reduced to what the tests compare."""

    uid: str | None
    summary: str
    start: datetime
    end: datetime
    # When the fake last wrote the event (its `updated` / `lastModifiedDateTime`), as
    # epoch seconds; not compared: two calendars showing the same thing are equal.
    written_at: float | None = field(default=None, compare=False)


def _written_at(stamp: str) -> float:
    return datetime.fromisoformat(stamp.replace("Z", "+00:00")).timestamp()


def _instant(value: dict[str, str]) -> datetime:
    text = value["dateTime"].replace("Z", "+00:00")
    if "." in text:  # Graph: 2026-03-08T09:00:00.0000000 in the zone named beside it
        text = text.split(".")[0]
    parsed = datetime.fromisoformat(text)
    if parsed.tzinfo is None:
        assert value.get("timeZone") == "UTC", value
        parsed = parsed.replace(tzinfo=UTC)
    return parsed.astimezone(UTC)


def google_events(fake: FakeGoogle, calendar_id: str) -> list[Seen]:
    """Live events of a Google calendar."""
    return [
        Seen(
            ((event.get("extendedProperties") or {}).get("private") or {}).get(UID_PROPERTY),
            event.get("summary", ""),
            _instant(event["start"]),
            _instant(event["end"]),
            _written_at(event["updated"]),
        )
        for event in fake.events(ALICE, calendar_id)
    ]


def graph_events(fake: FakeMicrosoft, calendar_id: str) -> list[Seen]:
    """Events of an Outlook calendar."""
    seen = []
    for event in fake.events(ALICE, calendar_id):
        uid = None
        for prop in event.get("singleValueExtendedProperties") or []:
            if prop["id"].lower() == UID_PROPERTY_ID.lower():
                uid = prop["value"]
        start, end = _instant(event["start"]), _instant(event["end"])
        written_at = _written_at(event["lastModifiedDateTime"])
        seen.append(Seen(uid, event["subject"], start, end, written_at))
    return seen


def remote_events(fakes: dict[str, Any], connection: CalendarConnection) -> list[Seen]:
    """What the connection's remote calendar holds."""
    assert connection.calendar_id is not None
    if connection.provider == "google":
        return google_events(fakes["google"], connection.calendar_id)
    return graph_events(fakes["microsoft"], connection.calendar_id)


def desired_events(app: Flask, user_id: int, now: datetime, window_days: int = 90) -> list[Seen]:
    """What a calendar of the user, with a connection's options as made (free time, all
    schedules, no reminder), should show at `now`."""
    start, end = sync_window(now, window_days)
    with get_database(app).sessionmaker() as session:
        options = RenderOptions(app.config["BASE_URL"])
        specs: list[EventSpec] = [
            shift_event(shift_facts(shift), options)
            for shift in shifts_for_user(session, user_id, start, end)
        ]
    return [Seen(s.uid, s.summary, s.starts_at, s.ends_at) for s in specs]


def connect_both(app: Flask, client: FlaskClient, fakes: dict[str, Any]) -> dict[str, int]:
    """Connect Alice's Google and Outlook calendars through the real OAuth flows."""
    with get_database(app).sessionmaker() as session:
        user = session.scalars(select(User).where(User.email == ALICE)).one()
        session.expunge(user)
    sign_in_client(client, user)
    ids = {}
    for provider, fake in fakes.items():
        response = connect(client, fake, provider)
        assert response.status_code == 200, response.get_json()
        with get_database(app).sessionmaker() as session:
            ids[provider] = session.scalars(
                select(CalendarConnection.id).where(CalendarConnection.provider == provider)
            ).one()
    return ids


def connection(app: Flask, connection_id: int) -> CalendarConnection:
    """A connection row, read afresh."""
    with get_database(app).sessionmaker() as session:
        row = session.get(CalendarConnection, connection_id)
        assert row is not None
        session.expunge(row)
        return row


def mismatch(expected: list[Seen], actual: list[Seen]) -> dict[str, Any]:
    """What keeps a calendar from showing exactly `expected`, by kind; empty when exact.

    "wrong": a shift's event with other times or text; "duplicate": a second event of a
    shift shown rightly; "orphan": an event of no shift the calendar should show (or
    untagged); "missing": a shift with no event at all.
    """
    want, have = Counter(expected), Counter(actual)
    missing = sorted((want - have).elements(), key=repr)
    extra = sorted((have - want).elements(), key=repr)
    missing_uids = {seen.uid for seen in missing}
    wanted_uids = {seen.uid for seen in expected}
    wrong = [seen for seen in extra if seen.uid in missing_uids]
    wrong_uids = {seen.uid for seen in wrong}
    problems = {
        "missing": [seen for seen in missing if seen.uid not in wrong_uids],
        "wrong": wrong,
        "duplicate": [s for s in extra if s.uid in wanted_uids and s.uid not in missing_uids],
        "orphan": [seen for seen in extra if seen.uid not in wanted_uids],
    }
    return {k: v for k, v in problems.items() if v}


def tomorrow_noon() -> datetime:
    """A fixed point in the near future on the real clock (the worker uses real time)."""
    return utcnow().replace(hour=12, minute=0, second=0, microsecond=0) + timedelta(days=1)
