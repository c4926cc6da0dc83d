"""Reading an iCalendar feed into occurrences: PURE (bytes in, occurrences out; no I/O).

icalendar parses (custom VTIMEZONEs and Windows zone names such as Outlook writes
included), x-wr-timezone turns Google's `X-WR-TIMEZONE` calendars into standard ones, and
recurring-ical-events expands RRULE/RDATE/EXDATE and applies RECURRENCE-ID overrides.
What is left here is the decision of what a broken feed looks like, and turning dates and
floating times into instants in the schedule's zone.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import UTC, date, datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import icalendar
import recurring_ical_events
import x_wr_timezone

from oncal_feed.sources.errors import FeedRejected
from oncal_feed.validation import MAX_SHIFT_LENGTH

__all__ = ["Occurrence", "Reading", "looks_like_html", "read_calendar"]

_HTML_STARTS = (b"<!doctype", b"<html", b"<head", b"<body", b"<?xml")


@dataclass(frozen=True)
class Occurrence:
    """One occurrence of one event (or one PagerDuty on-call entry), with instants in UTC.

    `key` identifies it in its source across polls: the UID and RECURRENCE-ID (the original
    start of the occurrence), so a moved occurrence keeps its key. `emails` are its
    ATTENDEE and ORGANIZER addresses, in that order.
    """

    key: str
    starts_at: datetime
    ends_at: datetime
    summary: str = ""
    description: str = ""
    emails: tuple[str, ...] = ()
    role: str | None = None

    def as_json(self) -> dict[str, Any]:
        """The occurrence as JSON (kept as a source's last good state)."""
        return {
            "key": self.key,
            "starts_at": self.starts_at.isoformat(),
            "ends_at": self.ends_at.isoformat(),
            "summary": self.summary,
            "description": self.description,
            "emails": list(self.emails),
            "role": self.role,
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Occurrence:
        """Read back what `as_json` wrote."""
        return cls(
            key=str(data["key"]),
            starts_at=datetime.fromisoformat(data["starts_at"]),
            ends_at=datetime.fromisoformat(data["ends_at"]),
            summary=str(data.get("summary") or ""),
            description=str(data.get("description") or ""),
            emails=tuple(data.get("emails") or ()),
            role=data.get("role"),
        )


@dataclass(frozen=True)
class Reading:
    """What a feed held in the window: its occurrences, how many it skipped as unusable,
    and the schedule's page at the source when the source names one (PagerDuty does)."""

    occurrences: list[Occurrence]
    skipped: int = 0
    link: str | None = None


def looks_like_html(body: bytes) -> bool:
    """Tell a web page (a sign-in page, an error page) from a calendar."""
    head = body[:512].lstrip(b"\xef\xbb\xbf \t\r\n").lower()
    return head.startswith(_HTML_STARTS)


def read_calendar(body: bytes, zone: str, window_start: datetime, window_end: datetime) -> Reading:
    """Return the feed's occurrences overlapping [start, end); raise `FeedRejected` if broken.

    Dates and floating times are read in the calendar's X-WR-TIMEZONE, else in `zone`
    (the schedule's).
    Cancelled events and occurrences that end before they start or last longer than a
    shift may are skipped (and counted).
    """
    if looks_like_html(body):
        raise FeedRejected(
            "The feed answered a web page instead of a calendar (a sign-in page, or an "
            "expired link?). Nothing was changed."
        )
    text = body.lstrip(b"\xef\xbb\xbf \t\r\n")
    if not text.upper().startswith(b"BEGIN:VCALENDAR"):
        raise FeedRejected("The answer is not an iCalendar feed. Nothing was changed.")
    if not text.rstrip().upper().endswith(b"END:VCALENDAR"):
        raise FeedRejected("The feed was cut off before its end. Nothing was changed.")
    padded = (window_start - timedelta(days=1), window_end + timedelta(days=1))
    try:
        parsed = icalendar.Calendar.from_ical(_without_unread(text))
        zone = _calendar_zone(parsed, zone)
        tz = ZoneInfo(zone)
        series = _series_uids(parsed)
        singles, recurring = _split(parsed, series)
        # recurring-ical-events costs as much again as parsing, so only the series go
        # through it; a single event is its own only occurrence.
        found = _expand(parsed, recurring, *padded) if recurring else []
    except Exception:
        # icalendar and recurring-ical-events raise many kinds (ValueError, KeyError,
        # their own); for the status all say the same.
        raise FeedRejected(
            "The feed could not be read as iCalendar. Nothing was changed."
        ) from None
    occurrences: list[Occurrence] = []
    keys: set[str] = set()
    skipped = 0
    for event in [*found, *singles]:
        if str(event.get("STATUS", "")).upper() == "CANCELLED":
            continue
        try:
            occurrence = _occurrence(event, tz, series)
        except (KeyError, ValueError, TypeError):
            skipped += 1
            continue
        if occurrence is None:
            skipped += 1
            continue
        if occurrence.key in keys:
            # Two events with one UID outside a series (not valid, but seen): tell them
            # apart by start rather than lose one.
            stamp = occurrence.starts_at.strftime("%Y%m%dT%H%M%SZ")
            occurrence = replace(occurrence, key=f"{occurrence.key}\n{stamp}")
        keys.add(occurrence.key)
        if occurrence.starts_at < window_end and occurrence.ends_at > window_start:
            occurrences.append(occurrence)
    occurrences.sort(key=lambda o: (o.starts_at, o.key))
    return Reading(occurrences, skipped)


# Event properties nothing here reads. icalendar parses every property it is given
# (the parse is most of a big feed's cost), so these lines are left out beforehand.
_UNREAD = frozenset(
    b"DTSTAMP CREATED LAST-MODIFIED SEQUENCE TRANSP CLASS PRIORITY LOCATION URL GEO".split()
)


def _without_unread(text: bytes) -> bytes:
    """The feed without the VEVENT properties in `_UNREAD` and X- ones (folded lines too)."""
    kept: list[bytes] = []
    stack: list[bytes] = []
    dropping = False
    for line in text.split(b"\n"):
        if line[:1] in (b" ", b"\t"):
            # A folded continuation belongs to the line before it.
            if not dropping:
                kept.append(line)
            continue
        name = line.split(b":", 1)[0].split(b";", 1)[0].strip().upper()
        if name == b"BEGIN":
            stack.append(line.split(b":", 1)[-1].strip().upper())
        elif name == b"END" and stack:
            stack.pop()
        dropping = (
            bool(stack) and stack[-1] == b"VEVENT" and (name in _UNREAD or name.startswith(b"X-"))
        )
        if not dropping:
            kept.append(line)
    return b"\n".join(kept)


def _calendar_zone(calendar: icalendar.Calendar, fallback: str) -> str:
    """The zone the calendar's dates mean: its X-WR-TIMEZONE (Google writes it) if known."""
    named = str(calendar.get("X-WR-TIMEZONE", "")).strip()
    try:
        ZoneInfo(named)
    except (ValueError, ZoneInfoNotFoundError):
        return fallback
    return named if named else fallback


def _instant(value: date | datetime, tz: ZoneInfo) -> datetime:
    """A DATE, floating or zoned DATE-TIME as a UTC instant (dates start at midnight in tz)."""
    if not isinstance(value, datetime):
        value = datetime.combine(value, time(0))
    if value.tzinfo is None:
        value = value.replace(tzinfo=tz)
    return value.astimezone(UTC)


def _recurrence_text(value: Any) -> str:
    """RECURRENCE-ID as text that does not depend on how the feed spells its zone."""
    if isinstance(value, datetime) and value.tzinfo is not None:
        return value.astimezone(UTC).strftime("%Y%m%dT%H%M%SZ")
    if isinstance(value, date | datetime):
        return value.isoformat()
    return ""


def _emails(event: icalendar.cal.Component) -> tuple[str, ...]:
    values: list[Any] = []
    for name in ("ATTENDEE", "ORGANIZER"):
        found = event.get(name)
        if found is None:
            continue
        values.extend(found if isinstance(found, list) else [found])
    emails = []
    for value in values:
        text = str(value).strip()
        if text.lower().startswith("mailto:"):
            text = text[7:]
        if "@" in text:
            emails.append(text.lower())
    return tuple(emails)


def _split(
    calendar: icalendar.Calendar, series: set[str]
) -> tuple[list[icalendar.cal.Component], list[icalendar.cal.Component]]:
    """The calendar's VEVENTs: (single events, members of a series).

    A member is any event whose UID has a rule, extra dates or an override, so an
    override and the rule it overrides are expanded together.
    """
    singles, recurring = [], []
    for event in calendar.walk("VEVENT"):
        if str(event.get("UID", "")).strip() in series:
            recurring.append(event)
        else:
            singles.append(event)
    return singles, recurring


def _expand(
    calendar: icalendar.Calendar,
    events: list[icalendar.cal.Component],
    start: datetime,
    end: datetime,
) -> list[icalendar.cal.Component]:
    """Expand the series `events` between start and end with recurring-ical-events.

    They go in a calendar of their own with the feed's calendar properties (X-WR-TIMEZONE)
    and VTIMEZONEs, which is all the expansion reads besides the events.
    """
    subset = icalendar.Calendar()
    for name, value in calendar.property_items(recursive=False):
        if name not in ("BEGIN", "END"):
            subset.add(name, value)
    subset.subcomponents.extend(calendar.walk("VTIMEZONE"))
    subset.subcomponents.extend(events)
    standard = x_wr_timezone.to_standard(subset)
    return list(recurring_ical_events.of(standard, skip_bad_series=True).between(start, end))


def _series_uids(calendar: icalendar.Calendar) -> set[str]:
    """UIDs of recurring events (a rule, extra dates, or overridden occurrences)."""
    return {
        str(event.get("UID", "")).strip()
        for event in calendar.walk("VEVENT")
        if "RRULE" in event or "RDATE" in event or "RECURRENCE-ID" in event
    }


def _occurrence(
    event: icalendar.cal.Component, tz: ZoneInfo, series: set[str]
) -> Occurrence | None:
    """Build one occurrence, or None when its times are unusable for a shift.

    A single event's key is its UID alone, so moving it is an update; an occurrence of a
    series adds its RECURRENCE-ID (its original start), which an override keeps.
    """
    start = _instant(event.decoded("DTSTART"), tz)
    if "DTEND" in event:
        end = _instant(event.decoded("DTEND"), tz)
    elif "DURATION" in event:
        end = start + event.decoded("DURATION")
    else:
        return None
    if end <= start or end - start > MAX_SHIFT_LENGTH:
        return None
    uid = str(event.get("UID", "")).strip()
    key = uid
    if uid in series or not uid:
        recurrence = event.decoded("RECURRENCE-ID") if "RECURRENCE-ID" in event else start
        key = f"{uid}\n{_recurrence_text(recurrence)}"
    return Occurrence(
        key=key,
        starts_at=start,
        ends_at=end,
        summary=str(event.get("SUMMARY", "")).strip(),
        description=str(event.get("DESCRIPTION", "")).strip(),
        emails=_emails(event),
    )
