"""iCalendar (RFC 5545 / RFC 7986) serialization of `EventSpec`s, with icalendar."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import timedelta

from icalendar import Alarm, Calendar, Event, vDuration, vText

from oncal_feed.rendering.event import EventSpec, clean_line, clean_text

__all__ = ["PRODID", "calendar_bytes", "calendar_frame", "vevent", "vevent_bytes"]

PRODID = "-//oncal-feed//oncal-feed//EN"
REFRESH_INTERVAL = timedelta(hours=1)
_END = b"END:VCALENDAR\r\n"


def vevent_bytes(spec: EventSpec) -> bytes:
    """Render one event as a folded, CRLF-terminated `BEGIN:VEVENT ... END:VEVENT` block.

    Every value comes from `spec` (UID and DTSTAMP included), so the same spec always
    renders to the same bytes.
    """
    return bytes(vevent(spec).to_ical())


def vevent(spec: EventSpec) -> Event:
    """Build the icalendar `VEVENT` component of one event."""
    event = Event()
    event.add("uid", spec.uid)
    event.add("dtstamp", spec.last_modified)
    event.add("dtstart", spec.starts_at)
    event.add("dtend", spec.ends_at)
    event.add("sequence", spec.sequence)
    event.add("created", spec.created)
    event.add("last-modified", spec.last_modified)
    event.add("summary", spec.summary)
    event.add("description", spec.description)
    event.add("url", spec.url)
    event.add("status", spec.status.upper())
    event.add("transp", "TRANSPARENT" if spec.transparent else "OPAQUE")
    if spec.reminder_minutes is not None:
        # Honoured by Apple Calendar and Thunderbird; Google and Outlook ignore alarms
        # in subscribed calendars (push sync sets their own reminders instead).
        alarm = Alarm()
        alarm.add("action", "DISPLAY")
        alarm.add("description", spec.summary)
        alarm.add("trigger", -timedelta(minutes=spec.reminder_minutes))
        event.add_component(alarm)
    if spec.handoff_reminder_minutes is not None:
        alarm = Alarm()
        alarm.add("action", "DISPLAY")
        alarm.add("description", f"Hand-off: {spec.summary}")
        alarm.add(
            "trigger",
            -timedelta(minutes=spec.handoff_reminder_minutes),
            parameters={"RELATED": "END"},
        )
        event.add_component(alarm)
    return event


def calendar_frame(name: str, description: str) -> tuple[bytes, bytes]:
    """Return the VCALENDAR header (properties, no events) and footer bytes.

    No METHOD: PUBLISH would require an ORGANIZER on every event (RFC 5546), and a
    subscription needs none.

    icalendar 7 types NAME and X- properties as "unknown" and writes them unescaped (a
    comma or backslash in a name makes invalid TEXT; a newline fails an assertion), so
    they are given as `vText`, which escapes like SUMMARY.
    """
    name, description = clean_line(name), clean_text(description)
    calendar = Calendar()
    calendar.add("version", "2.0")
    calendar.add("prodid", PRODID)
    calendar.add("calscale", "GREGORIAN")
    # libical drops a property with an empty value as an error, so empty ones are left out.
    if name:
        calendar.add("name", vText(name))
        calendar.add("x-wr-calname", vText(name))
    if description:
        calendar.add("description", vText(description))
        calendar.add("x-wr-caldesc", vText(description))
    calendar.add("refresh-interval", vDuration(REFRESH_INTERVAL), parameters={"VALUE": "DURATION"})
    calendar.add("x-published-ttl", vDuration(REFRESH_INTERVAL))
    whole = calendar.to_ical()
    assert whole.endswith(_END)
    return whole[: -len(_END)], _END


def calendar_bytes(name: str, description: str, events: Iterable[bytes]) -> bytes:
    """Assemble a whole calendar from a frame and already rendered VEVENT blocks."""
    header, footer = calendar_frame(name, description)
    return b"".join([header, *events, footer])
