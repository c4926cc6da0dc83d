"""Creating the app's own calendar without losing track of it.

Google's `calendars.insert` takes no client-chosen id or request id, and the
`calendar.app.created` scope we ask for cannot list calendars (`calendarList.list`
needs `calendar`, `calendar.readonly` or a `calendar.calendarlist` scope), so a
calendar whose id never reached our database cannot be found again. The window is
narrowed as far as it goes:

1. `create_owned_calendar` commits an intent (`CalendarCreation`) before the call;
2. the caller saves the id it receives and calls `finish_creation` in the same
   transaction, which deletes the intent;
3. an intent that outlives its creation (a crash, a lost answer) is marked as a possible
   orphan (`orphan_since`) by the next creation for the same user and provider, and is
   shown on the settings page until the user dismisses it (`orphan_notices`).

Outlook answers 409 for a calendar name that exists and the Graph adapter adopts it
(`adopts_calendar_by_name`), so there the next creation finds the calendar again and
the old intent is simply dropped.

Imports the models and the providers' interface only, so both `connections` and `sync`
may use it.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import delete, or_, select, update
from sqlalchemy.orm import Session, sessionmaker

from oncal_feed.models import CalendarCreation
from oncal_feed.providers.base import CalendarProvider, ProviderError, TransientError

__all__ = [
    "STALE_AFTER",
    "Creation",
    "OrphanNotice",
    "Target",
    "create_owned_calendar",
    "dismiss_notice",
    "finish_creation",
    "orphan_notices",
]

# An unfinished intent this old is no creation in progress: every provider call has
# timed out long before (PROVIDER_TIMEOUT is 30 s), so it is shown as a possible orphan.
STALE_AFTER = timedelta(minutes=10)


@dataclass(frozen=True)
class Target:
    """Whose calendar is being made, with which provider, under which name."""

    user_id: int
    provider: str
    name: str


@dataclass(frozen=True)
class Creation:
    """A calendar just created: its id and the intent to clear when the id is saved."""

    target: Target
    calendar_id: str
    request_id: str
    adopts_by_name: bool


def create_owned_calendar(
    factory: sessionmaker[Session],
    remote: CalendarProvider,
    target: Target,
    *,
    time_zone: str,
    now: datetime,
) -> Creation:
    """Commit an intent, then create the calendar; return it (the intent still open).

    The intent is committed in a transaction of its own, so it survives whatever the
    caller's transaction does. When the call fails for sure (a 4xx) nothing was
    created and the intent is dropped; when its outcome is unknown (5xx, timeout,
    dropped connection) the intent stays, as the calendar may exist.
    """
    request_id = str(uuid.uuid4())
    with factory() as session, session.begin():
        session.add(
            CalendarCreation(
                user_id=target.user_id,
                provider=target.provider,
                calendar_name=target.name,
                request_id=request_id,
                started_at=now,
            )
        )
    try:
        calendar_id = remote.create_calendar(target.name, time_zone)
    except ProviderError as exc:
        if not isinstance(exc, TransientError):
            with factory() as session, session.begin():
                session.execute(
                    delete(CalendarCreation).where(CalendarCreation.request_id == request_id)
                )
        raise
    adopts = bool(getattr(remote, "adopts_calendar_by_name", False))
    return Creation(target, calendar_id, request_id, adopts)


def finish_creation(session: Session, creation: Creation) -> None:
    """Clear the intent, in the transaction that saves `creation.calendar_id`.

    Earlier unfinished intents of this user and provider are settled here too: where
    the provider adopts a calendar by its name (Outlook) and the name is the same, the
    calendar we were just given is that one, so the intent goes; otherwise (Google) its
    calendar may be left in the account, so it becomes a notice.
    """
    session.execute(
        delete(CalendarCreation).where(CalendarCreation.request_id == creation.request_id)
    )
    target = creation.target
    earlier = (
        CalendarCreation.user_id == target.user_id,
        CalendarCreation.provider == target.provider,
        CalendarCreation.orphan_since.is_(None),
    )
    if creation.adopts_by_name:
        session.execute(
            delete(CalendarCreation).where(*earlier, CalendarCreation.calendar_name == target.name)
        )
    session.execute(
        update(CalendarCreation)
        .where(*earlier)
        .values(orphan_since=CalendarCreation.started_at)
        .execution_options(synchronize_session=False)
    )


@dataclass(frozen=True)
class OrphanNotice:
    """A calendar that may be left empty in the user's account, for the settings page."""

    id: int
    provider: str
    calendar_name: str
    since: datetime


def orphan_notices(session: Session, user_id: int, now: datetime) -> list[OrphanNotice]:
    """The user's possible orphan calendars: settled intents, and ones left too long."""
    rows = session.scalars(
        select(CalendarCreation)
        .where(
            CalendarCreation.user_id == user_id,
            or_(
                CalendarCreation.orphan_since.is_not(None),
                CalendarCreation.started_at < now - STALE_AFTER,
            ),
        )
        .order_by(CalendarCreation.started_at)
    )
    return [OrphanNotice(r.id, r.provider, r.calendar_name, r.started_at) for r in rows]


def dismiss_notice(session: Session, user_id: int, notice_id: int) -> bool:
    """Forget one of the user's notices; False when there is no such notice of theirs."""
    result = session.execute(
        delete(CalendarCreation).where(
            CalendarCreation.id == notice_id, CalendarCreation.user_id == user_id
        )
    )
    return bool(getattr(result, "rowcount", 0))
