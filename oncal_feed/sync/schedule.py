"""When a connection syncs: its window, back-off after failures, the next window move and
the daily full check. Pure functions of the time (and a connection's columns).

Imports the models only (for `full_check_due`); nothing else of `sync`.
"""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta

from oncal_feed.models import CalendarConnection

__all__ = [
    "BACKOFF_BASE",
    "BACKOFF_CAP",
    "BACK_DAYS",
    "FULL_CHECK_INTERVAL",
    "LATE_WRITE_RECHECK",
    "MAX_IDLE_PASSES",
    "NEXT_PASS_PAUSE",
    "PROGRESS_RETRY",
    "WINDOW_MOVE_SPREAD",
    "backoff_delay",
    "full_check_due",
    "full_check_stamp",
    "next_pass_delay",
    "next_window_move",
    "pending_recheck",
    "sync_window",
]

# The window: from a week back to `window_days` ahead, on whole UTC days so that it moves
# once a day (and the sweep re-syncs once a day for it, not every minute).
BACK_DAYS = 7
FULL_CHECK_INTERVAL = timedelta(days=1)
# Google's documented algorithm for 403/429 throttling and 5xx: 1 s, 2 s, 4 s ... plus jitter.
BACKOFF_BASE = timedelta(seconds=1)
BACKOFF_CAP = timedelta(hours=1)
# A run that landed some writes but not all retries the rest this soon (or at Retry-After).
PROGRESS_RETRY = timedelta(seconds=1)
# Within a run, a pass that landed something but met faults (no throttle) comes back after
# this short breath: the failed parts were planned afresh from the records, and a server
# that did not ask us to slow down need not wait a whole second.
NEXT_PASS_PAUSE = timedelta(seconds=0.25)
# A run's passes in a row that land nothing before it gives up and backs off between runs.
MAX_IDLE_PASSES = 2
# An insert whose answer was lost and that a later read did not find may still land (a call
# held past our timeout is processed late): when one is given up on, the calendar is listed
# again this long after, rather than only at the next daily check.
LATE_WRITE_RECHECK = timedelta(seconds=10)
# The daily window move of all connections is spread over this span, not all at midnight.
WINDOW_MOVE_SPREAD = timedelta(hours=1)

# Jitter needs no cryptographic strength; a module-level generator is seedable in tests.
_jitter = random.Random()  # noqa: S311


def _day_start(instant: datetime) -> datetime:
    return instant.astimezone(UTC).replace(hour=0, minute=0, second=0, microsecond=0)


def sync_window(now: datetime, window_days: int) -> tuple[datetime, datetime]:
    """Return the [start, end) a connection shows at `now`: 7 days back to N days ahead.

    Both ends sit on UTC midnight (the end one day further out), so the window always
    covers [now - 7 days, now + N days) and only moves once a day.
    """
    today = _day_start(now)
    return today - timedelta(days=BACK_DAYS), today + timedelta(days=window_days + 1)


def next_window_move(now: datetime, connection_id: int) -> datetime:
    """Return when the connection's window next moves, spread over the first hour of a day."""
    spread = (connection_id * 2_654_435_761) % int(WINDOW_MOVE_SPREAD.total_seconds())
    return _day_start(now) + timedelta(days=1, seconds=spread)


def backoff_delay(
    failures: int,
    retry_after: float | None = None,
    rng: random.Random | None = None,
    *,
    base: timedelta = BACKOFF_BASE,
) -> timedelta:
    """Return how long to wait after the `failures`-th failure in a row.

    Exponential from `base` (1 s), capped at an hour, with "full jitter" in its upper half
    (so a fleet of connections that failed together does not come back together), and
    never sooner than the server's `Retry-After`.
    """
    rng = rng or _jitter
    exponent = min(max(failures - 1, 0), 20)
    ceiling = min(BACKOFF_CAP, base * (1 << exponent))
    delay = ceiling * rng.uniform(0.5, 1.0)
    if retry_after is not None and retry_after > 0:
        delay = max(delay, timedelta(seconds=retry_after))
    return delay


def next_pass_delay(idle_passes: int, throttled: bool, retry_after: float = 0) -> timedelta | None:
    """Return how long a run pauses before its next pass, or None when it should stop.

    `idle_passes` counts the passes in a row that landed nothing (0: the last one landed
    something). After progress the run comes back almost at once (`NEXT_PASS_PAUSE`), or,
    when it was throttled, after `PROGRESS_RETRY` or the server's Retry-After, whichever is
    later; after a pass that landed nothing it backs off, at most `MAX_IDLE_PASSES` times.
    """
    if idle_passes == 0:
        if not throttled:
            return NEXT_PASS_PAUSE
        return max(PROGRESS_RETRY, timedelta(seconds=retry_after))
    if idle_passes <= MAX_IDLE_PASSES:
        return backoff_delay(idle_passes, retry_after or None)
    return None


def full_check_stamp(due: datetime) -> datetime:
    """The `last_full_check_at` that makes the next full check due at `due`.

    How a late-write recheck is asked for: the daily check, brought forward.
    """
    return due - FULL_CHECK_INTERVAL


def pending_recheck(connection: CalendarConnection, now: datetime) -> datetime | None:
    """The late-write recheck still ahead (within `LATE_WRITE_RECHECK` of `now`), or None.

    A run that gives up on an insert moves the connection's full check that close (in
    the transaction that drops the record); when that run's worker dies before it can
    ask for the recheck, the run that takes the connection over asks for it instead.
    """
    last = connection.last_full_check_at
    if last is None:
        return None
    due = last + FULL_CHECK_INTERVAL
    return due if now < due <= now + LATE_WRITE_RECHECK else None


def full_check_due(connection: CalendarConnection, now: datetime) -> bool:
    """Whether the connection's last listing of the remote calendar is a day old (or never was)."""
    last = connection.last_full_check_at
    return last is None or now - last >= FULL_CHECK_INTERVAL
