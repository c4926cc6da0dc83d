"""Schedule pushes: a whole schedule written into a calendar of its own, through the user's
existing Google or Outlook connection.

A push is a `CalendarConnection` row under the account connection (`parent_id`, see the
model): the sync engine runs it like any connection, with its own calendar (named after
the schedule, e.g. "Payments API on-call", shareable in Google's or Outlook's own UI), its
own records and lease, and the parent's grant. It follows its account: paused when the
account needs re-authorisation, disconnected with it, resumed on reconnect. Who may push
a schedule is who may subscribe to it whole: its members and admins.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from flask import Flask
from sqlalchemy import delete, or_, select, update
from sqlalchemy.orm import Session

from oncal_feed.connections.credentials import provider_for
from oncal_feed.connections.service import flask_app
from oncal_feed.errors import Conflict, NotFound, ValidationError
from oncal_feed.models import CalendarConnection, Schedule, User
from oncal_feed.providers.base import AuthorizationLost, ProviderError, RemoteNotFound
from oncal_feed.shifts import may_follow_schedule

__all__ = [
    "MAX_PUSHES",
    "PushRemoval",
    "add_push",
    "calendar_name_for",
    "follow_account",
    "list_pushes",
    "remove_push",
]

# Per account connection: every push is one more calendar to keep and to sync.
MAX_PUSHES = 10


def calendar_name_for(schedule: Schedule) -> str:
    """The name of a schedule's dedicated calendar."""
    return f"{schedule.name} on-call"[:200]


def list_pushes(
    session: Session, account: CalendarConnection
) -> list[tuple[CalendarConnection, Schedule]]:
    """The account connection's schedule pushes that are not disconnected, by schedule name."""
    rows = session.execute(
        select(CalendarConnection, Schedule)
        .join(Schedule, Schedule.id == CalendarConnection.schedule_id)
        .where(
            CalendarConnection.parent_id == account.id,
            CalendarConnection.status != "disconnected",
        )
        .order_by(Schedule.name, Schedule.key)
    ).all()
    return [(push, schedule) for push, schedule in rows]


def add_push(
    session: Session, user: User, account: CalendarConnection, schedule: Schedule, now: datetime
) -> CalendarConnection:
    """Start pushing `schedule` through `account`; the caller commits and asks for a sync.

    The calendar itself is made by the first sync, as for an account connection. Raises
    `ValidationError` (field `schedule`) when the user may not see the whole schedule, or
    the account has the most pushes allowed, and `Conflict` when it pushes it already.
    """
    if not may_follow_schedule(session, user, schedule):
        raise ValidationError.single(
            "schedule", "Only people on this schedule, and admins, can push all of it."
        )
    existing = session.scalar(
        select(CalendarConnection).where(
            CalendarConnection.parent_id == account.id,
            CalendarConnection.schedule_id == schedule.id,
        )
    )
    if existing is not None and existing.status != "disconnected":
        raise Conflict("schedule", f"{schedule.name} is pushed to its own calendar already.")
    count = len(list_pushes(session, account))
    if existing is None and count >= MAX_PUSHES:
        raise ValidationError.single(
            "schedule", f"A calendar can push at most {MAX_PUSHES} schedules; stop one first."
        )
    push = existing or CalendarConnection(
        user_id=user.id,
        provider=account.provider,
        parent_id=account.id,
        schedule_id=schedule.id,
        created_at=now,
    )
    push.account_email = account.account_email
    push.calendar_name = push.calendar_name or calendar_name_for(schedule)
    push.owns_calendar = True
    push.use_primary = False
    push.window_days = account.window_days
    push.status = account.status
    push.dirty_since = now
    push.sync_due_at = now
    push.last_error = None
    push.failure_count = 0
    push.next_retry_at = None
    push.updated_at = now
    if existing is None:
        session.add(push)
    session.flush()
    return push


def follow_account(session: Session, account: CalendarConnection, now: datetime) -> None:
    """Give the account's pushes its status (after a reconnect, a disconnect or a lost
    grant); active ones are marked for a sync. The caller commits and nudges the worker."""
    mine = [CalendarConnection.parent_id == account.id]
    values: dict[str, object] = {"status": account.status, "updated_at": now}
    if account.status == "active":
        # A reconnect also brings back the pushes disconnected with the account.
        values.update(
            dirty_since=now, sync_due_at=now, last_error=None, failure_count=0, next_retry_at=None
        )
    else:
        # Pushes disconnected with the account stay so until it is reconnected.
        mine.append(CalendarConnection.status != "disconnected")
        if account.status == "disconnected":
            values.update(
                dirty_since=None, next_retry_at=None, lease_owner=None, lease_expires_at=None
            )
        else:
            values.update(last_error=account.last_error, last_error_at=now, next_retry_at=None)
    session.execute(
        update(CalendarConnection)
        .where(*mine)
        .values(**values)
        .execution_options(synchronize_session=False)
    )


@dataclass(frozen=True)
class PushRemoval:
    """What stopping a push did: whether its calendar was deleted, and if it was left
    behind, its name (access was lost, so the user deletes it)."""

    calendar_removed: bool
    left_behind: str | None = None


def remove_push(
    session: Session,
    account: CalendarConnection,
    schedule_key: str,
    *,
    now: datetime,
    app: Flask | None = None,
) -> PushRemoval:
    """Stop pushing a schedule: delete its calendar (ours alone), then its row and records.
    Commits.

    A worker syncing it at this moment would write into the calendar being deleted, so
    the row is taken out of syncing first, and only when no live lease holds it (raises
    `Conflict` then: try again in a moment). When access to the account is lost, the row
    still goes, and the calendar is left for the user to delete. Raises `NotFound` when
    the account pushes no such schedule; `UpstreamError`-worthy failures of the service
    come back as `ProviderError`, with nothing changed.
    """
    app = flask_app(app)
    push = session.scalar(
        select(CalendarConnection)
        .join(Schedule, Schedule.id == CalendarConnection.schedule_id)
        .where(CalendarConnection.parent_id == account.id, Schedule.key == schedule_key)
    )
    if push is None:
        raise NotFound("schedule push", schedule_key, field="schedule")
    claimed = session.execute(
        update(CalendarConnection)
        .where(
            CalendarConnection.id == push.id,
            or_(
                CalendarConnection.lease_expires_at.is_(None),
                CalendarConnection.lease_expires_at <= now,
            ),
        )
        .values(status="disconnected", dirty_since=None, lease_owner=None, lease_expires_at=None)
        .returning(CalendarConnection.id)
        .execution_options(synchronize_session=False)
    ).scalar()
    if claimed is None:
        session.rollback()
        raise Conflict("schedule", "That calendar is syncing right now; try again in a moment.")
    session.commit()  # no worker starts on it from here on
    removed, left_behind = False, None
    if push.calendar_id is not None:
        try:
            with provider_for(account, now=now, app=app) as remote:
                remote.delete_calendar(push.calendar_id)
            removed = True
        except RemoteNotFound:
            removed = True  # deleted by the user already
        except AuthorizationLost:
            left_behind = push.calendar_name
        except ProviderError:
            # Nothing lost: put it back as it was, to be stopped again later.
            session.execute(
                update(CalendarConnection)
                .where(CalendarConnection.id == push.id)
                .values(status=account.status, dirty_since=now, sync_due_at=now)
            )
            session.commit()
            raise
    session.execute(delete(CalendarConnection).where(CalendarConnection.id == push.id))
    session.commit()
    return PushRemoval(calendar_removed=removed, left_behind=left_behind)
