"""The `/demo/calendar` page's week and month grids: pure functions of events and a date."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from typing import Literal
from zoneinfo import ZoneInfo

from oncal_feed.providers.demo import DemoEventView

__all__ = ["GridDay", "GridEvent", "View", "fingerprint", "grid", "grid_range"]

View = Literal["week", "month"]


@dataclass(frozen=True)
class GridEvent:
    """An event's part on one day: its local times on that day, and whether it goes on."""

    remote_id: str
    summary: str
    when: str  # "09:00-17:00", "from 09:00", "until 09:00" or "all day"
    continues: bool  # begins before this day or ends after it


@dataclass
class GridDay:
    """One cell of the grid."""

    day: date
    in_range: bool  # False for the days of other months that pad a month's weeks
    today: bool
    events: list[GridEvent] = field(default_factory=list)

    @property
    def label(self) -> str:
        """ "Mon 7 Dec"."""
        return f"{self.day:%a} {self.day.day} {self.day:%b}"


def grid_range(view: View, anchor: date) -> tuple[date, date]:
    """The first and last+1 day shown: the Monday-to-Sunday week(s) covering `anchor`'s
    week, or every week touching `anchor`'s month."""
    if view == "week":
        first = anchor - timedelta(days=anchor.weekday())
        return first, first + timedelta(days=7)
    month_start = anchor.replace(day=1)
    next_month = (month_start + timedelta(days=32)).replace(day=1)
    first = month_start - timedelta(days=month_start.weekday())
    last = next_month + timedelta(days=(7 - next_month.weekday()) % 7)
    return first, last


def _instant(day: date, zone: ZoneInfo) -> datetime:
    return datetime.combine(day, time(), tzinfo=zone).astimezone(UTC)


def grid(
    view: View, anchor: date, zone: ZoneInfo, events: Sequence[DemoEventView], today: date
) -> list[list[GridDay]]:
    """Weeks of days from `grid_range`, each day with the events overlapping it in `zone`."""
    first, last = grid_range(view, anchor)
    weeks: list[list[GridDay]] = []
    day = first
    while day < last:
        in_range = view == "week" or day.month == anchor.month
        cell = GridDay(day, in_range, day == today)
        begins, ends = _instant(day, zone), _instant(day + timedelta(days=1), zone)
        for event in events:
            if event.starts_at >= ends or event.ends_at <= begins:
                continue
            starts_here, ends_here = event.starts_at >= begins, event.ends_at <= ends
            start_text = f"{event.starts_at.astimezone(zone):%H:%M}"
            end_text = f"{event.ends_at.astimezone(zone):%H:%M}"
            if starts_here and ends_here:
                when = f"{start_text}-{end_text}"
            elif starts_here:
                when = f"from {start_text}"
            elif ends_here:
                when = f"until {end_text}"
            else:
                when = "all day"
            continues = not (starts_here and ends_here)
            cell.events.append(GridEvent(event.remote_id, event.summary, when, continues))
        if not weeks or len(weeks[-1]) == 7:
            weeks.append([])
        weeks[-1].append(cell)
        day += timedelta(days=1)
    return weeks


def fingerprint(connected: bool, weeks: Sequence[Sequence[GridDay]]) -> str:
    """A short digest of what the grid shows, so the page swaps its calendar in only when
    that changed (the markup itself differs on every render: each form has a fresh CSRF
    token, and swapping on every poll made the page's elements go stale under the reader)."""
    shown = [connected] + [
        [cell.day.isoformat(), cell.in_range, cell.today]
        + [[e.remote_id, e.summary, e.when, e.continues] for e in cell.events]
        for week in weeks
        for cell in week
    ]
    return hashlib.sha256(json.dumps(shown).encode()).hexdigest()[:16]
