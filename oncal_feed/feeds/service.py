"""Answering a feed request: token, options, validators, cached rendering, fetch records.

No Flask here: the view turns the request into a `FeedQuery` and the `FeedAnswer` into a
response. The order of work is what makes feeds cheap:

1. the token and the feed row (joined with its owner, and for a schedule feed its
   schedule) decide 404, and give the ETag — the owner's or the schedule's
   `calendar_version` rises with every write that changes what the feed shows. On
   PostgreSQL the row usually comes from this process's memory (`feeds.user_cache`, kept
   current by notifications), else from one indexed read;
2. a matching `If-None-Match` (or `If-Modified-Since`) is answered with 304 right there,
   before any shift is read (and, with the row in memory, with no database work at all);
3. a whole body is served from this process's cache keyed by that ETag, or else from
   the cache all processes share in Redis (`FEED_CACHE_URL`), when there is one;
4. only on a miss are shifts read (one range scan of `(user_id, starts_at)`, or of
   `(schedule_id, starts_at)` for a schedule feed) and joined
   from per-event bytes cached by content hash; icalendar renders only new events.
"""

from __future__ import annotations

import gzip
import hashlib
import logging
from collections.abc import Callable, Mapping, Sequence
from contextlib import ExitStack
from dataclasses import dataclass, fields, replace
from datetime import UTC, datetime, timedelta
from functools import cache, lru_cache, partial
from importlib.metadata import version as package_version
from typing import Any, cast

import icalendar
from sqlalchemy import Connection, Table, bindparam, case, func, select, update
from sqlalchemy.orm import Session
from werkzeug.http import http_date

from oncal_feed.db import Database, utcnow, with_reconnect
from oncal_feed.errors import FieldError, NotFound, ValidationError
from oncal_feed.feeds.cache import ByteLRU, SharedBodies
from oncal_feed.feeds.tokens import read_feed_token
from oncal_feed.feeds.user_cache import FeedUserCache
from oncal_feed.models import Feed, Schedule, User
from oncal_feed.rendering import RenderOptions, shift_event
from oncal_feed.rendering.event import RENDER_VERSION
from oncal_feed.rendering.ics import calendar_bytes, vevent_bytes
from oncal_feed.shifts import shift_facts, shifts_for_schedule, shifts_for_user
from oncal_feed.validation import parse_schedule_key, repeated_parameters

__all__ = [
    "FeedAnswer",
    "FeedNotFound",
    "FeedOptions",
    "FeedQuery",
    "FeedRow",
    "FeedService",
    "FeedWindow",
    "calendar_title",
    "client_kind",
    "day_count",
    "feed_etag",
    "feed_window",
    "fetch_record_due",
    "last_modified_of",
    "parse_feed_options",
]

log = logging.getLogger(__name__)

PAST_DAYS_RANGE = (0, 366)
FUTURE_DAYS_RANGE = (1, 1096)
MAX_SCHEDULE_KEYS = 50
# Query parameters of a feed that may be given once (`schedule` may be repeated).
_SINGLE_VALUED = ("past_days", "future_days", "busy")
# Cancelled shifts stay in feeds this long, so clients that cache events drop them.
TOMBSTONE_DAYS = 30
# `feeds.last_fetched_at` is "about when", not an access log: write at most this often.
FETCH_RECORD_INTERVAL = timedelta(minutes=10)
# Private: the body is one person's schedule, so shared caches (proxies, CDNs) keep out.
# Five minutes: calendar apps poll on their own schedule (15 minutes to a day) and mostly
# ignore it; it spares repeated fetches by browsers and scripts, and a change still shows
# within minutes where it is honoured.
CACHE_CONTROL = "private, max-age=300"
CONTENT_TYPE = "text/calendar; charset=utf-8"
CONTENT_DISPOSITION = 'inline; filename="oncall.ics"'
# Bump when the feed frame (calendar name, description) changes for the same data.
FEED_FORMAT_VERSION = 1
# The library's version is part of every ETag: an upgrade may change bytes, and a strong
# ETag must change with them.
_ICALENDAR_VERSION = icalendar.__version__

# Substrings of User-Agent (lowercased) by client kind, first match wins. Microsoft comes
# before Apple because Outlook for Mac names macOS in its User-Agent.
_CLIENT_KINDS: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("google", ("google-calendar-importer", "googlecalendar")),
    ("microsoft", ("outlook", "microsoft", "msoffice", "exchange")),
    ("apple", ("ical/", "calendaragent", "dataaccessd")),
    ("thunderbird", ("thunderbird",)),
    ("curl", ("curl/",)),
)


@dataclass(frozen=True)
class FeedRow:
    """The columns of a feed row (with its owner's and schedule's) a request needs, read
    without the ORM: building model instances costs more than the whole rest of a 304.

    `version` and `data_changed_at` are the owner's `calendar_version` and
    `calendar_changed_at` for a personal feed, the schedule's for a schedule feed; `title`
    is the owner's display name, or the schedule's name.
    """

    id: int
    public_id: str
    generation: int
    kind: str
    user_id: int
    schedule_id: int | None
    past_days: int
    future_days: int
    busy: bool
    schedule_keys: list[str] | None
    reminder_minutes: int | None
    handoff_reminder_minutes: int | None
    last_fetched_at: datetime | None
    last_client: str | None
    changed_at: datetime | None
    version: int
    title: str
    data_changed_at: datetime | None

    @property
    def tags(self) -> tuple[str, ...]:
        """What changes of other rows this one depends on, as the notifications name them."""
        if self.schedule_id is not None:
            return (f"user:{self.user_id}", f"schedule:{self.schedule_id}")
        return (f"user:{self.user_id}",)


_FEEDS = cast(Table, Feed.__table__)
_USERS = cast(Table, User.__table__)
_SCHEDULES = cast(Table, Schedule.__table__)
_FEED_COLUMNS = [_FEEDS.c[f.name] for f in fields(FeedRow)[:15]]
# Built once: constructing a statement costs as much as running this one.
_FEED_QUERY = (
    select(
        *_FEED_COLUMNS,
        func.coalesce(_SCHEDULES.c.calendar_version, _USERS.c.calendar_version),
        func.coalesce(_SCHEDULES.c.name, _USERS.c.display_name),
        case(
            (_FEEDS.c.schedule_id.is_(None), _USERS.c.calendar_changed_at),
            else_=_SCHEDULES.c.calendar_changed_at,
        ),
    )
    .select_from(
        _FEEDS.join(_USERS, _USERS.c.id == _FEEDS.c.user_id).outerjoin(
            _SCHEDULES, _SCHEDULES.c.id == _FEEDS.c.schedule_id
        )
    )
    .where(_FEEDS.c.public_id == bindparam("public_id"))
)


class FeedNotFound(NotFound):
    """No live feed at this token: bad, forged, revoked or unknown, deliberately alike."""

    def __init__(self) -> None:
        super().__init__("feed", "")


@dataclass(frozen=True)
class FeedOptions:
    """A request's effective feed choices; `schedule_keys` is sorted, empty for all."""

    past_days: int
    future_days: int
    schedule_keys: tuple[str, ...]
    busy: bool
    reminder_minutes: int | None = None
    handoff_reminder_minutes: int | None = None


@dataclass(frozen=True)
class FeedWindow:
    """Whole UTC days the feed covers, and since when tombstones are shown."""

    day: datetime  # today, 00:00 UTC
    start: datetime
    end: datetime
    deleted_since: datetime


@dataclass(frozen=True)
class FeedQuery:
    """What the view read from the request, as plain values.

    `if_none_match` is None when the header is absent; otherwise the opaque tags it lists
    (weak or not, without quotes), or `{"*"}`.
    """

    token: str
    args: Mapping[str, Sequence[str]]
    if_none_match: frozenset[str] | None = None
    if_modified_since: datetime | None = None
    accepts_gzip: bool = False
    user_agent: str = ""


@dataclass(frozen=True)
class FeedAnswer:
    """Status, body and headers of a feed response."""

    status: int
    body: bytes
    headers: dict[str, str]


def feed_window(now: datetime, options: FeedOptions) -> FeedWindow:
    """Return `[today - past_days, today + future_days + 1 day)` in whole UTC days.

    Whole days keep the bytes, and so the ETag, the same all day long.
    """
    day = now.astimezone(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
    return FeedWindow(
        day=day,
        start=day - timedelta(days=options.past_days),
        end=day + timedelta(days=options.future_days + 1),
        deleted_since=day - timedelta(days=TOMBSTONE_DAYS),
    )


def feed_etag(feed: FeedRow, options: FeedOptions, window: FeedWindow, base_url: str) -> str:
    """Return the opaque ETag of a feed, computed from the feed row alone.

    It covers everything the bytes depend on: the rendering code, the owner's (or the
    schedule's) `calendar_version` (bumped by every write that changes their events,
    renames included), the name in the calendar name, the window's day and the options.
    """
    parts = (
        RENDER_VERSION,
        FEED_FORMAT_VERSION,
        _ICALENDAR_VERSION,
        feed.public_id,
        feed.generation,
        feed.kind,
        feed.user_id,
        feed.version,
        feed.title,
        window.day.date().isoformat(),
        options.past_days,
        options.future_days,
        options.busy,
        options.reminder_minutes,
        options.handoff_reminder_minutes,
        ",".join(options.schedule_keys),
        base_url,
    )
    return hashlib.sha256("\x1f".join(map(str, parts)).encode()).hexdigest()[:32]


def client_kind(user_agent: str) -> str:
    """Name the calendar client from its User-Agent: google, microsoft, apple, ... other."""
    agent = user_agent.lower()
    for kind, needles in _CLIENT_KINDS:
        if any(needle in agent for needle in needles):
            return kind
    return "other"


def parse_feed_options(args: Mapping[str, Sequence[str]], feed: FeedRow) -> FeedOptions:
    """Read `past_days`, `future_days`, `schedule` (repeatable) and `busy` from a query.

    Missing values fall back to the feed's settings; bad ones raise `ValidationError`
    naming each parameter. Other parameters (cache busters) are ignored. A `schedule`
    key is checked for its spelling only: a key no schedule has filters to no shifts,
    exactly like a schedule the user has no shifts in, so a feed URL cannot be used to
    learn which schedule keys exist.
    """
    # Only our own parameters: unknown ones (cache busters) are ignored, repeated or not.
    errors = repeated_parameters({name: args[name] for name in _SINGLE_VALUED if name in args})
    past_days = _whole_number(args, "past_days", feed.past_days, PAST_DAYS_RANGE, errors)
    future_days = _whole_number(args, "future_days", feed.future_days, FUTURE_DAYS_RANGE, errors)
    busy = _flag(args, "busy", feed.busy, errors)
    if "schedule" in args:
        keys = _schedule_keys(args["schedule"], errors)
    else:
        keys = tuple(sorted(set(feed.schedule_keys or ())))
    if errors:
        raise ValidationError(errors)
    if feed.kind == "schedule":
        keys = ()  # the feed is its schedule's; a filter could only empty it
    return FeedOptions(
        past_days, future_days, keys, busy, feed.reminder_minutes, feed.handoff_reminder_minutes
    )


def _single(args: Mapping[str, Sequence[str]], name: str, errors: list[FieldError]) -> str | None:
    values = args.get(name)
    if not values or len(values) > 1:  # repeated: `repeated_parameters` says so
        return None
    return values[0]


def _whole_number(
    args: Mapping[str, Sequence[str]],
    name: str,
    default: int,
    bounds: tuple[int, int],
    errors: list[FieldError],
) -> int:
    low, high = bounds
    raw = _single(args, name, errors)
    if raw is None:
        # A stored setting outside the range must not widen the window either.
        return min(max(default, low), high)
    number = day_count(raw, bounds)
    if number is None:
        errors.append(FieldError(name, f"must be a whole number from {low} to {high}"))
        return low
    return number


def day_count(raw: str | None, bounds: tuple[int, int]) -> int | None:
    """Read a number of days (the feed's and the settings page's), or of minutes (the
    settings page's reminder), or None if it isn't one within `bounds`.

    ASCII digits only (str.isdigit() alone accepts "٣" and "²"), and at most four of them:
    every range here ends below 10,000, and int() refuses strings over 4,300 digits.
    """
    low, high = bounds
    if raw and raw.isascii() and raw.isdigit() and len(raw) <= 4 and low <= int(raw) <= high:
        return int(raw)
    return None


def _flag(
    args: Mapping[str, Sequence[str]], name: str, default: bool, errors: list[FieldError]
) -> bool:
    raw = _single(args, name, errors)
    if raw is None:
        return default
    if raw not in ("0", "1"):
        errors.append(FieldError(name, "must be 1 or 0"))
    return raw == "1"


def _schedule_keys(given: Sequence[str], errors: list[FieldError]) -> tuple[str, ...]:
    keys = set()
    for raw in given:
        try:
            keys.add(parse_schedule_key(raw))
        except ValidationError:
            errors.append(
                FieldError("schedule", "must be a schedule key: lowercase letters, digits, - and _")
            )
            return ()
    if len(keys) > MAX_SCHEDULE_KEYS:
        errors.append(FieldError("schedule", f"at most {MAX_SCHEDULE_KEYS} schedules"))
        return ()
    return tuple(sorted(keys))


def calendar_title(name: str) -> str:
    """The name a feed gives its calendar, from the person's or the schedule's name (the
    settings page offers it too)."""
    return f"On-call — {name}"


def _calendar_name(feed: FeedRow, options: FeedOptions) -> tuple[str, str]:
    name = calendar_title(feed.title)
    if feed.kind == "schedule":
        return name, f"Everyone's on-call shifts of {feed.title}, published by oncal-feed."
    if options.schedule_keys:
        # Two filtered subscriptions side by side should not look the same.
        name += f" ({', '.join(options.schedule_keys)})"
    return name, f"On-call shifts of {feed.title}, published by oncal-feed."


class FeedService:
    """Answers feed requests for one app; holds that process's caches.

    `event_cache` maps `EventSpec.cache_key` to VEVENT bytes; `body_cache` maps an ETag
    (plus encoding) to a whole body, and `shared` (optional) an ETag to a gzip body for
    every process; `users` (optional, on
    PostgreSQL) holds feed rows until a notification says they changed.
    """

    def __init__(
        self,
        secret_key: str,
        base_url: str,
        *,
        event_cache_bytes: int,
        body_cache_bytes: int,
        token_entries: int = 20_000,
        shared: SharedBodies | None = None,
        users: FeedUserCache | None = None,
    ) -> None:
        self.secret_key = secret_key
        self.base_url = base_url
        # Checking a signature costs a tenth of a 304, and the same few thousand tokens come
        # back all day; forged ones can only push real ones out, never in.
        self._read_token = lru_cache(maxsize=token_entries)(partial(read_feed_token, secret_key))
        self.event_cache = ByteLRU(event_cache_bytes)
        self.body_cache = ByteLRU(body_cache_bytes)
        self.shared = shared
        self.users = users

    @classmethod
    def from_config(
        cls, config: Mapping[str, Any], users: FeedUserCache | None = None
    ) -> FeedService:
        """Build the service from app settings (and the user cache, which needs the database)."""
        shared = None
        if config.get("FEED_CACHE_URL"):
            # The package version keeps deployments of different code apart while they
            # overlap (the ETag already names the rendering code's version).
            namespace = f"oncal-feed:{package_version('oncal-feed')}:feed:"
            shared = SharedBodies(config["FEED_CACHE_URL"], namespace)
        return cls(
            config["SECRET_KEY"],
            config["BASE_URL"],
            event_cache_bytes=config["FEED_EVENT_CACHE_BYTES"],
            body_cache_bytes=config["FEED_BODY_CACHE_BYTES"],
            shared=shared,
            users=users,
        )

    def find_feed(self, connect: Callable[[], Connection], token: str) -> FeedRow:
        """Return the feed whose current URL `token` names, or raise `FeedNotFound`.

        From the user cache when it holds the row; else read with `connect()`, and cached.
        """
        found = self._read_token(token)
        if found is None:
            raise FeedNotFound()
        public_id, generation = found
        feed = self.users.get(public_id) if self.users is not None else None
        # A token newer than the cached row proves the row stale (its rotation's
        # notification is still on the way): read the database.
        if feed is None or feed.generation < generation:
            epoch = self.users.epoch() if self.users is not None else None
            row = connect().execute(_FEED_QUERY, {"public_id": public_id}).first()
            if row is None:
                raise FeedNotFound()
            feed = FeedRow(*row)  # type: ignore[call-arg]  # the query's columns, in order
            if self.users is not None:
                self.users.put(feed, epoch)
        if feed.generation != generation:
            raise FeedNotFound()
        return feed

    def answer(
        self, database: Database, query: FeedQuery, clock: Callable[[], datetime] = utcnow
    ) -> FeedAnswer:
        """Answer one GET or HEAD of a feed: 200 with the body, or 304.

        Raises `FeedNotFound` (404) and `ValidationError` (400); records the fetch.

        Database work runs on one connection in autocommit mode, checked out on first
        need: a one-row read needs no BEGIN and ROLLBACK, with no ping before the checkout
        a 304 costs one round trip on PostgreSQL, and none when the user row is cached. A
        connection the server dropped is retried once.
        """

        def attempt() -> FeedAnswer:
            with ExitStack() as stack:
                # Checked out on the first call; later calls get the same connection.
                connect = cache(lambda: stack.enter_context(database.autocommit_engine.connect()))
                return self._answer(connect, query, clock)

        return with_reconnect(attempt)

    def _answer(
        self, connect: Callable[[], Connection], query: FeedQuery, clock: Callable[[], datetime]
    ) -> FeedAnswer:
        feed = self.find_feed(connect, query.token)
        # The clock is read after the feed row: a slow request must not date newer data
        # (its first-seen time, the Last-Modified) earlier than the moment it was read.
        now = clock()
        options = parse_feed_options(query.args, feed)
        window = feed_window(now, options)
        tag = feed_etag(feed, options, window, self.base_url)
        encoding = "gzip" if query.accepts_gzip else "identity"
        etag = f'"{tag}-gzip"' if query.accepts_gzip else f'"{tag}"'
        last_modified = last_modified_of(feed, window, now)
        headers = {"ETag": etag, "Cache-Control": CACHE_CONTROL, "Vary": "Accept-Encoding"}
        if last_modified is not None:
            headers["Last-Modified"] = http_date(last_modified)
        if _not_modified(query, etag.strip('"'), last_modified, now):
            answer = FeedAnswer(304, b"", headers)
        else:
            body = self._body(connect, feed, options, window, tag, encoding)
            headers.update(
                {
                    "Content-Type": CONTENT_TYPE,
                    "Content-Disposition": CONTENT_DISPOSITION,
                }
            )
            if encoding == "gzip":
                headers["Content-Encoding"] = "gzip"
            answer = FeedAnswer(200, body, headers)
        client = client_kind(query.user_agent)
        if fetch_record_due(feed, client, now):
            recorded = record_fetch(connect, feed, client, now)
            if recorded is not None and self.users is not None:
                self.users.replace(feed, recorded)
        return answer

    def _body(
        self,
        connect: Callable[[], Connection],
        feed: FeedRow,
        options: FeedOptions,
        window: FeedWindow,
        tag: str,
        encoding: str,
    ) -> bytes:
        key = f"{tag}:{encoding}"
        body = self.body_cache.get(key)
        if body is None:
            body = self._uncached_body(connect, feed, options, window, tag, encoding)
            self.body_cache.put(key, body)
        return body

    def _uncached_body(
        self,
        connect: Callable[[], Connection],
        feed: FeedRow,
        options: FeedOptions,
        window: FeedWindow,
        tag: str,
        encoding: str,
    ) -> bytes:
        """A body this process has not cached in `encoding`: from the other encoding, the
        shared cache (which holds gzip only), or rendered — and then shared."""
        other = self.body_cache.get(f"{tag}:{'identity' if encoding == 'gzip' else 'gzip'}")
        if other is not None:
            return _gzip(other) if encoding == "gzip" else gzip.decompress(other)
        zipped = self.shared.get(tag) if self.shared is not None else None
        if zipped is not None:
            return zipped if encoding == "gzip" else gzip.decompress(zipped)
        with Session(bind=connect()) as session:
            raw = self.render(session, feed, options, window)
        if encoding == "identity" and self.shared is None:
            return raw
        zipped = _gzip(raw)
        if self.shared is not None:
            self.shared.put(tag, zipped)
        return zipped if encoding == "gzip" else raw

    def render(
        self, session: Session, feed: FeedRow, options: FeedOptions, window: FeedWindow
    ) -> bytes:
        """Read the feed's shifts in `window` and assemble the calendar from event bytes.

        The feed row was read first, and a write bumps `calendar_version` in the same
        transaction as its shifts. So under READ COMMITTED the events read here are at
        least as new as the ETag's version, never older: at worst a body is filed under a
        version that no new request computes any more. No stricter isolation is needed
        (REPEATABLE READ cost PostgreSQL round trips on every request).

        A schedule feed shows everyone's shifts, titled by person; its reminders are for
        the owner's own shifts only (a reminder for each colleague's would be noise).
        """
        plain = RenderOptions(
            base_url=self.base_url, busy=options.busy, team=feed.kind == "schedule"
        )
        reminded = replace(
            plain,
            reminder_minutes=options.reminder_minutes,
            handoff_reminder_minutes=options.handoff_reminder_minutes,
        )
        if feed.schedule_id is not None:
            shifts = shifts_for_schedule(
                session,
                feed.schedule_id,
                window.start,
                window.end,
                deleted_since=window.deleted_since,
            )
            facts = [
                (shift_facts(shift, shift.user.display_name), shift.user_id == feed.user_id)
                for shift in shifts
            ]
        else:
            shifts = shifts_for_user(
                session,
                feed.user_id,
                window.start,
                window.end,
                schedule_keys=options.schedule_keys or None,
                deleted_since=window.deleted_since,
            )
            facts = [(shift_facts(shift), True) for shift in shifts]
        events = []
        for fact, own in facts:
            spec = shift_event(fact, reminded if own else plain)
            data = self.event_cache.get(spec.cache_key)
            if data is None:
                data = vevent_bytes(spec)
                self.event_cache.put(spec.cache_key, data)
            events.append(data)
        name, description = _calendar_name(feed, options)
        return calendar_bytes(name, description, events)


def last_modified_of(feed: FeedRow, window: FeedWindow, now: datetime) -> datetime | None:
    """Return the Last-Modified of a feed, derived from the data, or None while weak.

    The bytes change when anything a feed shows changes (events, names: the owner's or
    schedule's `calendar_changed_at`), when its options change (`feeds.changed_at`) and
    when the window moves on at midnight (`window.day`). The latest is the same in every
    process and on every machine, so a client's If-Modified-Since means the same wherever
    it lands. HTTP dates have one-second resolution: until that second is over a second
    change could share it (RFC 9110 §8.8.2.2 calls such a date weak), so none is sent
    then; ETag with If-None-Match is exact and takes precedence.
    """
    changed = max(
        feed.data_changed_at or window.day, feed.changed_at or window.day, window.day
    ).replace(microsecond=0)
    return changed if now.replace(microsecond=0) > changed else None


def _gzip(raw: bytes) -> bytes:
    # mtime=0 and no file name: the same feed compresses to the same bytes every time.
    return gzip.compress(raw, compresslevel=6, mtime=0)


def _not_modified(
    query: FeedQuery, opaque_tag: str, last_modified: datetime | None, now: datetime
) -> bool:
    """Evaluate If-None-Match, or else If-Modified-Since (RFC 9110 §13.2.2)."""
    if query.if_none_match is not None:
        return "*" in query.if_none_match or opaque_tag in query.if_none_match
    since = query.if_modified_since
    # A date in the future is a client's clock error, not proof of freshness.
    return since is not None and last_modified is not None and last_modified <= since <= now


def fetch_record_due(feed: FeedRow, client: str, now: datetime) -> bool:
    """Whether to note this fetch: the last note is 10 minutes old, or by another client."""
    last = feed.last_fetched_at
    return last is None or now - last >= FETCH_RECORD_INTERVAL or feed.last_client != client


def record_fetch(
    connect: Callable[[], Connection], feed: FeedRow, client: str, now: datetime
) -> FeedRow | None:
    """Note when and by what kind of client the feed was fetched; return the row as noted.

    Runs after the answer is ready, as one autocommitted UPDATE on `connect()` (which
    must be in autocommit mode); a failure, connecting included, is logged and ignored
    (None): with the feed row cached, the answer may not have needed the database at all,
    and a note must never cost the client its feed.
    """
    try:
        connect().execute(
            update(_FEEDS)
            .where(_FEEDS.c.id == feed.id)
            .values(last_fetched_at=now, last_client=client)
        )
    except Exception as exc:  # a busy database or lost connection, never worth a 500
        log.warning("could not record fetch of feed %s: %s", feed.id, type(exc).__name__)
        return None
    return replace(feed, last_fetched_at=now, last_client=client)
