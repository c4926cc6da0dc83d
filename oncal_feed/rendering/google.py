"""Google Calendar v3 event JSON for an `EventSpec`."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from oncal_feed.rendering.event import EventSpec

__all__ = ["CONTENT_PROPERTY", "UID_PROPERTY", "google_event"]

# Private extended property that tags every event we write with the shift UID, so we can
# find our own events (orphans, duplicates) with `privateExtendedProperty=` filters.
UID_PROPERTY = "oncalFeedUid"
# And one with the content hash of the write, so an event whose write went unanswered can
# be read back and known (see `RemoteEvent.shows`) instead of being written again.
CONTENT_PROPERTY = "oncalFeedContent"


def _instant(value: datetime) -> dict[str, str]:
    return {"dateTime": value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"), "timeZone": "UTC"}


def google_event(spec: EventSpec) -> dict[str, Any]:
    """Return the body for `events.insert` / `events.update` (the caller adds `id`)."""
    return {
        "summary": spec.summary,
        "description": spec.description,
        "start": _instant(spec.starts_at),
        "end": _instant(spec.ends_at),
        "status": spec.status,
        "transparency": "transparent" if spec.transparent else "opaque",
        "source": {"title": spec.summary, "url": spec.url},
        "extendedProperties": {
            "private": {UID_PROPERTY: spec.uid, CONTENT_PROPERTY: spec.content_hash}
        },
        "reminders": _reminders(spec),
    }


def _reminders(spec: EventSpec) -> dict[str, Any]:
    """The reminder the user chose, or none: never the calendar's default for meetings."""
    if spec.reminder_minutes is None:
        return {"useDefault": False}
    return {
        "useDefault": False,
        "overrides": [{"method": "popup", "minutes": spec.reminder_minutes}],
    }
