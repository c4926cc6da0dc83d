"""A person's named feeds: listing, creating, changing, replacing and revoking them.

Every person has at least the first feed (`models.FIRST_FEED_NAME`, created with the
user), whose public id is the user's own; that is what keeps URLs issued before named
feeds working (migration 0014). A feed is `personal` (the owner's shifts, optionally of
some schedules only) or `schedule` (everyone's shifts of one schedule, which only a
member of that schedule, someone with shifts in it, or an admin may create).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.orm import Session

from oncal_feed.errors import NotFound, ValidationError
from oncal_feed.models import (
    DEFAULT_FEED_FUTURE_DAYS,
    DEFAULT_FEED_PAST_DAYS,
    Feed,
    Schedule,
    User,
)
from oncal_feed.shifts import may_follow_schedule

__all__ = [
    "MAX_FEEDS",
    "MAX_NAME_LENGTH",
    "FeedSettings",
    "create_feed",
    "delete_feed",
    "first_feed",
    "get_feed",
    "list_feeds",
    "rotate_all_feeds",
    "rotate_feed",
    "update_feed",
]

# Enough for every device and every schedule a person follows; a cap keeps a script
# gone wrong from filling the table.
MAX_FEEDS = 50
MAX_NAME_LENGTH = 200


@dataclass(frozen=True)
class FeedSettings:
    """What a person chooses for one feed (the settings page's form, checked)."""

    name: str
    past_days: int = DEFAULT_FEED_PAST_DAYS
    future_days: int = DEFAULT_FEED_FUTURE_DAYS
    busy: bool = False
    reminder_minutes: int | None = None
    handoff_reminder_minutes: int | None = None  # before each shift ends
    schedule_keys: tuple[str, ...] = ()  # a personal feed's schedules; empty for all


def list_feeds(session: Session, user: User) -> list[Feed]:
    """The user's feeds, the first one first, then by creation; schedules loaded."""
    feeds = session.scalars(
        select(Feed).where(Feed.user_id == user.id).order_by(Feed.created_at, Feed.id)
    ).all()
    schedule_ids = {feed.schedule_id for feed in feeds if feed.schedule_id is not None}
    schedules = {
        schedule.id: schedule
        for schedule in session.scalars(select(Schedule).where(Schedule.id.in_(schedule_ids)))
    }
    for feed in feeds:
        # `lazy="raise"`: set what the page shows, so no template triggers a query.
        feed.schedule = schedules.get(feed.schedule_id) if feed.schedule_id else None
    return sorted(feeds, key=lambda feed: feed.public_id != user.public_id)


def first_feed(session: Session, user: User) -> Feed:
    """The feed every person has, whose address predates named feeds (see module doc)."""
    feed = session.scalar(
        select(Feed).where(Feed.user_id == user.id, Feed.public_id == user.public_id)
    )
    if feed is None:  # revoked: the earliest remaining one is "first" now
        feed = session.scalar(
            select(Feed).where(Feed.user_id == user.id).order_by(Feed.created_at, Feed.id)
        )
    if feed is None:
        raise NotFound("feed", user.public_id)
    return feed


def get_feed(session: Session, user: User, public_id: str) -> Feed:
    """The user's feed `public_id`; `NotFound` for anyone else's, or none."""
    feed = session.scalar(select(Feed).where(Feed.user_id == user.id, Feed.public_id == public_id))
    if feed is None:
        raise NotFound("feed", public_id)
    return feed


def create_feed(
    session: Session,
    user: User,
    settings: FeedSettings,
    now: datetime,
    schedule: Schedule | None = None,
) -> Feed:
    """Add a feed: personal, or of the whole `schedule`. The caller commits.

    Raises `ValidationError` when the user has the most feeds allowed, or may not follow
    `schedule`.
    """
    count = len(session.scalars(select(Feed.id).where(Feed.user_id == user.id)).all())
    if count >= MAX_FEEDS:
        raise ValidationError.single(
            "name", f"You have {MAX_FEEDS} feeds, the most there can be; revoke one first."
        )
    if schedule is not None and not may_follow_schedule(session, user, schedule):
        raise ValidationError.single(
            "schedule", "Only people on this schedule, and admins, can subscribe to all of it."
        )
    feed = Feed(
        user_id=user.id,
        kind="schedule" if schedule is not None else "personal",
        schedule_id=schedule.id if schedule is not None else None,
        generation=1,
        created_at=now,
        updated_at=now,
        changed_at=now,
    )
    _apply(feed, settings, now)
    session.add(feed)
    session.flush()
    return feed


def update_feed(session: Session, feed: Feed, settings: FeedSettings, now: datetime) -> None:
    """Change a feed's name and options (its URL stays). The caller commits."""
    _apply(feed, settings, now)
    session.flush()


def _apply(feed: Feed, settings: FeedSettings, now: datetime) -> None:
    feed.name = settings.name
    feed.past_days = settings.past_days
    feed.future_days = settings.future_days
    feed.busy = settings.busy
    feed.reminder_minutes = settings.reminder_minutes
    feed.handoff_reminder_minutes = settings.handoff_reminder_minutes
    # A schedule feed has its schedule; a filter would only hide shifts from it.
    feed.schedule_keys = sorted(settings.schedule_keys) or None if feed.kind == "personal" else None
    feed.updated_at = now


def rotate_feed(session: Session, feed: Feed, now: datetime) -> int:
    """Give `feed` a new URL; every URL issued for it before stops working at once (on
    PostgreSQL: once each web process has heard of the commit, within milliseconds).

    The increment is done in SQL, so two concurrent rotations both count. The last-fetched
    line is cleared: no calendar app has fetched the new URL yet. Returns the new
    generation; the caller commits.
    """
    feed.generation = Feed.generation + 1
    feed.last_fetched_at = None
    feed.last_client = None
    feed.updated_at = now
    session.flush()
    session.refresh(feed, ["generation"])
    return feed.generation


def rotate_all_feeds(session: Session, user: User, now: datetime) -> int:
    """Replace the URL of every feed of `user` (an admin's answer to a leak); the count."""
    feeds = session.scalars(select(Feed).where(Feed.user_id == user.id)).all()
    for feed in feeds:
        rotate_feed(session, feed, now)
    return len(feeds)


def delete_feed(session: Session, feed: Feed) -> None:
    """Revoke a feed: its URL stops working and the feed is gone. The caller commits.

    The last feed stays (`ValidationError`): replacing its URL is what revokes it then,
    and every page and command can count on a person having a feed.
    """
    count = len(session.scalars(select(Feed.id).where(Feed.user_id == feed.user_id)).all())
    if count <= 1:
        raise ValidationError.single(
            "feed", "This is your only feed; replace its address instead of revoking it."
        )
    session.delete(feed)
    session.flush()
