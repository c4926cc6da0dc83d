"""Typed SQLAlchemy models: users, schedules, shifts, sources, connections and API keys.

Instants are stored as UTC (`UTCDateTime`); IANA zone names are kept beside them for
people and for rotation arithmetic.
"""

from __future__ import annotations

import secrets
import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import (
    JSON,
    ForeignKey,
    Index,
    String,
    Text,
    UniqueConstraint,
    event,
    false,
    insert,
    inspect,
    text,
)
from sqlalchemy.orm import Mapped, mapped_column, relationship

from oncal_feed.db import Base, utcnow

__all__ = [
    "ROLES",
    "ApiKey",
    "CalendarConnection",
    "Feed",
    "Invitation",
    "OAuthFlow",
    "Schedule",
    "Shift",
    "Source",
    "SyncRecord",
    "User",
    "first_feed_row",
    "new_public_id",
    "new_shift_uid",
]

ROLES = ("admin", "member")
DEFAULT_FEED_PAST_DAYS = 30
DEFAULT_FEED_FUTURE_DAYS = 365


def new_public_id() -> str:
    """Return a random, URL-safe public identifier for a user."""
    return "u_" + secrets.token_urlsafe(12)


def new_shift_uid() -> str:
    """Return a permanent, globally unique iCalendar UID for a new shift."""
    return f"{uuid.uuid4()}@oncal-feed"


class User(Base):
    """A person who is on call; owns a feed and calendar connections."""

    __tablename__ = "users"

    id: Mapped[int] = mapped_column(primary_key=True)
    public_id: Mapped[str] = mapped_column(String(40), unique=True, default=new_public_id)
    email: Mapped[str] = mapped_column(String(320), unique=True)
    display_name: Mapped[str] = mapped_column(String(200))
    time_zone: Mapped[str] = mapped_column(String(64), default="UTC")
    password_hash: Mapped[str | None] = mapped_column(String(255))
    # Part of every sign-in session; bumping it ends them all, copied cookies included
    # (signing out, a new password). Migration 0007.
    session_generation: Mapped[int] = mapped_column(default=1, server_default="1")
    # "admin" | "member" (ROLES). Admins see everyone's feeds and connections and manage
    # API keys (migration 0008; everyone existing before it is a member).
    role: Mapped[str] = mapped_column(String(16), default="member", server_default="member")
    # Retired by migration 0014, which moved them to the user's first `Feed` (and push
    # options to each connection): nothing reads them; they stay for the release before.
    feed_generation: Mapped[int] = mapped_column(default=1)
    feed_past_days: Mapped[int] = mapped_column(default=DEFAULT_FEED_PAST_DAYS)
    feed_future_days: Mapped[int] = mapped_column(default=DEFAULT_FEED_FUTURE_DAYS)
    feed_busy: Mapped[bool] = mapped_column(default=False)
    feed_schedule_keys: Mapped[list[str] | None] = mapped_column(JSON)
    feed_reminder_minutes: Mapped[int | None]
    # Bumped by every write that changes what this user's calendars should show;
    # part of the feed ETag, so a conditional GET is answered without reading shifts.
    calendar_version: Mapped[int] = mapped_column(default=1)
    # When anything a personal feed of this user shows last changed (events, name): with
    # the feed's own `changed_at`, its Last-Modified, the same from every process and
    # machine. Set with every `calendar_version` bump, and by `_note_user_change` below.
    calendar_changed_at: Mapped[datetime | None] = mapped_column(default=utcnow)
    feed_last_fetched_at: Mapped[datetime | None]  # retired by migration 0014
    feed_last_client: Mapped[str | None] = mapped_column(String(64))  # retired by 0014
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow)

    shifts: Mapped[list[Shift]] = relationship(back_populates="user", lazy="raise")


# Columns of `users` that change what the user's personal feeds say (the ETag's inputs).
FEED_SHAPING_COLUMNS = ("calendar_version", "display_name")


@event.listens_for(User, "before_update")
def _note_user_change(_mapper: Any, _connection: Any, user: User) -> None:
    """Date every ORM change of a feed-shaping column in `calendar_changed_at`.

    One rule for every writer (the API, the settings page, the CLI), so no code path can
    change a feed while its Last-Modified stays put. Core UPDATEs (the shift store's
    version bump) set the column themselves.
    """
    state = inspect(user)
    if any(state.attrs[name].history.has_changes() for name in FEED_SHAPING_COLUMNS):
        user.calendar_changed_at = utcnow()


@event.listens_for(User, "after_insert")
def _give_first_feed(_mapper: Any, connection: Any, user: User) -> None:
    """Every person starts with a personal feed, whose public id is their own.

    Sharing the id is what kept every URL issued before named feeds (migration 0014)
    working; new people get it the same way, so there is one kind of first feed.
    """
    connection.execute(
        insert(Feed).values(first_feed_row(user.id, user.public_id, user.created_at or utcnow()))
    )


def first_feed_row(user_id: int, public_id: str, now: datetime) -> dict[str, Any]:
    """The `feeds` row of a person's first feed, for writers that insert users in bulk
    (which bypasses `_give_first_feed`)."""
    return {
        "public_id": public_id,
        "user_id": user_id,
        "name": FIRST_FEED_NAME,
        "kind": "personal",
        "generation": 1,
        "busy": False,
        "past_days": DEFAULT_FEED_PAST_DAYS,
        "future_days": DEFAULT_FEED_FUTURE_DAYS,
        "changed_at": now,
        "created_at": now,
        "updated_at": now,
    }


FIRST_FEED_NAME = "My shifts"
FEED_KINDS = ("personal", "schedule")


class Feed(Base):
    """A calendar feed URL a person owns: their own shifts, or a whole schedule's.

    The token in the URL is `[public_id, generation]`, signed (`feeds.tokens`); bumping
    `generation` replaces the URL, deleting the row revokes it. A person's first feed
    shares their public id (migration 0014). Options are the feed's own, so one person's
    feeds can differ (a phone's with reminders, a shared one as busy time).
    """

    __tablename__ = "feeds"

    id: Mapped[int] = mapped_column(primary_key=True)
    public_id: Mapped[str] = mapped_column(String(40), unique=True, default=new_public_id)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    name: Mapped[str] = mapped_column(String(200))
    kind: Mapped[str] = mapped_column(String(16), default="personal")  # FEED_KINDS
    # A schedule feed's schedule; None for a personal feed.
    schedule_id: Mapped[int | None] = mapped_column(ForeignKey("schedules.id", ondelete="CASCADE"))
    # A personal feed's schedules (None: all of them).
    schedule_keys: Mapped[list[str] | None] = mapped_column(JSON)
    generation: Mapped[int] = mapped_column(default=1)
    busy: Mapped[bool] = mapped_column(default=False)
    # Minutes before each shift starts that calendars remind; None for no reminder
    # (0 is "at the start").
    reminder_minutes: Mapped[int | None]
    # Minutes before each shift ends (the hand-off) that calendars remind; None for none.
    handoff_reminder_minutes: Mapped[int | None]
    past_days: Mapped[int] = mapped_column(default=DEFAULT_FEED_PAST_DAYS)
    future_days: Mapped[int] = mapped_column(default=DEFAULT_FEED_FUTURE_DAYS)
    last_fetched_at: Mapped[datetime | None]
    last_client: Mapped[str | None] = mapped_column(String(64))
    # When the feed's own options or name last changed (part of its Last-Modified).
    changed_at: Mapped[datetime | None] = mapped_column(default=utcnow)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow)

    user: Mapped[User] = relationship(lazy="raise")
    schedule: Mapped[Schedule | None] = relationship(lazy="raise")


# Columns of `feeds` that change what the feed says.
FEED_OPTION_COLUMNS = (
    "name",
    "kind",
    "schedule_id",
    "schedule_keys",
    "generation",
    "busy",
    "reminder_minutes",
    "handoff_reminder_minutes",
    "past_days",
    "future_days",
)


@event.listens_for(Feed, "before_update")
def _note_feed_change(_mapper: Any, _connection: Any, feed: Feed) -> None:
    """Date every ORM change of a feed's options in `changed_at` (its Last-Modified)."""
    state = inspect(feed)
    if any(state.attrs[name].history.has_changes() for name in FEED_OPTION_COLUMNS):
        feed.changed_at = utcnow()


class Schedule(Base):
    """An on-call schedule (a rotation), identified by a stable key such as `payments`."""

    __tablename__ = "schedules"

    id: Mapped[int] = mapped_column(primary_key=True)
    key: Mapped[str] = mapped_column(String(64), unique=True)
    name: Mapped[str] = mapped_column(String(200))
    time_zone: Mapped[str] = mapped_column(String(64))
    url: Mapped[str | None] = mapped_column(String(2000))
    # Rises when the name or zone changes; added to each shift's revision for SEQUENCE,
    # so renaming a schedule updates every event without rewriting every shift row.
    revision: Mapped[int] = mapped_column(default=1)
    # Bumped by every write that changes what the schedule's feeds show (its shifts, its
    # people's names), and dated: the ETag and Last-Modified of schedule feeds.
    calendar_version: Mapped[int] = mapped_column(default=1, server_default="1")
    calendar_changed_at: Mapped[datetime | None] = mapped_column(default=utcnow)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow)


class Shift(Base):
    """One person on call for one schedule between two instants.

    `uid` is permanent (a moved shift is an update, not a new event). `revision` rises
    only when the rendered content changes, and becomes the iCalendar SEQUENCE. A deleted
    shift keeps its row as a tombstone (`deleted_at`) so feeds can announce the cancellation.
    """

    __tablename__ = "shifts"
    __table_args__ = (
        UniqueConstraint("schedule_id", "external_id"),
        # "Shifts of user U overlapping [A, B)" scans this index from A - max length to B.
        Index("ix_shifts_user_id_starts_at", "user_id", "starts_at"),
        Index("ix_shifts_schedule_id_starts_at", "schedule_id", "starts_at"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    uid: Mapped[str] = mapped_column(String(255), unique=True, default=new_shift_uid)
    schedule_id: Mapped[int] = mapped_column(ForeignKey("schedules.id", ondelete="CASCADE"))
    external_id: Mapped[str] = mapped_column(String(255))
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"))
    starts_at: Mapped[datetime]
    ends_at: Mapped[datetime]
    role: Mapped[str] = mapped_column(String(32), default="primary")
    notes: Mapped[str] = mapped_column(Text, default="")
    # Names of whoever is on call right before and after (same schedule and role), kept
    # on the row so that a neighbour's change bumps this shift's revision like any edit.
    handover_from: Mapped[str | None] = mapped_column(String(200))
    handover_to: Mapped[str | None] = mapped_column(String(200))
    # Who else is on call in the schedule during the shift (other people, any role), as
    # [{"name", "role", "email"}] by start; kept on the row for the same reason (0015).
    also_on_call: Mapped[list[dict[str, str]] | None] = mapped_column(JSON)
    revision: Mapped[int] = mapped_column(default=1)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow)
    deleted_at: Mapped[datetime | None]

    user: Mapped[User] = relationship(back_populates="shifts", lazy="raise")
    schedule: Mapped[Schedule] = relationship(lazy="raise")


class ApiKey(Base):
    """A bearer key for the JSON API; only a SHA-256 of the secret is stored."""

    __tablename__ = "api_keys"

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(200))
    prefix: Mapped[str] = mapped_column(String(16))
    secret_hash: Mapped[str] = mapped_column(String(64), unique=True)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    last_used_at: Mapped[datetime | None]
    revoked_at: Mapped[datetime | None]


class CalendarConnection(Base):
    """A user's OAuth link to one remote calendar (Google or Microsoft) and its sync state.

    Tokens are kept only as ciphertext (`token_ciphertext`, see connections.vault). The
    `lease_*` columns are a per-connection lock that works across worker machines.

    A *schedule push* (migration 0016) is a row of its own under its user's connection
    (`parent_id`): it writes the whole of `schedule_id` into a dedicated calendar of the
    same account, through the parent's grant (it holds no tokens), with its own calendar,
    records, lease and sync state, so the same engine runs it. One account connection per
    user and provider; one push per connection and schedule.
    """

    __tablename__ = "calendar_connections"
    __table_args__ = (
        Index(
            "uq_calendar_connections_account",
            "user_id",
            "provider",
            unique=True,
            sqlite_where=text("parent_id IS NULL"),
            postgresql_where=text("parent_id IS NULL"),
        ),
        UniqueConstraint("parent_id", "schedule_id"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"))
    provider: Mapped[str] = mapped_column(String(16))  # "google" | "microsoft"
    # Set on a schedule push only: the account connection whose grant it uses, and the
    # schedule it shows.
    parent_id: Mapped[int | None] = mapped_column(
        ForeignKey("calendar_connections.id", ondelete="CASCADE"), index=True
    )
    schedule_id: Mapped[int | None] = mapped_column(
        ForeignKey("schedules.id", ondelete="CASCADE"), index=True
    )
    # "active" | "needs_reauth" | "error" (last sync failed; retried) | "disconnected"
    status: Mapped[str] = mapped_column(String(16), default="active")
    account_email: Mapped[str | None] = mapped_column(String(320))
    calendar_id: Mapped[str | None] = mapped_column(String(1024))
    calendar_name: Mapped[str | None] = mapped_column(String(200))
    owns_calendar: Mapped[bool] = mapped_column(default=True)  # we created it
    use_primary: Mapped[bool] = mapped_column(default=False)
    scopes: Mapped[str] = mapped_column(Text, default="")
    token_ciphertext: Mapped[str | None] = mapped_column(Text)
    token_expires_at: Mapped[datetime | None]
    window_days: Mapped[int] = mapped_column(default=90)
    # What is pushed (migration 0014; before, the user's feed options): busy or free,
    # which schedules (None: all), and a reminder N minutes before each shift.
    busy: Mapped[bool] = mapped_column(default=False, server_default=false())
    schedule_keys: Mapped[list[str] | None] = mapped_column(JSON)
    reminder_minutes: Mapped[int | None]
    # Part of every Google event id we derive; bumped when an old id can't be reused.
    id_generation: Mapped[int] = mapped_column(default=1)
    # A change is waiting to be pushed (indexed: the sweep also looks for stale ones).
    dirty_since: Mapped[datetime | None] = mapped_column(index=True)
    last_sync_started_at: Mapped[datetime | None]
    last_sync_at: Mapped[datetime | None]  # last finished attempt, good or bad
    last_success_at: Mapped[datetime | None]
    last_window_start: Mapped[datetime | None]  # window of the last successful sync
    last_full_check_at: Mapped[datetime | None]  # last listing of remote events
    last_created: Mapped[int] = mapped_column(default=0)
    last_updated: Mapped[int] = mapped_column(default=0)
    last_deleted: Mapped[int] = mapped_column(default=0)
    last_error: Mapped[str | None] = mapped_column(Text)  # plain words, never a secret
    last_error_at: Mapped[datetime | None]
    failure_count: Mapped[int] = mapped_column(default=0)
    next_retry_at: Mapped[datetime | None]
    # When push sync should next look at this connection: a debounced change, a retry, the
    # daily window move or full check, or the expiry of a crashed worker's lease. One
    # indexed column keeps the periodic sweep a single range scan (migration 0004).
    sync_due_at: Mapped[datetime | None] = mapped_column(index=True)
    # Since when the connection has been overdue, kept from the sweep's first claim until a
    # sync starts: the claim moves `sync_due_at` ahead, so only this shows how long a
    # connection has waited in a backed-up queue (the queue lag metric; migration 0006).
    overdue_since: Mapped[datetime | None] = mapped_column(index=True)
    lease_owner: Mapped[str | None] = mapped_column(String(64))
    lease_expires_at: Mapped[datetime | None]
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow)

    user: Mapped[User] = relationship(lazy="raise")


def mark_needs_reauth(
    connection: CalendarConnection, error: Exception | None = None, now: datetime | None = None
) -> None:
    """Pause the connection until the user reconnects (after `AuthorizationLost`).

    Sets the columns only; the caller's transaction (or the sync engine's conditional
    UPDATE) writes them.
    """
    now = now or utcnow()
    connection.status = "needs_reauth"
    connection.last_error = str(error) if error is not None else "Reconnect the calendar."
    connection.last_error_at = now
    connection.next_retry_at = None
    connection.updated_at = now


class SyncRecord(Base):
    """What one remote calendar holds for one shift: the sync engine's status store.

    Written *before* a remote call with the intended remote id (state `creating`), so a
    crash between the call and its answer is recovered without a duplicate.
    """

    __tablename__ = "sync_records"
    __table_args__ = (UniqueConstraint("connection_id", "shift_id"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    connection_id: Mapped[int] = mapped_column(
        ForeignKey("calendar_connections.id", ondelete="CASCADE"), index=True
    )
    shift_id: Mapped[int] = mapped_column(ForeignKey("shifts.id", ondelete="CASCADE"))
    shift_uid: Mapped[str] = mapped_column(String(255))
    # Google: our deterministic event id. Graph: the server's id, once known.
    remote_id: Mapped[str | None] = mapped_column(String(1024))
    # Graph: the transactionId sent with the create, so a retry can't duplicate.
    transaction_id: Mapped[str | None] = mapped_column(String(64))
    # "creating" (intent committed, outcome unknown) | "synced" | "deleting"
    state: Mapped[str] = mapped_column(String(16))
    content_hash: Mapped[str | None] = mapped_column(String(64))  # of what we last wrote
    remote_etag: Mapped[str | None] = mapped_column(String(255))
    updated_at: Mapped[datetime] = mapped_column(default=utcnow)


class OAuthFlow(Base):
    """An OAuth authorization in progress, kept server-side between connect and callback.

    The signed `state` sent to the provider carries only `id`; the PKCE verifier (Google)
    or MSAL's flow dict (Microsoft) stays here, encrypted like tokens. A flow is used
    once and expires ten minutes after `created_at`.
    """

    __tablename__ = "oauth_flows"

    id: Mapped[str] = mapped_column(String(64), primary_key=True)  # random flow key
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    provider: Mapped[str] = mapped_column(String(16))  # "google" | "microsoft"
    secret_ciphertext: Mapped[str] = mapped_column(Text)
    use_primary: Mapped[bool] = mapped_column(default=False)
    created_at: Mapped[datetime] = mapped_column(default=utcnow, index=True)


class Source(Base):
    """A polled feed of shifts for one schedule: another tool's ICS feed or PagerDuty's API.

    The URL and API token are kept only as ciphertext (`secret_ciphertext`, the token
    vault's keys); `redacted` is what pages and API answers show instead. `snapshot` is the
    last good state (the occurrences read, as JSON), so a broken poll changes nothing and
    several sources of one schedule are imported together. The `lease_*` columns keep two
    workers from polling one source at once (migration 0010).
    """

    __tablename__ = "sources"

    id: Mapped[int] = mapped_column(primary_key=True)
    schedule_id: Mapped[int] = mapped_column(
        ForeignKey("schedules.id", ondelete="CASCADE"), index=True
    )
    kind: Mapped[str] = mapped_column(String(16))  # "ics" | "pagerduty"
    name: Mapped[str] = mapped_column(String(200))
    # Every event of a per-user feed is this user's shift (when nothing else names a person).
    user_id: Mapped[int | None] = mapped_column(
        ForeignKey("users.id", ondelete="CASCADE"), index=True
    )
    role: Mapped[str] = mapped_column(String(32), default="primary")
    secret_ciphertext: Mapped[str] = mapped_column(Text)
    redacted: Mapped[str] = mapped_column(String(300))
    options: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    poll_interval: Mapped[int] = mapped_column(default=60)  # seconds
    # "new" | "ok" | "failing" (fetch or parse failed; retried) | "held" (looks broken:
    # waiting for an admin to accept the new state)
    status: Mapped[str] = mapped_column(String(16), default="new")
    etag: Mapped[str | None] = mapped_column(String(300))
    last_modified: Mapped[str | None] = mapped_column(String(100))
    # Start of the last full read (a 200): a 304 stands for "unchanged" only within its day,
    # since the window moves daily and may take in more occurrences of a series.
    last_full_read_at: Mapped[datetime | None]
    snapshot: Mapped[list[dict[str, Any]] | None] = mapped_column(JSON)
    last_poll_at: Mapped[datetime | None]
    last_success_at: Mapped[datetime | None]
    last_change_at: Mapped[datetime | None]
    events_read: Mapped[int] = mapped_column(default=0)
    shifts_mapped: Mapped[int] = mapped_column(default=0)
    unmatched_count: Mapped[int] = mapped_column(default=0)
    unmatched_examples: Mapped[list[str] | None] = mapped_column(JSON)
    last_error: Mapped[str | None] = mapped_column(Text)  # plain words, never a secret
    last_error_at: Mapped[datetime | None]
    failure_count: Mapped[int] = mapped_column(default=0)
    next_poll_at: Mapped[datetime | None] = mapped_column(index=True)
    lease_owner: Mapped[str | None] = mapped_column(String(64))
    lease_expires_at: Mapped[datetime | None]
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow)

    schedule: Mapped[Schedule] = relationship(lazy="raise")
    user: Mapped[User | None] = relationship(lazy="raise")


class Invitation(Base):
    """A single-use, expiring link that lets a person set a password.

    `kind` is "invite" (a first password) or "reset"; only a SHA-256 of the link's secret
    is stored, so the database alone can't be turned into working links. A link is spent
    once `used_at` is set, and a newer link for the same user replaces older ones.
    """

    __tablename__ = "invitations"

    id: Mapped[int] = mapped_column(primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    kind: Mapped[str] = mapped_column(String(16))  # "invite" | "reset"
    secret_hash: Mapped[str] = mapped_column(String(64), unique=True)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    expires_at: Mapped[datetime]
    used_at: Mapped[datetime | None]

    user: Mapped[User] = relationship(lazy="raise")


class DemoCalendar(Base):
    """A calendar of the built-in demo calendar provider (`providers.demo`), demo mode only.

    It stands in for a Google or Outlook calendar, so it is keyed by its own id and owned
    by an account email, not tied to our users: the provider knows only what a remote
    calendar service would know.
    """

    __tablename__ = "demo_calendars"

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    owner_email: Mapped[str] = mapped_column(String(320), index=True)
    name: Mapped[str] = mapped_column(String(200))
    time_zone: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class DemoEvent(Base):
    """An event in a `DemoCalendar`, as the demo provider holds it.

    Deleted events stay as `cancelled` under their id (Google's semantics), so a repeated
    insert with the same id is a conflict and an update restores the event.
    """

    __tablename__ = "demo_events"

    calendar_id: Mapped[str] = mapped_column(
        ForeignKey("demo_calendars.id", ondelete="CASCADE"), primary_key=True
    )
    remote_id: Mapped[str] = mapped_column(String(255), primary_key=True)
    uid: Mapped[str] = mapped_column(String(255))
    summary: Mapped[str] = mapped_column(Text)
    description: Mapped[str] = mapped_column(Text)
    starts_at: Mapped[datetime]
    ends_at: Mapped[datetime]
    # The whole EventSpec as JSON (ISO dates), so what was written can be read back as is.
    spec: Mapped[dict[str, object]] = mapped_column(JSON)
    etag: Mapped[str] = mapped_column(String(64))
    cancelled: Mapped[bool] = mapped_column(default=False)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow)


class CalendarCreation(Base):
    """An intent to create the app's own calendar, committed before `calendars.insert`.

    The row is deleted in the same transaction that saves the new calendar's id, so one
    that outlives its creation says a crash (or an answer lost on the way) may have left
    a calendar we never learnt the id of. Google's `calendar.app.created` scope cannot
    list calendars, so such a row becomes a notice on the settings page (`orphan_since`),
    kept until the user dismisses it. See `oncal_feed.calendar_creation`.
    """

    __tablename__ = "calendar_creations"

    id: Mapped[int] = mapped_column(primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    provider: Mapped[str] = mapped_column(String(16))
    calendar_name: Mapped[str] = mapped_column(String(200))
    request_id: Mapped[str] = mapped_column(String(36), unique=True)
    started_at: Mapped[datetime] = mapped_column()
    # Set once the creation is known to be abandoned: an empty calendar may be left.
    orphan_since: Mapped[datetime | None] = mapped_column(default=None)
