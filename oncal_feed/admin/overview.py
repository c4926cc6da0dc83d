"""What the admin area shows, read from the database: no Flask, no HTML.

Each function is a few queries whatever the number of users: the page lists at most
`PAGE_SIZE` users, with their connections loaded in one more query.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from sqlalchemy import func, or_, select
from sqlalchemy.orm import Session

from oncal_feed.models import CalendarConnection, Feed, Schedule, Shift, User

__all__ = [
    "LAG_THRESHOLD",
    "PAGE_SIZE",
    "SyncHealth",
    "UserRow",
    "admin_count",
    "connections_of",
    "find_users",
    "last_fetches",
    "schedules_with_counts",
    "sync_health",
]

PAGE_SIZE = 100
# A change still waiting this long after it was made counts as lagging (push sync
# normally lands it within seconds).
LAG_THRESHOLD = timedelta(minutes=5)
_LIVE = ("active", "error", "needs_reauth")


@dataclass(frozen=True)
class UserRow:
    """A user with their live calendar connections and the latest fetch of their feeds."""

    user: User
    connections: list[CalendarConnection] = field(default_factory=list)
    last_fetched_at: datetime | None = None
    last_client: str | None = None


def last_fetches(
    session: Session, user_ids: Sequence[int]
) -> dict[int, tuple[datetime, str | None]]:
    """When, and by what client, each user's feeds were last fetched (any feed of theirs)."""
    found: dict[int, tuple[datetime, str | None]] = {}
    rows = session.execute(
        select(Feed.user_id, Feed.last_fetched_at, Feed.last_client).where(
            Feed.user_id.in_(user_ids), Feed.last_fetched_at.is_not(None)
        )
    )
    for user_id, fetched_at, client in rows:
        if fetched_at is not None and (user_id not in found or fetched_at > found[user_id][0]):
            found[user_id] = (fetched_at, client)
    return found


def connections_of(
    session: Session, user_ids: Sequence[int]
) -> dict[int, list[CalendarConnection]]:
    """Live (not disconnected) account connections of these users, by user id, Google first."""
    found: dict[int, list[CalendarConnection]] = {user_id: [] for user_id in user_ids}
    if not user_ids:
        return found
    rows = session.scalars(
        select(CalendarConnection)
        .where(
            CalendarConnection.user_id.in_(user_ids),
            CalendarConnection.parent_id.is_(None),
            CalendarConnection.status.in_(_LIVE),
        )
        .order_by(CalendarConnection.user_id, CalendarConnection.provider)
    )
    for row in rows:
        found[row.user_id].append(row)
    return found


def find_users(session: Session, search: str = "", limit: int = PAGE_SIZE) -> list[UserRow]:
    """Users whose email or name contains `search` (any case), by email, with connections."""
    query = select(User).order_by(User.email).limit(limit)
    words = search.strip().lower()
    if words:
        # LIKE wildcards typed into the search box are searched for, not expanded.
        pattern = "%" + words.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"
        query = query.where(
            or_(
                func.lower(User.email).like(pattern, escape="\\"),
                func.lower(User.display_name).like(pattern, escape="\\"),
            )
        )
    users = list(session.scalars(query))
    ids = [user.id for user in users]
    by_user = connections_of(session, ids)
    fetches = last_fetches(session, ids) if ids else {}
    return [UserRow(user, by_user[user.id], *fetches.get(user.id, (None, None))) for user in users]


def admin_count(session: Session) -> int:
    """How many admins there are."""
    return int(session.scalar(select(func.count()).where(User.role == "admin")) or 0)


def schedules_with_counts(session: Session, now: datetime) -> list[tuple[Schedule, int, int]]:
    """Every schedule with its live shift count and how many of those are still to come."""
    live = Shift.deleted_at.is_(None)
    total = func.count(Shift.id).filter(live)
    upcoming = func.count(Shift.id).filter(live, Shift.ends_at > now)
    rows = session.execute(
        select(Schedule, total, upcoming)
        .outerjoin(Shift, Shift.schedule_id == Schedule.id)
        .group_by(Schedule.id)
        .order_by(Schedule.name, Schedule.key)
    ).all()
    return [(schedule, int(count), int(ahead)) for schedule, count, ahead in rows]


@dataclass(frozen=True)
class SyncHealth:
    """Connections that need someone's attention, each with its user."""

    needs_reauth: list[tuple[User, CalendarConnection]]
    failing: list[tuple[User, CalendarConnection]]
    lagging: list[tuple[User, CalendarConnection]]
    connected: int

    @property
    def healthy(self) -> bool:
        """Whether nothing needs attention."""
        return not (self.needs_reauth or self.failing or self.lagging)


def sync_health(session: Session, now: datetime, limit: int = PAGE_SIZE) -> SyncHealth:
    """Connections needing re-authorisation, failing, or lagging (a change waiting longer
    than `LAG_THRESHOLD`, or claimed by the sweep as overdue)."""

    def pairs(*conditions: object) -> list[tuple[User, CalendarConnection]]:
        rows = session.execute(
            select(User, CalendarConnection)
            .join(CalendarConnection, CalendarConnection.user_id == User.id)
            .where(*conditions)  # type: ignore[arg-type]
            .order_by(User.email, CalendarConnection.provider)
            .limit(limit)
        ).all()
        return [(user, connection) for user, connection in rows]

    status = CalendarConnection.status
    connected = session.scalar(select(func.count()).where(status.in_(_LIVE))) or 0
    return SyncHealth(
        needs_reauth=pairs(status == "needs_reauth"),
        failing=pairs(status == "error"),
        lagging=pairs(
            status == "active",
            or_(
                CalendarConnection.dirty_since <= now - LAG_THRESHOLD,
                CalendarConnection.overdue_since.is_not(None),
            ),
        ),
        connected=int(connected),
    )
