"""The shift store: queries and writes of schedules and shifts. No Flask here.

Every write returns a `WriteResult` naming the users whose calendars it touched; the
caller commits and then nudges push sync for those users. Writes bump a shift's
`revision` only when what a calendar would show really changes, so the same PUT twice
changes nothing.
"""

from __future__ import annotations

from bisect import bisect_left, bisect_right
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from sqlalchemy import select, update
from sqlalchemy.orm import Session, contains_eager, joinedload

from oncal_feed.errors import FieldError, NotFound, ValidationError
from oncal_feed.models import Schedule, Shift, User
from oncal_feed.rendering import ShiftFacts
from oncal_feed.validation import MAX_SHIFT_LENGTH, ScheduleInput, ShiftInput

__all__ = [
    "HANDOVER_TOLERANCE",
    "WriteResult",
    "delete_shift",
    "get_schedule",
    "get_shift",
    "import_window",
    "shift_facts",
    "shifts_for_user",
    "upsert_schedule",
    "upsert_shift",
]

# Two shifts of one schedule and role "hand over" when one ends within this of the other's start.
HANDOVER_TOLERANCE = timedelta(hours=1)
# Neighbours of a shift start at most this far away; bounds every index range scan.
_NEIGHBOUR_REACH = MAX_SHIFT_LENGTH + HANDOVER_TOLERANCE


@dataclass
class WriteResult:
    """What a write did: counts, and the users whose calendars must be refreshed."""

    created: int = 0
    updated: int = 0
    unchanged: int = 0
    deleted: int = 0
    touched_user_ids: set[int] = field(default_factory=set)
    # Old and new [start, end) of every shift written: where hand-overs may have changed.
    changed_spans: list[tuple[datetime, datetime]] = field(default_factory=list, repr=False)
    # Shifts whose revision this write already set: a hand-over refresh in the same
    # write must not raise it a second time (one write, one new revision at most).
    # Keyed by id() and holding the object itself: the session's identity map keeps clean
    # objects only weakly, and a collected object's id() could be reused.
    revised: dict[int, Shift] = field(default_factory=dict, repr=False)

    def merge(self, other: WriteResult) -> WriteResult:
        """Add another write's counts and touched users to this one; return self."""
        self.created += other.created
        self.updated += other.updated
        self.unchanged += other.unchanged
        self.deleted += other.deleted
        self.touched_user_ids |= other.touched_user_ids
        return self

    def as_dict(self) -> dict[str, int]:
        """Return the counts (for API responses and CLI output)."""
        return {
            "created": self.created,
            "updated": self.updated,
            "unchanged": self.unchanged,
            "deleted": self.deleted,
        }


def _content(shift: Shift) -> tuple[object, ...]:
    """The fields a calendar shows; a change here is a new revision."""
    return (
        shift.user_id,
        shift.starts_at,
        shift.ends_at,
        shift.role,
        shift.notes,
        shift.handover_from,
        shift.handover_to,
        shift.deleted_at is None,
    )


def get_schedule(session: Session, key: str) -> Schedule:
    """Return the schedule with `key` or raise `NotFound`."""
    schedule = session.scalar(select(Schedule).where(Schedule.key == key))
    if schedule is None:
        raise NotFound("schedule", key)
    return schedule


def get_shift(session: Session, schedule: Schedule, external_id: str) -> Shift:
    """Return the schedule's shift with `external_id` (tombstones too) or raise `NotFound`."""
    shift = session.scalar(
        select(Shift)
        .options(joinedload(Shift.user), joinedload(Shift.schedule))
        .where(Shift.schedule_id == schedule.id, Shift.external_id == external_id)
    )
    if shift is None:
        raise NotFound("shift", external_id)
    return shift


def upsert_schedule(
    session: Session, key: str, data: ScheduleInput, now: datetime
) -> tuple[Schedule, bool, WriteResult]:
    """Create or update the schedule `key`; return it, whether it was created, and what changed.

    A new name or zone changes every event of the schedule, so it touches all its users.
    """
    result = WriteResult()
    schedule = session.scalar(select(Schedule).where(Schedule.key == key))
    if schedule is None:
        schedule = Schedule(
            key=key, name=data.name, time_zone=data.time_zone, url=data.url,
            created_at=now, updated_at=now,
        )  # fmt: skip
        session.add(schedule)
        session.flush()
        result.created = 1
        return schedule, True, result
    if (schedule.name, schedule.time_zone, schedule.url) == (data.name, data.time_zone, data.url):
        result.unchanged = 1
        return schedule, False, result
    schedule.name, schedule.time_zone, schedule.url = data.name, data.time_zone, data.url
    schedule.revision += 1
    schedule.updated_at = now
    result.updated = 1
    result.touched_user_ids.update(
        session.scalars(select(Shift.user_id).where(Shift.schedule_id == schedule.id).distinct())
    )
    _bump_calendar_versions(session, result.touched_user_ids, now)
    return schedule, False, result


def _users_by_email(
    session: Session, items: Sequence[ShiftInput], *, indexed: bool
) -> dict[str, User]:
    """Map each item's email to its user; `indexed` names fields `[i].user_email` (lists)."""
    emails = {item.user_email for item in items}
    users = session.scalars(select(User).where(User.email.in_(emails))).all() if emails else []
    found = {user.email: user for user in users}
    missing = [
        FieldError(
            f"[{index}].user_email" if indexed else "user_email", "no user has this email address"
        )
        for index, item in enumerate(items)
        if item.user_email not in found
    ]
    if missing:
        raise ValidationError(missing)
    return found


def upsert_shift(
    session: Session, schedule: Schedule, data: ShiftInput, now: datetime
) -> WriteResult:
    """Create or update one shift by (schedule, external id); revive it if tombstoned."""
    users = _users_by_email(session, [data], indexed=False)
    result = WriteResult()
    existing = session.scalar(
        select(Shift).where(Shift.schedule_id == schedule.id, Shift.external_id == data.external_id)
    )
    _apply(session, schedule, existing, data, users[data.user_email], now, result)
    _refresh_neighbourhood(session, schedule, result, now)
    return result


def delete_shift(
    session: Session, schedule: Schedule, external_id: str, now: datetime
) -> WriteResult:
    """Tombstone a shift; deleting an already deleted shift changes nothing.

    Raises `NotFound` when the schedule never had a shift with this external id.
    """
    shift = session.scalar(
        select(Shift).where(Shift.schedule_id == schedule.id, Shift.external_id == external_id)
    )
    if shift is None:
        raise NotFound("shift", external_id)
    result = WriteResult()
    if shift.deleted_at is not None:
        result.unchanged = 1
        return result
    _tombstone(shift, now, result)
    result.touched_user_ids.add(shift.user_id)
    result.changed_spans.append((shift.starts_at, shift.ends_at))
    _refresh_neighbourhood(session, schedule, result, now)
    return result


def import_window(
    session: Session,
    schedule: Schedule,
    window_start: datetime,
    window_end: datetime,
    items: Sequence[ShiftInput],
    now: datetime,
) -> WriteResult:
    """Make `items` the complete set of the schedule's shifts overlapping [start, end).

    Upserts the given shifts and tombstones every other live shift of the schedule that
    overlaps the window. The caller's transaction makes it all-or-nothing.
    """
    problems: list[FieldError] = []
    seen: set[str] = set()
    for index, item in enumerate(items):
        if item.external_id in seen:
            problems.append(FieldError(f"[{index}].external_id", "appears more than once"))
        seen.add(item.external_id)
        if not (item.starts_at < window_end and item.ends_at > window_start):
            problems.append(FieldError(f"[{index}].starts_at", "shift lies outside the window"))
    if problems:
        raise ValidationError(problems)
    users = _users_by_email(session, items, indexed=True)

    result = WriteResult()
    existing = {
        shift.external_id: shift
        for shift in session.scalars(
            select(Shift).where(
                Shift.schedule_id == schedule.id,
                Shift.starts_at >= window_start - MAX_SHIFT_LENGTH,
                Shift.starts_at < window_end,
            )
        )
    }
    missing_ids = seen - set(existing)
    if missing_ids:
        # Shifts that start outside the window but are named in the import.
        for shift in session.scalars(
            select(Shift).where(
                Shift.schedule_id == schedule.id, Shift.external_id.in_(missing_ids)
            )
        ):
            existing[shift.external_id] = shift
    for item in items:
        _apply(
            session,
            schedule,
            existing.get(item.external_id),
            item,
            users[item.user_email],
            now,
            result,
        )
    for external_id, shift in existing.items():
        overlaps = shift.starts_at < window_end and shift.ends_at > window_start
        if external_id not in seen and overlaps and shift.deleted_at is None:
            _tombstone(shift, now, result)
            result.touched_user_ids.add(shift.user_id)
            result.changed_spans.append((shift.starts_at, shift.ends_at))
    _refresh_neighbourhood(session, schedule, result, now)
    return result


def _apply(
    session: Session,
    schedule: Schedule,
    shift: Shift | None,
    data: ShiftInput,
    user: User,
    now: datetime,
    result: WriteResult,
) -> None:
    """Create or update one shift row in memory, counting what happened."""
    if shift is None:
        shift = Shift(
            schedule_id=schedule.id, external_id=data.external_id, user_id=user.id,
            starts_at=data.starts_at, ends_at=data.ends_at, role=data.role, notes=data.notes,
            revision=1, created_at=now, updated_at=now,
        )  # fmt: skip
        session.add(shift)
        result.created += 1
        result.touched_user_ids.add(user.id)
        result.changed_spans.append((data.starts_at, data.ends_at))
        result.revised[id(shift)] = shift
        return
    before = _content(shift)
    old_user_id, old_span = shift.user_id, (shift.starts_at, shift.ends_at)
    shift.user_id, shift.starts_at, shift.ends_at = user.id, data.starts_at, data.ends_at
    shift.role, shift.notes, shift.deleted_at = data.role, data.notes, None
    if _content(shift) == before:
        result.unchanged += 1
        return
    shift.revision += 1
    shift.updated_at = now
    result.updated += 1
    result.touched_user_ids.update({old_user_id, user.id})
    result.revised[id(shift)] = shift
    result.changed_spans.extend([old_span, (data.starts_at, data.ends_at)])


def _tombstone(shift: Shift, now: datetime, result: WriteResult) -> None:
    shift.deleted_at = now
    shift.revision += 1
    shift.updated_at = now
    result.deleted += 1
    result.revised[id(shift)] = shift


def _refresh_neighbourhood(
    session: Session, schedule: Schedule, result: WriteResult, now: datetime
) -> None:
    """Recompute hand-over names around the changed spans, then bump calendar versions."""
    session.flush()
    if result.changed_spans:
        low = min(start for start, _ in result.changed_spans)
        high = max(end for _, end in result.changed_spans)
        _refresh_handovers(session, schedule, low, high, now, result)
    _bump_calendar_versions(session, result.touched_user_ids, now)


def _refresh_handovers(
    session: Session,
    schedule: Schedule,
    low: datetime,
    high: datetime,
    now: datetime,
    result: WriteResult,
) -> None:
    """Set `handover_from`/`handover_to` on the live shifts starting in [low - reach, high + reach].

    Shifts are read from twice that reach, so every shift updated has all its possible
    neighbours in hand.
    """
    rows = session.execute(
        select(Shift, User.display_name)
        .join(User, User.id == Shift.user_id)
        .where(
            Shift.schedule_id == schedule.id,
            Shift.deleted_at.is_(None),
            Shift.starts_at >= low - 2 * _NEIGHBOUR_REACH,
            Shift.starts_at < high + 2 * _NEIGHBOUR_REACH,
        )
        .order_by(Shift.starts_at, Shift.id)
    ).all()
    by_role: dict[str, list[tuple[Shift, str]]] = defaultdict(list)
    for shift, name in rows:
        by_role[shift.role].append((shift, name))
    for group in by_role.values():
        starts = [shift.starts_at for shift, _ in group]
        for shift, _name in group:
            if not (low - _NEIGHBOUR_REACH <= shift.starts_at < high + _NEIGHBOUR_REACH):
                continue
            before = _content(shift)
            shift.handover_from = _incoming_name(group, starts, shift)
            shift.handover_to = _outgoing_name(group, starts, shift)
            if _content(shift) != before:
                if id(shift) not in result.revised:
                    shift.revision += 1
                    shift.updated_at = now
                    result.revised[id(shift)] = shift
                result.touched_user_ids.add(shift.user_id)


def _incoming_name(
    group: list[tuple[Shift, str]], starts: list[datetime], shift: Shift
) -> str | None:
    """Name whoever hands over to `shift`: the latest-starting earlier shift ending near its start.

    `group` is sorted by start and `starts` holds those starts, for bisecting.
    """
    first = bisect_left(starts, shift.starts_at - _NEIGHBOUR_REACH)
    last = bisect_left(starts, shift.starts_at)
    for other, name in reversed(group[first:last]):
        if abs(other.ends_at - shift.starts_at) <= HANDOVER_TOLERANCE:
            return None if other.user_id == shift.user_id else name
    return None


def _outgoing_name(
    group: list[tuple[Shift, str]], starts: list[datetime], shift: Shift
) -> str | None:
    """Name whoever takes over from `shift`: the earliest later shift starting near its end."""
    first = bisect_right(starts, shift.starts_at)
    last = bisect_right(starts, shift.ends_at + HANDOVER_TOLERANCE)
    for other, name in group[first:last]:
        if abs(other.starts_at - shift.ends_at) <= HANDOVER_TOLERANCE:
            return None if other.user_id == shift.user_id else name
    return None


def refresh_handovers_for_user(
    session: Session, user_id: int, since: datetime, now: datetime
) -> WriteResult:
    """Re-render hand-over names after a user's display name changed.

    Only shifts from `since` on are refreshed; history keeps the name it was shown with.
    """
    result = WriteResult()
    schedule_ids = session.scalars(
        select(Shift.schedule_id).where(Shift.user_id == user_id, Shift.ends_at > since).distinct()
    ).all()
    for schedule in session.scalars(select(Schedule).where(Schedule.id.in_(schedule_ids))):
        bounds = session.execute(
            select(Shift.starts_at, Shift.ends_at).where(
                Shift.schedule_id == schedule.id, Shift.user_id == user_id, Shift.ends_at > since
            )
        ).all()
        low = min(start for start, _ in bounds)
        high = max(end for _, end in bounds)
        _refresh_handovers(session, schedule, low, high, now, result)
    _bump_calendar_versions(session, result.touched_user_ids, now)
    return result


def _bump_calendar_versions(session: Session, user_ids: set[int], now: datetime) -> None:
    if user_ids:
        session.execute(
            update(User)
            .where(User.id.in_(user_ids))
            .values(calendar_version=User.calendar_version + 1, calendar_changed_at=now)
            .execution_options(synchronize_session=False)
        )


def shifts_for_user(
    session: Session,
    user_id: int,
    window_start: datetime,
    window_end: datetime,
    *,
    schedule_keys: Sequence[str] | None = None,
    deleted_since: datetime | None = None,
) -> list[Shift]:
    """Return the user's shifts overlapping [start, end), ordered by start, schedule loaded.

    Live shifts only, unless `deleted_since` is given: then tombstones deleted at or after
    that instant are included too. The range on `starts_at` (the window widened by the
    longest possible shift) keeps this an index range scan on (user_id, starts_at).
    """
    # One join both loads each shift's schedule and, when asked, filters on its key.
    query = (
        select(Shift)
        .join(Schedule, Schedule.id == Shift.schedule_id)
        .options(contains_eager(Shift.schedule))
        .where(
            Shift.user_id == user_id,
            Shift.starts_at >= window_start - MAX_SHIFT_LENGTH,
            Shift.starts_at < window_end,
            Shift.ends_at > window_start,
        )
        .order_by(Shift.starts_at, Shift.id)
    )
    if deleted_since is None:
        query = query.where(Shift.deleted_at.is_(None))
    else:
        query = query.where((Shift.deleted_at.is_(None)) | (Shift.deleted_at >= deleted_since))
    if schedule_keys:
        query = query.where(Schedule.key.in_(schedule_keys))
    return list(session.scalars(query))


def shift_facts(shift: Shift) -> ShiftFacts:
    """Turn a shift row (with its schedule loaded) into the plain facts rendering needs.

    The schedule's revision and `updated_at` are folded in, so renaming a schedule makes
    every one of its events a newer version (higher SEQUENCE, later DTSTAMP) without
    rewriting the shift rows. Both revisions start at 1, hence the `- 1`.
    """
    schedule = shift.schedule
    return ShiftFacts(
        uid=shift.uid,
        schedule_key=schedule.key,
        schedule_name=schedule.name,
        schedule_zone=schedule.time_zone,
        schedule_url=schedule.url,
        role=shift.role,
        notes=shift.notes,
        starts_at=shift.starts_at,
        ends_at=shift.ends_at,
        revision=shift.revision + schedule.revision - 1,
        created_at=shift.created_at,
        updated_at=max(shift.updated_at, schedule.updated_at),
        cancelled=shift.deleted_at is not None,
        handover_from=shift.handover_from,
        handover_to=shift.handover_to,
    )
