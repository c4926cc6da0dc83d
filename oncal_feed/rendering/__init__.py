"""Shift-to-event rendering: pure functions, no Flask, SQLAlchemy or HTTP.

`shift_event()` turns one shift into an `EventSpec`; `ics`, `google` and `graph` turn
that one description into each calendar's format, so all three always say the same thing.

May import: nothing of the package (icalendar and the standard library only).
"""

from oncal_feed.rendering.event import (
    Colleague,
    EventSpec,
    RenderOptions,
    ShiftFacts,
    shift_event,
)

__all__ = ["Colleague", "EventSpec", "RenderOptions", "ShiftFacts", "shift_event"]
