"""Microsoft Graph event JSON for an `EventSpec`."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from oncal_feed.rendering.event import EventSpec

__all__ = ["CONTENT_PROPERTY_ID", "UID_PROPERTY_ID", "graph_event"]

# A single-value extended property carrying the shift UID; the GUID is ours, fixed forever,
# so `$filter=singleValueExtendedProperties/Any(...)` finds every event we ever wrote.
UID_PROPERTY_ID = "String {6f1c3b0e-6a43-4d6b-9a77-0c2f1d0e5a11} Name oncalFeedUid"
# And one with the content hash of the write, so an event whose write went unanswered can
# be read back and known (see `RemoteEvent.shows`) instead of being written again.
CONTENT_PROPERTY_ID = "String {6f1c3b0e-6a43-4d6b-9a77-0c2f1d0e5a11} Name oncalFeedContent"


def _instant(value: datetime) -> dict[str, str]:
    # Graph takes a wall time plus a zone name; UTC is accepted everywhere.
    return {"dateTime": value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S"), "timeZone": "UTC"}


def graph_event(spec: EventSpec) -> dict[str, Any]:
    """Return the body for creating or patching an event (the caller adds `transactionId`).

    Graph has no writable status: a cancelled shift is deleted from the calendar, never
    written, so asking for one is a programming error.
    """
    if spec.cancelled:
        raise ValueError("a cancelled event is deleted from Graph, not written")
    return {
        "subject": spec.summary,
        "body": {"contentType": "text", "content": spec.description},
        "start": _instant(spec.starts_at),
        "end": _instant(spec.ends_at),
        "showAs": "free" if spec.transparent else "busy",
        # Outlook's default is a reminder 15 minutes before: off unless the user chose one.
        "isReminderOn": spec.reminder_minutes is not None,
        "reminderMinutesBeforeStart": spec.reminder_minutes or 0,
        "singleValueExtendedProperties": [
            {"id": UID_PROPERTY_ID, "value": spec.uid},
            {"id": CONTENT_PROPERTY_ID, "value": spec.content_hash},
        ],
    }
