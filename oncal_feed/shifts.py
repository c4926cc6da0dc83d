"""The shift store: queries and writes of schedules and shifts. No Flask here.

Every write returns a `WriteResult` naming the users whose calendars it touched; the
caller commits and then nudges push sync for those users, once per write. Writes bump a
shift's `revision` only when what a calendar would show really changes, so the same PUT
twice changes nothing.

Shift writes are set-based, so that a 100,000-row import costs seconds: the rows a write
may change are read in a few queries, the write is worked out in memory (`_Plan`:
content, tombstones, then hand-over names of the neighbours), and only rows that really
change are sent, in bulk INSERT and UPDATE statements. An unchanged re-import issues no
INSERT or UPDATE at all.
"""

from __future__ import annotations

from bisect import bisect_left, bisect_right
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from typing import cast

from sqlalchemy import ColumnElement, Select, Table, and_, exists, or_, select, update
from sqlalchemy.orm import Session, contains_eager, joinedload

from oncal_feed.db import in_chunks, insert_rows
from oncal_feed.errors import FieldError, NotFound, ValidationError
from oncal_feed.models import Schedule, Shift, User, new_shift_uid
from oncal_feed.rendering import Colleague, ShiftFacts
from oncal_feed.validation import MAX_SHIFT_LENGTH, ScheduleInput, ShiftInput

__all__ = [
    "HANDOVER_TOLERANCE",
    "WriteResult",
    "bump_calendar_versions",
    "delete_shift",
    "get_schedule",
    "get_shift",
    "import_window",
    "may_follow_schedule",
    "next_shift_for_user",
    "shift_facts",
    "shifts_for_schedule",
    "shifts_for_user",
    "upsert_schedule",
    "upsert_shift",
    "upsert_shifts",
]

# Two shifts of one schedule and role "hand over" when one ends within this of the other's start.
HANDOVER_TOLERANCE = timedelta(hours=1)
# Neighbours of a shift start at most this far away; bounds every index range scan.
_NEIGHBOUR_REACH = MAX_SHIFT_LENGTH + HANDOVER_TOLERANCE
# Sort key of rows not inserted yet: they will get ids after every stored row's.
_NEW = 1 << 62


@dataclass
class WriteResult:
    """What a write did: counts, and the users and schedules whose calendars changed."""

    created: int = 0
    updated: int = 0
    unchanged: int = 0
    deleted: int = 0
    touched_user_ids: set[int] = field(default_factory=set)
    touched_schedule_ids: set[int] = field(default_factory=set)

    def merge(self, other: WriteResult) -> WriteResult:
        """Add another write's counts and touched users to this one; return self."""
        self.created += other.created
        self.updated += other.updated
        self.unchanged += other.unchanged
        self.deleted += other.deleted
        self.touched_user_ids |= other.touched_user_ids
        self.touched_schedule_ids |= other.touched_schedule_ids
        return self

    def as_dict(self) -> dict[str, int]:
        """Return the counts (for API responses and CLI output)."""
        return {
            "created": self.created,
            "updated": self.updated,
            "unchanged": self.unchanged,
            "deleted": self.deleted,
        }


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
    result.touched_schedule_ids.add(schedule.id)
    bump_calendar_versions(session, result, now)
    return schedule, False, result


def _users_by_email(
    session: Session, items: Sequence[ShiftInput], *, indexed: bool
) -> dict[str, User]:
    """Map each item's email to its user; `indexed` names fields `[i].user_email` (lists)."""
    emails = sorted({item.user_email for item in items})
    found: dict[str, User] = {}
    for chunk in in_chunks(emails):
        found.update(
            (u.email, u) for u in session.scalars(select(User).where(User.email.in_(chunk)))
        )
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


@dataclass(slots=True)
class _Row:
    """One shift as stored, or as this write will store it (`id` is None until inserted)."""

    id: int | None
    external_id: str
    user_id: int
    starts_at: datetime
    ends_at: datetime
    role: str
    notes: str
    handover_from: str | None
    handover_to: str | None
    also_on_call: list[dict[str, str]] | None
    deleted_at: datetime | None
    revision: int

    def content(self) -> tuple[object, ...]:
        """The fields a calendar shows; a change here is a new revision."""
        return (
            self.user_id, self.starts_at, self.ends_at, self.role, self.notes,
            self.handover_from, self.handover_to, self.also_on_call, self.deleted_at is None,
        )  # fmt: skip


# The columns of `_Row`, in its field order.
_ROW_COLUMNS = (
    Shift.id, Shift.external_id, Shift.user_id, Shift.starts_at, Shift.ends_at, Shift.role,
    Shift.notes, Shift.handover_from, Shift.handover_to, Shift.also_on_call, Shift.deleted_at,
    Shift.revision,
)  # fmt: skip


@dataclass
class _Plan:
    """One write worked out in memory before anything is sent to the database.

    `stored` holds rows as read (never changed), `wanted` what this write makes of them
    (new rows too), both by external id; `spans` the old and new [start, end) of every row
    the write changes, which is where hand-overs may have changed.
    """

    schedule_id: int
    stored: dict[str, _Row] = field(default_factory=dict)
    wanted: dict[str, _Row] = field(default_factory=dict)
    spans: list[tuple[datetime, datetime]] = field(default_factory=list)

    def load(self, session: Session, *conditions: ColumnElement[bool]) -> None:
        """Add the schedule's rows matching `conditions` to `stored` (rows held stay)."""
        query = select(*_ROW_COLUMNS).where(Shift.schedule_id == self.schedule_id, *conditions)
        for values in session.execute(query):
            # Twelve columns are past select()'s typed overloads; the order is `_Row`'s.
            row = _Row(*list(values))
            self.stored.setdefault(row.external_id, row)

    def load_named(self, session: Session, external_ids: Iterable[str]) -> None:
        """Add the rows with these external ids to `stored`, in chunked IN lists."""
        wanted = sorted(set(external_ids) - self.stored.keys())
        for chunk in in_chunks(wanted):
            self.load(session, Shift.external_id.in_(chunk))

    def put(self, item: ShiftInput, user_id: int, result: WriteResult) -> None:
        """Plan `item` as the content of its shift: a new row, an update, or no change."""
        old = self.stored.get(item.external_id)
        if old is None:
            self.wanted[item.external_id] = _Row(
                None, item.external_id, user_id, item.starts_at, item.ends_at, item.role,
                item.notes, None, None, None, None, 1,
            )  # fmt: skip
            self.spans.append((item.starts_at, item.ends_at))
            result.created += 1
            return
        new = replace(
            old, user_id=user_id, starts_at=item.starts_at, ends_at=item.ends_at,
            role=item.role, notes=item.notes, deleted_at=None,
        )  # fmt: skip
        self.wanted[item.external_id] = new
        if new.content() == old.content():
            result.unchanged += 1
            return
        self.spans.extend([(old.starts_at, old.ends_at), (new.starts_at, new.ends_at)])
        result.updated += 1

    def tombstone(self, row: _Row, now: datetime, result: WriteResult) -> None:
        """Plan the deletion of a live stored row."""
        self.wanted[row.external_id] = replace(row, deleted_at=now)
        self.spans.append((row.starts_at, row.ends_at))
        result.deleted += 1


def _import(
    session: Session,
    schedule: Schedule,
    items: Sequence[ShiftInput],
    now: datetime,
    window: tuple[datetime, datetime] | None,
    *,
    indexed: bool = True,
) -> WriteResult:
    """Check `items`, then write them set-based; with a `window`, tombstone the rest in it."""
    problems: list[FieldError] = []
    seen: set[str] = set()
    for index, item in enumerate(items):
        if item.external_id in seen:
            problems.append(FieldError(f"[{index}].external_id", "appears more than once"))
        seen.add(item.external_id)
        if window is not None and not (item.starts_at < window[1] and item.ends_at > window[0]):
            problems.append(FieldError(f"[{index}].starts_at", "shift lies outside the window"))
    if problems:
        raise ValidationError(problems)
    users = _users_by_email(session, items, indexed=indexed)
    session.flush()

    result = WriteResult()
    plan = _Plan(schedule.id)
    if window is not None:
        start, end = window
        plan.load(session, Shift.starts_at >= start - MAX_SHIFT_LENGTH, Shift.starts_at < end)
    # Shifts named in the import but starting elsewhere (or everywhere, without a window).
    plan.load_named(session, seen)
    for item in items:
        plan.put(item, users[item.user_email].id, result)
    if window is not None:
        start, end = window
        for external_id, row in list(plan.stored.items()):
            overlaps = row.starts_at < end and row.ends_at > start
            if external_id not in seen and overlaps and row.deleted_at is None:
                plan.tombstone(row, now, result)
    _write(session, plan, now, result)
    bump_calendar_versions(session, result, now)
    return result


def _write(session: Session, plan: _Plan, now: datetime, result: WriteResult) -> None:
    """Settle hand-overs around the plan's spans, then write what changed in bulk statements.

    A row is written once at most, with one new revision at most, however many reasons it
    has to change (its own edit, a neighbour's).
    """
    if plan.spans:
        _plan_handovers(session, plan)
    inserts: list[dict[str, object]] = []
    updates: list[dict[str, object]] = []
    for external_id, new in plan.wanted.items():
        old = plan.stored.get(external_id)
        if old is None:
            inserts.append(
                {
                    "uid": new_shift_uid(),
                    "schedule_id": plan.schedule_id,
                    "external_id": external_id,
                    "user_id": new.user_id,
                    "starts_at": new.starts_at,
                    "ends_at": new.ends_at,
                    "role": new.role,
                    "notes": new.notes,
                    "handover_from": new.handover_from,
                    "handover_to": new.handover_to,
                    "also_on_call": new.also_on_call,
                    "revision": 1,
                    "created_at": now,
                    "updated_at": now,
                }
            )
            result.touched_user_ids.add(new.user_id)
        elif new.content() != old.content():
            updates.append(
                {
                    "id": old.id,
                    "user_id": new.user_id,
                    "starts_at": new.starts_at,
                    "ends_at": new.ends_at,
                    "role": new.role,
                    "notes": new.notes,
                    "handover_from": new.handover_from,
                    "handover_to": new.handover_to,
                    "also_on_call": new.also_on_call,
                    "deleted_at": new.deleted_at,
                    "revision": old.revision + 1,
                    "updated_at": now,
                }
            )
            result.touched_user_ids.update({old.user_id, new.user_id})
    if updates or inserts:
        result.touched_schedule_ids.add(plan.schedule_id)
    if updates:
        session.execute(update(Shift), updates)
    if inserts:
        # The table, not the mapped class: the ORM would split rows by which values are None.
        insert_rows(session, cast(Table, Shift.__table__), inserts)
    if updates or inserts:
        # Bulk statements bypass loaded objects; make any the session holds read again.
        for loaded in list(session.identity_map.values()):
            if isinstance(loaded, Shift):
                session.expire(loaded)


def _clusters(spans: list[tuple[datetime, datetime]]) -> list[tuple[datetime, datetime]]:
    """Merge spans whose neighbourhoods (twice the reach around them) overlap."""
    merged: list[tuple[datetime, datetime]] = []
    for start, end in sorted(spans):
        if merged and start < merged[-1][1] + 4 * _NEIGHBOUR_REACH:
            merged[-1] = (merged[-1][0], max(merged[-1][1], end))
        else:
            merged.append((start, end))
    return merged


def _plan_handovers(session: Session, plan: _Plan) -> None:
    """Set `handover_from`/`handover_to` and `also_on_call` on the live shifts starting
    within reach of a span.

    Shifts are read from twice that reach, in one query per hundred clusters of spans, so
    every shift updated has all its possible neighbours in hand; the rows are then what
    this write leaves (planned rows over stored ones).
    """
    clusters = _clusters(plan.spans)
    reach = 2 * _NEIGHBOUR_REACH
    for chunk in in_chunks(clusters, 100):
        ranges = [and_(Shift.starts_at >= a - reach, Shift.starts_at < b + reach) for a, b in chunk]
        plan.load(session, Shift.deleted_at.is_(None), or_(*ranges))
    rows = {**plan.stored, **plan.wanted}
    live = [row for row in rows.values() if row.deleted_at is None]
    people = _people(session, {row.user_id for row in live})
    names = {user_id: name for user_id, (name, _email) in people.items()}
    # New rows get ids after every stored one, in the order they are planned.
    later = {key: n for n, key in enumerate(plan.wanted) if plan.wanted[key].id is None}

    def order(row: _Row) -> tuple[datetime, int]:
        return (row.starts_at, row.id if row.id is not None else _NEW + later[row.external_id])

    by_role: dict[str, list[_Row]] = defaultdict(list)
    for row in live:
        by_role[row.role].append(row)
    for group in by_role.values():
        group.sort(key=order)
    # An override stands in for the primary rotation: it takes over from, and hands back
    # to, whoever is on call there (or in an adjoining override) around it.
    rotation = sorted(by_role.get("primary", []) + by_role.get("override", []), key=order)
    rotation_starts = [row.starts_at for row in rotation]
    everyone = sorted(live, key=order)
    everyone_starts = [row.starts_at for row in everyone]
    for role, group in by_role.items():
        starts = [row.starts_at for row in group]
        # Clusters lie more than four reaches apart, so these ranges never overlap.
        for low, high in clusters:
            first = bisect_left(starts, low - _NEIGHBOUR_REACH)
            last = bisect_left(starts, high + _NEIGHBOUR_REACH)
            for row in group[first:last]:
                if role == "override":
                    incoming = _standing_in_from(rotation, rotation_starts, row)
                    outgoing = _handing_back_to(rotation, rotation_starts, row)
                else:
                    incoming = _incoming(group, starts, row)
                    outgoing = _outgoing(group, starts, row)
                handover_from = (
                    names[incoming.user_id]
                    if incoming and incoming.user_id != row.user_id
                    else None
                )
                handover_to = (
                    names[outgoing.user_id]
                    if outgoing and outgoing.user_id != row.user_id
                    else None
                )
                also = _also_on_call(everyone, everyone_starts, row, people)
                current = (row.handover_from, row.handover_to, row.also_on_call)
                if (handover_from, handover_to, also) != current:
                    plan.wanted[row.external_id] = replace(
                        row, handover_from=handover_from, handover_to=handover_to,
                        also_on_call=also,
                    )  # fmt: skip


# An override takes the primary's place in the rotation (see `_plan_handovers`).
_ROTATION_ROLES = {"primary", "override"}
# An event lists at most this many others on call (a busy schedule's week would list dozens).
MAX_ALSO_ON_CALL = 6


def _also_on_call(
    everyone: list[_Row],
    starts: list[datetime],
    shift: _Row,
    people: dict[int, tuple[str, str]],
) -> list[dict[str, str]] | None:
    """The other people on call in the schedule at some point of `shift`, by start, each
    once per role (None for nobody, as rows stored before migration 0015 say)."""
    first = bisect_left(starts, shift.starts_at - MAX_SHIFT_LENGTH)
    last = bisect_left(starts, shift.ends_at)
    seen: set[tuple[int, str]] = set()
    found: list[dict[str, str]] = []
    for other in everyone[first:last]:
        key = (other.user_id, other.role)
        if other.user_id == shift.user_id or other.ends_at <= shift.starts_at or key in seen:
            continue
        # An override stands in for the primary: the hand-over lines already name them.
        if {shift.role, other.role} <= _ROTATION_ROLES:
            continue
        seen.add(key)
        name, email = people[other.user_id]
        found.append({"name": name, "role": other.role, "email": email})
        if len(found) == MAX_ALSO_ON_CALL:
            break
    return found or None


def _people(session: Session, user_ids: set[int]) -> dict[int, tuple[str, str]]:
    """(Display name, email address) by user id."""
    people: dict[int, tuple[str, str]] = {}
    for chunk in in_chunks(sorted(user_ids)):
        query = select(User.id, User.display_name, User.email).where(User.id.in_(chunk))
        people.update((user_id, (name, email)) for user_id, name, email in session.execute(query))
    return people


def _incoming(group: list[_Row], starts: list[datetime], shift: _Row) -> _Row | None:
    """Whoever hands over to `shift`: the latest-starting earlier shift ending near its start.

    `group` is sorted by start and `starts` holds those starts, for bisecting.
    """
    first = bisect_left(starts, shift.starts_at - _NEIGHBOUR_REACH)
    last = bisect_left(starts, shift.starts_at)
    for other in reversed(group[first:last]):
        if abs(other.ends_at - shift.starts_at) <= HANDOVER_TOLERANCE:
            return other
    return None


def _outgoing(group: list[_Row], starts: list[datetime], shift: _Row) -> _Row | None:
    """Whoever takes over from `shift`: the earliest later shift starting near its end."""
    first = bisect_right(starts, shift.starts_at)
    last = bisect_right(starts, shift.ends_at + HANDOVER_TOLERANCE)
    for other in group[first:last]:
        if abs(other.starts_at - shift.ends_at) <= HANDOVER_TOLERANCE:
            return other
    return None


def _standing_in_from(rotation: list[_Row], starts: list[datetime], override: _Row) -> _Row | None:
    """Whom an override takes over from: the latest-starting other shift of the rotation
    still on call at its start (or ending near it)."""
    first = bisect_left(starts, override.starts_at - _NEIGHBOUR_REACH)
    last = bisect_left(starts, override.starts_at)
    for other in reversed(rotation[first:last]):
        if other.ends_at >= override.starts_at - HANDOVER_TOLERANCE:
            return other
    return None


def _handing_back_to(rotation: list[_Row], starts: list[datetime], override: _Row) -> _Row | None:
    """To whom an override hands back: the other shift of the rotation on call at its end
    (the latest-starting one), else the first starting near its end."""
    first = bisect_left(starts, override.ends_at - _NEIGHBOUR_REACH)
    last = bisect_right(starts, override.ends_at + HANDOVER_TOLERANCE)
    after: _Row | None = None
    for other in rotation[first:last]:
        if other.external_id == override.external_id or other.ends_at <= override.ends_at:
            continue
        if other.starts_at <= override.ends_at:
            after = other  # on call across the end; a later-starting one wins
        elif after is None:
            return other
    return after


def upsert_shift(
    session: Session, schedule: Schedule, data: ShiftInput, now: datetime
) -> WriteResult:
    """Create or update one shift by (schedule, external id); revive it if tombstoned."""
    return _import(session, schedule, [data], now, None, indexed=False)


def upsert_shifts(
    session: Session, schedule: Schedule, items: Sequence[ShiftInput], now: datetime
) -> WriteResult:
    """Create or update many shifts of one schedule in a few set-based statements.

    Like `upsert_shift` for each item, but the existing rows are read in one go, hand-overs
    settled once, and each changed row written once. Raises `ValidationError` (fields
    named `[index].…`) for an external id given twice or an unknown user, before writing.
    """
    return _import(session, schedule, items, now, None)


def delete_shift(
    session: Session, schedule: Schedule, external_id: str, now: datetime
) -> WriteResult:
    """Tombstone a shift; deleting an already deleted shift changes nothing.

    Raises `NotFound` when the schedule never had a shift with this external id.
    """
    session.flush()
    plan = _Plan(schedule.id)
    plan.load_named(session, [external_id])
    row = plan.stored.get(external_id)
    if row is None:
        raise NotFound("shift", external_id)
    result = WriteResult()
    if row.deleted_at is not None:
        result.unchanged = 1
        return result
    plan.tombstone(row, now, result)
    _write(session, plan, now, result)
    bump_calendar_versions(session, result, now)
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
    overlaps the window. Every item is checked before anything is written; the caller's
    transaction makes it all-or-nothing.
    """
    return _import(session, schedule, items, now, (window_start, window_end))


def refresh_handovers_for_user(
    session: Session, user_id: int, since: datetime, now: datetime
) -> WriteResult:
    """Re-render hand-over names and "also on call" entries after a user's display name or
    email address changed.

    Only shifts from `since` on are refreshed; history keeps the name it was shown with.
    """
    session.flush()
    result = WriteResult()
    spans: dict[int, list[tuple[datetime, datetime]]] = defaultdict(list)
    for schedule_id, start, end in session.execute(
        select(Shift.schedule_id, Shift.starts_at, Shift.ends_at).where(
            Shift.user_id == user_id, Shift.ends_at > since
        )
    ):
        spans[schedule_id].append((start, end))
    for schedule_id, schedule_spans in spans.items():
        _write(session, _Plan(schedule_id, spans=schedule_spans), now, result)
    # Schedule feeds name the person on each of their shifts.
    result.touched_schedule_ids.update(spans)
    bump_calendar_versions(session, result, now)
    return result


def bump_calendar_versions(session: Session, result: WriteResult, now: datetime) -> None:
    """Raise the calendar version (part of feed ETags) of every user and schedule a write
    touched, and date the change (their feeds' Last-Modified)."""
    for table, ids in ((User, result.touched_user_ids), (Schedule, result.touched_schedule_ids)):
        for chunk in in_chunks(sorted(ids)):
            session.execute(
                update(table)
                .where(table.id.in_(chunk))
                .values(calendar_version=table.calendar_version + 1, calendar_changed_at=now)
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
        .where(Shift.user_id == user_id)
    )
    if schedule_keys:
        query = query.where(Schedule.key.in_(schedule_keys))
    return list(session.scalars(_in_window(query, window_start, window_end, deleted_since)))


def _in_window(
    query: Select[Shift],
    window_start: datetime,
    window_end: datetime,
    deleted_since: datetime | None,
) -> Select[Shift]:
    """Limit a shift query to [start, end) (and tombstones since `deleted_since`), by start.

    The range on `starts_at`, the window widened by the longest possible shift, keeps it an
    index range scan whatever the leading column of the index.
    """
    query = query.where(
        Shift.starts_at >= window_start - MAX_SHIFT_LENGTH,
        Shift.starts_at < window_end,
        Shift.ends_at > window_start,
    ).order_by(Shift.starts_at, Shift.id)
    if deleted_since is None:
        return query.where(Shift.deleted_at.is_(None))
    return query.where((Shift.deleted_at.is_(None)) | (Shift.deleted_at >= deleted_since))


def shifts_for_schedule(
    session: Session,
    schedule_id: int,
    window_start: datetime,
    window_end: datetime,
    *,
    deleted_since: datetime | None = None,
) -> list[Shift]:
    """Return the schedule's shifts overlapping [start, end), ordered by start, with each
    shift's schedule and person loaded (a schedule feed names who is on call).

    Tombstones as in `shifts_for_user`; one index range scan of (schedule_id, starts_at).
    """
    query = (
        select(Shift)
        .join(Schedule, Schedule.id == Shift.schedule_id)
        .join(User, User.id == Shift.user_id)
        .options(contains_eager(Shift.schedule), contains_eager(Shift.user))
        .where(Shift.schedule_id == schedule_id)
    )
    return list(session.scalars(_in_window(query, window_start, window_end, deleted_since)))


def may_follow_schedule(session: Session, user: User, schedule: Schedule) -> bool:
    """Whether `user` may subscribe to the whole of `schedule`: admins, and its members
    (anyone with a shift in it, past or future)."""
    if user.role == "admin":
        return True
    return bool(
        session.scalar(
            select(exists().where(Shift.schedule_id == schedule.id, Shift.user_id == user.id))
        )
    )


def next_shift_for_user(session: Session, user_id: int, after: datetime) -> Shift | None:
    """The user's first live shift starting after `after`, its schedule loaded (one
    index range scan on (user_id, starts_at))."""
    query = (
        select(Shift)
        .join(Schedule, Schedule.id == Shift.schedule_id)
        .options(contains_eager(Shift.schedule))
        .where(Shift.user_id == user_id, Shift.starts_at > after, Shift.deleted_at.is_(None))
        .order_by(Shift.starts_at, Shift.id)
        .limit(1)
    )
    return session.scalars(query).first()


def shift_facts(shift: Shift, person: str = "") -> ShiftFacts:
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
        also_on_call=tuple(
            Colleague(entry["name"], entry["role"], entry.get("email", ""))
            for entry in shift.also_on_call or ()
        ),
        person=person,
    )
