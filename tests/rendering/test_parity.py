"""The ICS event, the Google event and the Graph event say the same thing about a shift."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

import icalendar
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from oncal_feed.rendering import Colleague, EventSpec, RenderOptions, ShiftFacts, shift_event
from oncal_feed.rendering.google import UID_PROPERTY, google_event
from oncal_feed.rendering.graph import UID_PROPERTY_ID, graph_event
from oncal_feed.rendering.ics import calendar_bytes, vevent_bytes
from tests.rendering.conftest import BASE_FACTS

OPTIONS = RenderOptions(base_url="https://oncal.example.test")
ZONES = ["Europe/Berlin", "America/New_York", "Australia/Lord_Howe", "Asia/Kolkata", "UTC"]


def ics_view(spec: EventSpec) -> dict[str, Any]:
    """What a calendar app reads from the VEVENT, parsed back by icalendar."""
    calendar = icalendar.Calendar.from_ical(calendar_bytes("x", "", [vevent_bytes(spec)]))
    (event,) = calendar.walk("VEVENT")
    return {
        "uid": str(event["UID"]),
        "title": str(event["SUMMARY"]),
        "start": event.decoded("DTSTART"),
        "end": event.decoded("DTEND"),
        "description": str(event["DESCRIPTION"]),
        "status": str(event["STATUS"]).lower(),
        "free": str(event["TRANSP"]) == "TRANSPARENT",
        "url": str(event["URL"]),
        "reminder": _alarm_minutes(event),
    }


def _alarm_minutes(event: icalendar.Event) -> int | None:
    """Minutes before the start the event's one display alarm rings, or None."""
    alarms = event.walk("VALARM")
    if not alarms:
        return None
    (alarm,) = alarms
    assert str(alarm["ACTION"]) == "DISPLAY"
    trigger = alarm.decoded("TRIGGER")
    assert isinstance(trigger, timedelta)  # relative to the start, not an absolute time
    return int(-trigger.total_seconds() // 60)


def _utc(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00")).replace(tzinfo=UTC)


def google_view(spec: EventSpec) -> dict[str, Any]:
    """The same fields from the Google Calendar v3 body."""
    body = google_event(spec)
    assert body["start"]["timeZone"] == body["end"]["timeZone"] == "UTC"
    return {
        "uid": body["extendedProperties"]["private"][UID_PROPERTY],
        "title": body["summary"],
        "start": _utc(body["start"]["dateTime"]),
        "end": _utc(body["end"]["dateTime"]),
        "description": body["description"],
        "status": body["status"],
        "free": body["transparency"] == "transparent",
        "url": body["source"]["url"],
        "reminder": _google_minutes(body["reminders"]),
    }


def _google_minutes(reminders: dict[str, Any]) -> int | None:
    assert reminders["useDefault"] is False  # never the calendar's meeting default
    overrides = reminders.get("overrides", [])
    if not overrides:
        return None
    (override,) = overrides
    assert override["method"] == "popup"
    return int(override["minutes"])


def graph_view(spec: EventSpec) -> dict[str, Any]:
    """The same fields from the Graph body (no status: Graph can't write one)."""
    body = graph_event(spec)
    assert body["start"]["timeZone"] == body["end"]["timeZone"] == "UTC"
    assert body["body"]["contentType"] == "text"
    (uid,) = [
        p["value"] for p in body["singleValueExtendedProperties"] if p["id"] == UID_PROPERTY_ID
    ]
    return {
        "uid": uid,
        "title": body["subject"],
        "start": _utc(body["start"]["dateTime"]),
        "end": _utc(body["end"]["dateTime"]),
        "description": body["body"]["content"],
        "free": body["showAs"] == "free",
        "reminder": body["reminderMinutesBeforeStart"] if body["isReminderOn"] else None,
    }


@pytest.mark.parametrize(("busy", "reminder"), [(False, None), (True, 15), (False, 0)])
def test_three_formats_agree(busy: bool, reminder: int | None) -> None:
    """Title, instants, description, status, transparency and the reminder match across
    formats (a reminder "when it starts" is 0 minutes, not none)."""
    spec = shift_event(
        replace(
            BASE_FACTS,
            notes="Escalate to #payments, then call; see \\\\wiki",
            handover_to="Bob",
            also_on_call=(Colleague("Chloé", "secondary", "chloe@example.com"),),
        ),
        replace(OPTIONS, busy=busy, reminder_minutes=reminder),
    )
    ics, google, graph = ics_view(spec), google_view(spec), graph_view(spec)
    assert ics == google
    assert graph == {k: v for k, v in ics.items() if k not in ("status", "url")}
    assert ics["status"] == "confirmed"
    assert ics["free"] is not busy
    assert ics["start"] == BASE_FACTS.starts_at
    assert ics["reminder"] == reminder


def test_cancelled_agrees_where_it_can_and_graph_refuses() -> None:
    """ICS and Google both say cancelled; Graph has no writable status, so it refuses."""
    spec = shift_event(
        replace(BASE_FACTS, cancelled=True, revision=5), replace(OPTIONS, reminder_minutes=30)
    )
    assert ics_view(spec) == google_view(spec)
    assert google_view(spec)["status"] == "cancelled"
    assert ics_view(spec)["reminder"] is None  # nothing rings for a shift that is off
    with pytest.raises(ValueError, match="cancelled"):
        graph_event(spec)


@settings(max_examples=40, deadline=None)
@given(
    name=st.text(min_size=1, max_size=120),
    notes=st.text(max_size=300),
    zone=st.sampled_from(ZONES),
    start=st.datetimes(
        # Hypothesis takes naive bounds and attaches the zone itself.
        min_value=datetime(2020, 1, 1),  # noqa: DTZ001
        max_value=datetime(2035, 1, 1),  # noqa: DTZ001
        timezones=st.just(UTC),
    ),
    minutes=st.integers(min_value=1, max_value=31 * 24 * 60),
    busy=st.booleans(),
)
def test_formats_agree_for_any_shift(
    name: str, notes: str, zone: str, start: datetime, minutes: int, busy: bool
) -> None:
    """Parity holds for arbitrary text, zones, lengths and sub-second instants."""
    facts: ShiftFacts = replace(
        BASE_FACTS,
        schedule_name=name,
        schedule_zone=zone,
        notes=notes,
        starts_at=start,
        ends_at=start + timedelta(minutes=minutes, microseconds=start.microsecond),
    )
    spec = shift_event(facts, replace(OPTIONS, busy=busy))
    ics, google, graph = ics_view(spec), google_view(spec), graph_view(spec)
    assert ics == google
    assert graph == {k: v for k, v in ics.items() if k not in ("status", "url")}
    assert ics["end"] > ics["start"]
