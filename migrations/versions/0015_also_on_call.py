"""shifts: who else is on call during each shift

Revision ID: 0015
Revises: 0014
Create Date: 2026-12-05 19:40:00.000000

`shifts.also_on_call` lists the other people on call in the schedule during a shift
(`[{"name", "role", "email"}]`, by start), kept on the row like the hand-over names so
that a colleague's change is a new revision of this shift (see `oncal_feed.shifts`).

Shifts that have not ended yet are filled in here, by the same rule, and become a new
revision: feeds renew their ETags and push-synced calendars are nudged to rewrite them.
History keeps the text it was shown with. The code is this migration's own, over the
columns as they stand at this revision, so later changes to the models cannot break it.
"""

from __future__ import annotations

from bisect import bisect_left
from collections import defaultdict
from datetime import UTC, datetime, timedelta
from typing import Any

import sqlalchemy as sa
from alembic import op

from oncal_feed.db import UTCDateTime

revision = "0015"
down_revision = "0014"
branch_labels = None
depends_on = None

# As in oncal_feed.validation and oncal_feed.shifts at this revision.
_MAX_SHIFT_LENGTH = timedelta(days=31)
_MAX_ALSO_ON_CALL = 6
_ROTATION_ROLES = {"primary", "override"}

_shifts = sa.table(
    "shifts",
    sa.column("id", sa.Integer),
    sa.column("schedule_id", sa.Integer),
    sa.column("user_id", sa.Integer),
    sa.column("role", sa.String),
    sa.column("starts_at", UTCDateTime),
    sa.column("ends_at", UTCDateTime),
    sa.column("deleted_at", UTCDateTime),
    sa.column("also_on_call", sa.JSON),
    sa.column("revision", sa.Integer),
    sa.column("updated_at", UTCDateTime),
)
_users = sa.table(
    "users",
    sa.column("id", sa.Integer),
    sa.column("display_name", sa.String),
    sa.column("email", sa.String),
    sa.column("calendar_version", sa.Integer),
    sa.column("calendar_changed_at", UTCDateTime),
)
_schedules = sa.table(
    "schedules",
    sa.column("id", sa.Integer),
    sa.column("calendar_version", sa.Integer),
    sa.column("calendar_changed_at", UTCDateTime),
)
_connections = sa.table(
    "calendar_connections",
    sa.column("user_id", sa.Integer),
    sa.column("status", sa.String),
    sa.column("dirty_since", UTCDateTime),
    sa.column("sync_due_at", UTCDateTime),
)


def _colleagues(shift: Any, overlapping: list[Any], people: dict[int, Any]) -> list[dict]:
    """The other people on call during `shift`, by start, once per (person, role)."""
    seen: set[tuple[int, str]] = set()
    found: list[dict] = []
    for other in overlapping:
        key = (other.user_id, other.role)
        if other.user_id == shift.user_id or key in seen:
            continue
        if {shift.role, other.role} <= _ROTATION_ROLES:
            continue
        if other.ends_at <= shift.starts_at or other.starts_at >= shift.ends_at:
            continue
        seen.add(key)
        person = people[other.user_id]
        found.append({"name": person.display_name, "role": other.role, "email": person.email})
        if len(found) == _MAX_ALSO_ON_CALL:
            break
    return found


def _backfill(connection: sa.Connection, now: datetime) -> None:
    """Fill in `also_on_call` for the live shifts that have not ended yet."""
    live = list(
        connection.execute(
            sa.select(_shifts)
            .where(
                _shifts.c.deleted_at.is_(None),
                _shifts.c.ends_at > now - _MAX_SHIFT_LENGTH,
            )
            .order_by(_shifts.c.schedule_id, _shifts.c.starts_at, _shifts.c.id)
        )
    )
    people = {row.id: row for row in connection.execute(sa.select(_users))}
    by_schedule: dict[int, list[Any]] = defaultdict(list)
    for row in live:
        by_schedule[row.schedule_id].append(row)
    touched_users: set[int] = set()
    touched_schedules: set[int] = set()
    for schedule_id, rows in by_schedule.items():
        starts = [row.starts_at for row in rows]
        for shift in rows:
            if shift.ends_at <= now:
                continue
            # Rows are by start and no shift is longer than the limit.
            first = bisect_left(starts, shift.starts_at - _MAX_SHIFT_LENGTH)
            last = bisect_left(starts, shift.ends_at)
            found = _colleagues(shift, rows[first:last], people)
            if not found:
                continue
            connection.execute(
                sa.update(_shifts)
                .where(_shifts.c.id == shift.id)
                .values(also_on_call=found, revision=_shifts.c.revision + 1, updated_at=now)
            )
            touched_users.add(shift.user_id)
            touched_schedules.add(schedule_id)
    for table, ids in ((_users, touched_users), (_schedules, touched_schedules)):
        if ids:
            connection.execute(
                sa.update(table)
                .where(table.c.id.in_(sorted(ids)))
                .values(calendar_version=table.c.calendar_version + 1, calendar_changed_at=now)
            )
    if touched_users:
        connection.execute(
            sa.update(_connections)
            .where(
                _connections.c.user_id.in_(sorted(touched_users)),
                _connections.c.status.in_(("active", "error")),
            )
            .values(dirty_since=sa.func.coalesce(_connections.c.dirty_since, now), sync_due_at=now)
        )


def upgrade() -> None:
    """Add `shifts.also_on_call` and fill it in for shifts still to come or under way."""
    with op.batch_alter_table("shifts", schema=None) as batch_op:
        batch_op.add_column(sa.Column("also_on_call", sa.JSON(), nullable=True))
    _backfill(op.get_bind(), datetime.now(UTC))


def downgrade() -> None:
    """Revert this migration."""
    with op.batch_alter_table("shifts", schema=None) as batch_op:
        batch_op.drop_column("also_on_call")
