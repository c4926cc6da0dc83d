"""The one place that decides what a shift looks like as a calendar event."""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from functools import cached_property
from urllib.parse import quote
from zoneinfo import ZoneInfo

__all__ = [
    "RENDER_VERSION",
    "TEAM_UID_PREFIX",
    "Colleague",
    "EventSpec",
    "RenderOptions",
    "ShiftFacts",
    "clean_line",
    "clean_text",
    "clean_url",
    "shift_event",
]

# Bump when the rendered form changes for the same data, so cached bytes and ETags renew.
# 2: control characters removed from text, URLs percent-encoded, instants widened to
# whole seconds. 3: short titles ("On-call · Payments API"), "Cancelled: " on cancelled ones,
# reminders. 4: schedule feeds (a whole schedule, titled by person). 5: who else is on call.
RENDER_VERSION = 5

# A whole schedule's event has a UID of its own, so a calendar that shows both a person's
# feed and their schedule's keeps both events.
TEAM_UID_PREFIX = "schedule-"

# RFC 5545 TEXT allows no control character but HTAB (newlines travel escaped as "\n").
# libical, sabre/vobject, ics-py and ical reject a feed with a raw BEL or NUL in it.
_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f]")
_LINE_BREAK = re.compile(r"\r\n?")
_SECOND = timedelta(seconds=1)
# RFC 3986 reserved characters plus "%" and "~": kept as they are when quoting a URL.
_URL_SAFE = ":/?#[]@!$&'()*+,;=%~"


@dataclass(frozen=True)
class Colleague:
    """Someone else on call in the schedule during a shift, with how to reach them."""

    name: str
    role: str
    email: str = ""


@dataclass(frozen=True)
class ShiftFacts:
    """Everything rendering needs to know about one shift, as plain values.

    `revision` and `updated_at` already fold in the schedule's own revision, so a renamed
    schedule renders as a newer version of each event.
    """

    uid: str
    schedule_key: str
    schedule_name: str
    schedule_zone: str
    schedule_url: str | None
    role: str
    notes: str
    starts_at: datetime
    ends_at: datetime
    revision: int
    created_at: datetime
    updated_at: datetime
    cancelled: bool = False
    handover_from: str | None = None
    handover_to: str | None = None
    also_on_call: tuple[Colleague, ...] = ()
    person: str = ""  # who is on call: shown by schedule feeds, which show everyone's shifts


@dataclass(frozen=True)
class RenderOptions:
    """Per-viewer choices: where links point, whether on-call shows as busy, how long
    before a shift starts (and before it ends, the hand-off) calendars remind, and whether
    the calendar is a whole schedule's (`team`: events titled by person, with UIDs of
    their own)."""

    base_url: str
    busy: bool = False
    reminder_minutes: int | None = None  # before the start; None for no reminder
    # Before the end. Feeds only: Google and Graph remind only before an event's start.
    handoff_reminder_minutes: int | None = None
    team: bool = False


@dataclass(frozen=True)
class EventSpec:
    """An immutable, format-neutral calendar event."""

    uid: str
    summary: str
    description: str
    starts_at: datetime
    ends_at: datetime
    cancelled: bool
    sequence: int
    created: datetime
    last_modified: datetime
    transparent: bool
    url: str
    reminder_minutes: int | None = None  # None: no reminder (never on a cancelled shift)
    handoff_reminder_minutes: int | None = None  # before the end; likewise

    @property
    def status(self) -> str:
        """`confirmed` or `cancelled`, as both iCalendar and Google spell it (any case)."""
        return "cancelled" if self.cancelled else "confirmed"

    @cached_property
    def content_hash(self) -> str:
        """SHA-256 of what a calendar shows (not SEQUENCE or timestamps).

        Push sync records it at write time and compares it later, instead of comparing
        remote read-backs field by field (remote APIs normalise times and bodies).
        """
        shown = {
            "v": RENDER_VERSION,
            "uid": self.uid,
            "summary": self.summary,
            "description": self.description,
            "start": self.starts_at.isoformat(),
            "end": self.ends_at.isoformat(),
            "cancelled": self.cancelled,
            "transparent": self.transparent,
            "url": self.url,
            "reminder": self.reminder_minutes,
        }
        if self.handoff_reminder_minutes is not None:
            # Only when set, so events without one keep the hashes push sync recorded.
            shown["handoff_reminder"] = self.handoff_reminder_minutes
        return hashlib.sha256(json.dumps(shown, sort_keys=True).encode()).hexdigest()

    @cached_property
    def cache_key(self) -> str:
        """A key covering every rendered field, for caches of serialized bytes."""
        stamp = f"{self.sequence}|{self.created.isoformat()}|{self.last_modified.isoformat()}"
        return hashlib.sha256(f"{self.content_hash}|{stamp}".encode()).hexdigest()


def clean_text(text: str) -> str:
    """Make free text safe for every calendar format: CR/CRLF become LF, controls go.

    Tabs and line feeds stay; everything else in C0 (and DEL) is dropped.
    """
    return _CONTROL.sub("", _LINE_BREAK.sub("\n", text))


def clean_line(text: str) -> str:
    """Like `clean_text`, for one-line fields (titles, calendar names): breaks become spaces."""
    return clean_text(text).replace("\n", " ").replace("\t", " ")


def clean_url(url: str) -> str:
    """Percent-encode what may not stand in a URI (spaces, line breaks, non-ASCII).

    iCalendar URI values are not escaped like TEXT: a raw line break would end the line.
    """
    return quote(url.strip(), safe=_URL_SAFE)


def _whole_seconds(start: datetime, end: datetime) -> tuple[datetime, datetime]:
    """Widen [start, end) to whole seconds in UTC.

    Every format drops fractions of a second; widening (not truncating both) keeps the
    end after the start, which RFC 5545 requires of DTEND.
    """
    start, end = start.astimezone(UTC), end.astimezone(UTC)
    floor = start.replace(microsecond=0)
    ceiling = end.replace(microsecond=0) + (_SECOND if end.microsecond else timedelta(0))
    return floor, ceiling


def shift_event(shift: ShiftFacts, options: RenderOptions) -> EventSpec:
    """Describe `shift` as a calendar event for a viewer with `options`."""
    zone = ZoneInfo(shift.schedule_zone)
    starts_at, ends_at = _whole_seconds(shift.starts_at, shift.ends_at)
    return EventSpec(
        # A person may subscribe to their own feed and their schedule's side by side; some
        # apps merge events with one UID across calendars.
        uid=TEAM_UID_PREFIX + shift.uid if options.team else shift.uid,
        summary=clean_line(_team_title(shift) if options.team else _title(shift)),
        description=clean_text(_description(shift, zone, options)),
        starts_at=starts_at,
        ends_at=ends_at,
        cancelled=shift.cancelled,
        sequence=shift.revision,
        created=shift.created_at.astimezone(UTC),
        last_modified=shift.updated_at.astimezone(UTC),
        transparent=not options.busy,
        url=clean_url(_link(shift, options)),
        reminder_minutes=None if shift.cancelled else options.reminder_minutes,
        handoff_reminder_minutes=None if shift.cancelled else options.handoff_reminder_minutes,
    )


def _title(shift: ShiftFacts) -> str:
    """The event's title, schedule first: phones show a title's first twenty-odd characters.

    The usual role, primary, is left to the description; any other stays in the title,
    where it changes what the shift means. Apps that ignore STATUS:CANCELLED (or show
    cancelled events like others) still read that the shift is off.
    """
    title = f"On-call · {shift.schedule_name}"
    if shift.role != "primary":
        title += f" ({shift.role})"
    return f"Cancelled: {title}" if shift.cancelled else title


def _team_title(shift: ShiftFacts) -> str:
    """A schedule feed's title: the calendar is the schedule's, so the person and role."""
    title = f"{shift.person} · {shift.role}"
    return f"Cancelled: {title}" if shift.cancelled else title


def _link(shift: ShiftFacts, options: RenderOptions) -> str:
    """Where the event points: the schedule's own page, else our settings page."""
    return shift.schedule_url or f"{options.base_url}/settings"


def _local(instant: datetime, zone: ZoneInfo) -> str:
    """Format an instant for people, in the schedule's zone, e.g. `Mon 2 Mar 2026 09:00 CET`."""
    local = instant.astimezone(zone)
    return f"{local:%a} {local.day} {local:%b %Y %H:%M} {local.tzname()}"


def _colleague(colleague: Colleague) -> str:
    """One "also on call" line, e.g. `Bob Example (secondary) <bob@example.com>`."""
    contact = f" <{colleague.email}>" if colleague.email else ""
    return f"{colleague.name} ({colleague.role}){contact}"


def _description(shift: ShiftFacts, zone: ZoneInfo, options: RenderOptions) -> str:
    who = f"{shift.person} is " if options.team else ""
    lines = [
        f"{shift.schedule_name}: {who}{shift.role} on-call.",
        f"From {_local(shift.starts_at, zone)}",
        f"to {_local(shift.ends_at, zone)} ({shift.schedule_zone}).",
    ]
    if shift.handover_from:
        lines.append(f"Takes over from {shift.handover_from}.")
    if shift.handover_to:
        lines.append(f"Hands over to {shift.handover_to}.")
    # A schedule's own calendar already shows everyone; a person's needs the names.
    if shift.also_on_call and not options.team:
        lines.append("Also on call:")
        lines += [f"- {_colleague(colleague)}" for colleague in shift.also_on_call]
    if shift.cancelled:
        lines.append("This shift was cancelled.")
    if shift.notes:
        lines += ["", shift.notes]
    lines += ["", f"Schedule: {_link(shift, options)}"]
    return "\n".join(lines)
