"""Sources in the store, and one poll of a source: fetch → read → check → map → import.

A poll never deletes on a bad answer. It changes shifts only through the window import
(`shifts.import_window`) with "these are all the shifts of this schedule in this window",
made of this source's new occurrences plus every other source's last good state, so
several sources can feed one schedule. A schedule that has sources is theirs within the
window: shifts written to it by other means are replaced there.

Checks before anything is written (see `_check_shrink` and `ics.read_calendar`): an
error, an HTML page, a truncated or unparsable body change nothing and mark the source
failing (retried with back-off); a calendar that suddenly lost every event, or more than
half of them, is *held*: the last good state stays until an admin accepts the new state
(`accept=True`) or the feed recovers.
"""

from __future__ import annotations

import hashlib
import os
import secrets
import socket
import threading
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Literal
from urllib.parse import urlsplit

from flask import Flask
from sqlalchemy import bindparam, or_, select, update
from sqlalchemy.orm import Session, defer

from oncal_feed import shifts
from oncal_feed.connections.vault import TokenVault, VaultError, get_vault
from oncal_feed.db import get_database
from oncal_feed.errors import NotFound, ValidationError
from oncal_feed.models import Schedule, Shift, Source, User
from oncal_feed.notify import shifts_changed
from oncal_feed.shifts import WriteResult
from oncal_feed.sources.errors import SourceProblem
from oncal_feed.sources.fetch import Fetched, FetchLimits, Resolver, fetch
from oncal_feed.sources.ics import Occurrence, Reading, read_calendar
from oncal_feed.sources.mapping import Directory, map_occurrences
from oncal_feed.sources.pagerduty import read_oncalls
from oncal_feed.sync.schedule import backoff_delay
from oncal_feed.validation import ScheduleInput, ShiftInput, SourceInput, parse_source

__all__ = [
    "PollReport",
    "create_personal_source",
    "create_source",
    "delete_source",
    "external_id",
    "fetch_limits",
    "get_source",
    "list_sources",
    "personal_sources",
    "poll_source",
    "redact_url",
    "source_window",
    "update_source",
]

# A poll that finds fewer than this share of the events it had is held (see module doc).
SHRINK_LIMIT = 0.5
LEASE_TTL = timedelta(minutes=5)
NOTES_LIMIT = 500

Outcome = Literal["changed", "unchanged", "not-modified", "failed", "held", "busy", "missing"]


@dataclass(frozen=True)
class PollReport:
    """What one poll did: its outcome, the write's counts, the problem and the next poll."""

    source_id: int
    outcome: Outcome
    result: WriteResult | None = None
    problem: str | None = None
    next_poll_at: datetime | None = None

    def as_dict(self) -> dict[str, object]:
        """The report as JSON (API answers, CLI output)."""
        body: dict[str, object] = {"outcome": self.outcome, "problem": self.problem}
        if self.result is not None:
            body.update(self.result.as_dict())
        return body


# ---------------------------------------------------------------- pure helpers


def redact_url(url: str) -> str:
    """Show a feed URL without its secret parts: scheme and host only."""
    split = urlsplit(url.strip())
    scheme = split.scheme.lower()
    return f"{scheme}://{split.hostname or '?'}/…"


def external_id(source_id: int, key: str) -> str:
    """The stable external id of a source's occurrence (source id + UID + RECURRENCE-ID)."""
    digest = hashlib.sha256(key.encode("utf-8")).hexdigest()[:40]
    return f"src{source_id}-{digest}"


def source_window(now: datetime, days: int) -> tuple[datetime, datetime]:
    """The [start, end) a poll reads: from today's UTC midnight `days` ahead.

    It moves once a day, so within a day a 304 truly means "nothing changed here".
    """
    start = now.astimezone(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
    return start, start + timedelta(days=days)


def fetch_limits(config: dict[str, Any] | Any) -> FetchLimits:
    """The app's fetch limits (sizes, time, redirects, allow-listed networks)."""
    return FetchLimits(
        max_bytes=int(config["SOURCE_MAX_BYTES"]),
        timeout=float(config["SOURCE_TIMEOUT"]),
        max_redirects=int(config["SOURCE_MAX_REDIRECTS"]),
        allowed_networks=tuple(config["SOURCE_ALLOWED_NETWORKS"]),
    )


def _in_window(occurrences: list[Occurrence], start: datetime, end: datetime) -> list[Occurrence]:
    return [o for o in occurrences if o.starts_at < end and o.ends_at > start]


def _check_shrink(previous: int, now_read: int) -> str | None:
    """Say why a reading that shrank this much is held, or None when it looks fine."""
    if previous == 0 or now_read >= previous * SHRINK_LIMIT:
        return None
    if now_read == 0:
        return (
            f"The feed is suddenly empty (it had {previous} events). Nothing was changed; "
            "accept the new state if the shifts really are gone."
        )
    return (
        f"The feed suddenly has {now_read} events where it had {previous}. Nothing was "
        "changed; accept the new state if that is right."
    )


# ---------------------------------------------------------------- the store


def _secret(data: SourceInput, kind: str, old: dict[str, Any] | None) -> dict[str, Any]:
    secret = dict(old or {})
    if kind == "ics" and data.url is not None:
        secret["url"] = data.url
    if kind == "pagerduty" and data.api_token is not None:
        secret["token"] = data.api_token
    return secret


def _redacted(kind: str, secret: dict[str, Any], options: dict[str, Any]) -> str:
    if kind == "pagerduty":
        return "PagerDuty API, schedules " + ", ".join(options.get("schedule_ids") or [])
    return redact_url(str(secret.get("url", "")))


def _user_id(session: Session, email: str | None) -> int | None:
    if email is None:
        return None
    user_id = session.scalar(select(User.id).where(User.email == email))
    if user_id is None:
        raise NotFound("user", email, field="user_email")
    return user_id


def create_source(
    session: Session,
    schedule: Schedule,
    data: SourceInput,
    vault: TokenVault,
    now: datetime,
    default_interval: int,
) -> Source:
    """Add a source to the schedule (its URL or token encrypted); due for a poll at once."""
    assert data.kind is not None and data.name is not None
    options: dict[str, Any] = {}
    if data.pagerduty_schedule_ids is not None:
        options["schedule_ids"] = list(data.pagerduty_schedule_ids)
    secret = _secret(data, data.kind, None)
    source = Source(
        schedule_id=schedule.id,
        kind=data.kind,
        name=data.name,
        user_id=_user_id(session, data.user_email),
        role=data.role or "primary",
        secret_ciphertext=vault.encrypt(secret),
        redacted=_redacted(data.kind, secret, options),
        options=options,
        poll_interval=data.poll_interval or default_interval,
        status="new",
        events_read=0,
        shifts_mapped=0,
        unmatched_count=0,
        failure_count=0,
        next_poll_at=now,
        created_at=now,
        updated_at=now,
    )
    session.add(source)
    session.flush()
    return source


def create_personal_source(
    session: Session,
    user: User,
    name: str,
    url: str | None,
    vault: TokenVault,
    now: datetime,
    default_interval: int,
) -> Source:
    """Add a person's own feed from another tool, in a schedule of its own.

    Every event of it is that person's shift (nothing in it may name someone else), and
    its schedule holds nothing but it, so it can't replace anyone else's shifts.
    """
    data = parse_source({"kind": "ics", "name": name, "url": url})
    key = f"my-{user.id}-{secrets.token_hex(4)}"
    schedule, _created, _result = shifts.upsert_schedule(
        session, key, ScheduleInput(f"{name} ({user.display_name})"[:200], user.time_zone), now
    )
    source = create_source(session, schedule, data, vault, now, default_interval)
    source.user_id = user.id
    source.options = {**source.options, "personal": True}
    session.flush()
    return source


def personal_sources(session: Session, user: User) -> list[Source]:
    """The person's own feeds (added on the settings page), oldest first."""
    found = session.scalars(
        select(Source).where(Source.user_id == user.id).order_by(Source.id)
    ).all()
    return [source for source in found if (source.options or {}).get("personal")]


def update_source(
    session: Session, source: Source, data: SourceInput, vault: TokenVault, now: datetime
) -> Source:
    """Change a source's fields; a new URL or token forgets the feed's ETag and polls soon."""
    if source.kind == "ics" and (data.api_token or data.pagerduty_schedule_ids):
        field = "api_token" if data.api_token else "pagerduty_schedule_ids"
        raise ValidationError.single(field, "only a pagerduty source has this")
    if source.kind == "pagerduty" and data.url is not None:
        raise ValidationError.single("url", "a pagerduty source reads PagerDuty's API; give no url")
    if data.name is not None:
        source.name = data.name
    if data.role is not None:
        source.role = data.role
    if data.poll_interval is not None:
        source.poll_interval = data.poll_interval
    if data.user_email is not None:
        source.user_id = _user_id(session, data.user_email)
    options = dict(source.options or {})
    if data.pagerduty_schedule_ids is not None:
        options["schedule_ids"] = list(data.pagerduty_schedule_ids)
        source.options = options
    if data.url is not None or data.api_token is not None or data.pagerduty_schedule_ids:
        try:
            old = vault.decrypt(source.secret_ciphertext)
        except VaultError:
            old = {}
        secret = _secret(data, source.kind, old)
        source.secret_ciphertext = vault.encrypt(secret)
        source.redacted = _redacted(source.kind, secret, options)
        source.etag = source.last_modified = None
        source.next_poll_at = now
    source.updated_at = now
    session.flush()
    return source


def list_sources(session: Session, schedule: Schedule) -> list[Source]:
    """The schedule's sources, oldest first."""
    return list(
        session.scalars(select(Source).where(Source.schedule_id == schedule.id).order_by(Source.id))
    )


def get_source(session: Session, schedule: Schedule | None, source_id: int) -> Source:
    """Return the source (of `schedule`, when given) or raise `NotFound`."""
    source = session.get(Source, source_id)
    if source is None or (schedule is not None and source.schedule_id != schedule.id):
        raise NotFound("source", str(source_id), field="source_id")
    return source


def delete_source(session: Session, source: Source, now: datetime) -> WriteResult:
    """Remove a source and cancel the shifts it brought (they become tombstones)."""
    schedule = session.get(Schedule, source.schedule_id)
    assert schedule is not None
    prefix = external_id(source.id, "").rsplit("-", 1)[0] + "-"
    result = WriteResult()
    live = session.scalars(
        select(Shift.external_id).where(
            Shift.schedule_id == schedule.id,
            Shift.external_id.startswith(prefix, autoescape=True),
            Shift.deleted_at.is_(None),
        )
    ).all()
    for shift_external_id in live:
        result.merge(shifts.delete_shift(session, schedule, shift_external_id, now))
    session.delete(source)
    session.flush()
    return result


# ---------------------------------------------------------------- polling


def _owner() -> str:
    return f"{socket.gethostname()}:{os.getpid()}:{threading.get_ident()}:{uuid.uuid4().hex[:8]}"


# Built once: a sweep of a thousand unchanged sources runs it a thousand times.
_CLAIM = (
    update(Source)
    .where(
        Source.id == bindparam("source_id"),
        or_(Source.lease_owner.is_(None), Source.lease_expires_at < bindparam("now")),
    )
    .values(
        lease_owner=bindparam("owner"),
        lease_expires_at=bindparam("expires"),
        last_poll_at=bindparam("now"),
    )
    .returning(Source)
    .options(defer(Source.snapshot))
    .execution_options(synchronize_session=False)
)


def _acquire(session: Session, source_id: int, owner: str, now: datetime) -> Source | None:
    """Take the source's lease with one conditional UPDATE (works across machines).

    The same statement records the poll's moment and returns the row (its snapshot, a big
    JSON for a big feed, is loaded only when the feed changed): an unchanged poll is this
    and the release with the outcome, nothing else. None if another worker holds the lease.
    """
    taken = session.scalars(
        _CLAIM,
        {"source_id": source_id, "owner": owner, "now": now, "expires": now + LEASE_TTL},
    ).one_or_none()
    session.commit()
    return taken


def _release(session: Session, source_id: int, owner: str) -> None:
    session.execute(
        update(Source)
        .where(Source.id == source_id, Source.lease_owner == owner)
        .values(lease_owner=None, lease_expires_at=None)
        .execution_options(synchronize_session=False)
    )
    session.commit()


def poll_source(
    app: Flask,
    source_id: int,
    now: datetime,
    *,
    accept: bool = False,
    resolve: Resolver | None = None,
) -> PollReport:
    """Poll one source now (if no other worker is polling it) and record the outcome.

    `accept` takes whatever the source now holds even when it looks shrunk (an admin's
    explicit "accept new state"). Push sync is nudged for every user whose shifts
    changed. Call inside the app's context.
    """
    database = get_database(app)
    owner = _owner()
    # One session for the lease and the poll: an unchanged (304) poll is mostly this
    # bookkeeping, and a session (and its pooled connection) per step showed in profiles.
    with database.sessionmaker() as session:
        source = _acquire(session, source_id, owner, now)
        if source is None:
            missing = session.get(Source, source_id) is None
            return PollReport(source_id, "missing" if missing else "busy")
        released = False
        try:
            report = _poll(app, session, source, now, accept, resolve)
            if source.lease_owner == owner:
                # Released with the outcome: one commit fewer on every poll.
                source.lease_owner, source.lease_expires_at = None, None
            session.commit()
            released = True
        finally:
            if not released:
                session.rollback()
                _release(session, source_id, owner)
    if report.result is not None:
        shifts_changed(report.result.touched_user_ids)
    return report


def _read(
    app: Flask,
    source: Source,
    secret: dict[str, Any],
    window: tuple[datetime, datetime],
    zone: Callable[[], str],
    conditional: bool,
    resolve: Resolver | None,
) -> tuple[Reading | None, Fetched | None]:
    """Fetch and read the source; (None, answer) for a 304.

    `zone` gives the schedule's zone; it is asked only for a body to read.
    """
    limits = fetch_limits(app.config)
    kwargs: dict[str, Any] = {} if resolve is None else {"resolve": resolve}
    if source.kind == "pagerduty":
        reading = read_oncalls(
            app.config["PAGERDUTY_API_BASE"],
            str(secret.get("token", "")),
            list(source.options.get("schedule_ids") or []),
            *window,
            limits=limits,
            **kwargs,
        )
        return reading, None
    headers = {}
    if conditional and source.etag:
        headers["If-None-Match"] = source.etag
    if conditional and source.last_modified:
        headers["If-Modified-Since"] = source.last_modified
    answer = fetch(str(secret.get("url", "")), limits=limits, headers=headers, **kwargs)
    if answer.status == 304:
        return None, answer
    return read_calendar(answer.body, zone(), *window), answer


def _poll(
    app: Flask,
    session: Session,
    source: Source,
    now: datetime,
    accept: bool,
    resolve: Resolver | None,
) -> PollReport:
    window = source_window(now, int(app.config["SOURCE_WINDOW_DAYS"]))
    try:
        secret = get_vault(app).decrypt(source.secret_ciphertext)
        # A 304 only stands for "unchanged" if the last full read was today (same window).
        conditional = (
            not accept
            and source.status == "ok"
            and source.last_full_read_at is not None
            and source.last_full_read_at >= window[0]
        )
        reading, answer = _read(
            app,
            source,
            secret,
            window,
            lambda: _schedule(session, source).time_zone,
            conditional,
            resolve,
        )
    except VaultError:
        return _failed(
            source,
            SourceProblem(
                "The stored address or token can't be decrypted with the current keys; "
                "enter it again."
            ),
            now,
        )
    except SourceProblem as exc:
        return _failed(source, exc, now)
    if reading is None:
        return _succeeded(source, now, "not-modified")
    schedule = _schedule(session, source)
    previous = _in_window(_snapshot(source), *window)
    held = None if accept else _check_shrink(len(previous), len(reading.occurrences))
    if held is not None:
        source.status = "held"
        source.last_error, source.last_error_at = held, now
        source.next_poll_at = now + timedelta(seconds=source.poll_interval)
        return PollReport(source.id, "held", problem=held, next_poll_at=source.next_poll_at)

    sources = [s for s in _schedule_sources(session, schedule) if s.id != source.id]
    items, unmatched, examples, mine = _schedule_items(
        session, schedule, source, reading.occurrences, sources, window
    )
    result = shifts.import_window(session, schedule, *window, items, now)
    relinked = bool(reading.link) and schedule.url is None
    if relinked:
        # The schedule's events link to its page at the source, unless an admin set one.
        linked = ScheduleInput(schedule.name, schedule.time_zone, reading.link)
        touched = shifts.upsert_schedule(session, schedule.key, linked, now)[2]
        result.touched_user_ids |= touched.touched_user_ids
        result.touched_schedule_ids |= touched.touched_schedule_ids
    changed = relinked or bool(result.created or result.updated or result.deleted)
    snapshot = [o.as_json() for o in reading.occurrences]
    if snapshot != source.snapshot:
        source.snapshot = snapshot
    source.events_read = len(reading.occurrences)
    source.shifts_mapped = mine
    source.unmatched_count = unmatched
    if examples != (source.unmatched_examples or []):
        source.unmatched_examples = examples
    source.last_full_read_at = now
    if answer is not None:
        source.etag, source.last_modified = answer.etag, answer.last_modified
    if changed:
        source.last_change_at = now
    report = _succeeded(source, now, "changed" if changed else "unchanged")
    return PollReport(source.id, report.outcome, result, None, report.next_poll_at)


def _schedule(session: Session, source: Source) -> Schedule:
    schedule = session.get(Schedule, source.schedule_id)
    assert schedule is not None
    return schedule


def _snapshot(source: Source) -> list[Occurrence]:
    return [Occurrence.from_json(item) for item in source.snapshot or []]


def _schedule_sources(session: Session, schedule: Schedule) -> list[Source]:
    return list(session.scalars(select(Source).where(Source.schedule_id == schedule.id)))


def _schedule_items(
    session: Session,
    schedule: Schedule,
    source: Source,
    occurrences: list[Occurrence],
    others: list[Source],
    window: tuple[datetime, datetime],
) -> tuple[list[ShiftInput], int, list[str], int]:
    """All the schedule's shifts in the window: this source's new ones, the others' last good.

    Returns the items, this source's unmatched count and examples, and its mapped count.
    """
    directory = Directory(
        (email, name) for email, name in session.execute(select(User.email, User.display_name))
    )
    fixed = dict(
        session.execute(
            select(User.id, User.email).where(
                User.id.in_({s.user_id for s in [source, *others] if s.user_id is not None})
            )
        ).all()
    )
    items: list[ShiftInput] = []
    unmatched, examples, mine = 0, [], 0
    nobody = Directory(())
    for each, found in [(source, occurrences)] + [(o, _snapshot(o)) for o in others]:
        # A person's own feed names only them, whatever its events say.
        names = nobody if (each.options or {}).get("personal") else directory
        mapped = map_occurrences(_in_window(found, *window), names, fixed.get(each.user_id or 0))
        if each is source:
            unmatched, examples, mine = mapped.unmatched, mapped.examples, len(mapped.matched)
        for occurrence, email in mapped.matched:
            items.append(
                ShiftInput(
                    external_id=external_id(each.id, occurrence.key),
                    user_email=email,
                    starts_at=occurrence.starts_at,
                    ends_at=occurrence.ends_at,
                    role=occurrence.role or each.role,
                    notes=occurrence.summary[:NOTES_LIMIT],
                )
            )
    return items, unmatched, examples, mine


def _succeeded(source: Source, now: datetime, outcome: Outcome) -> PollReport:
    if source.status != "ok":
        source.status = "ok"
    if source.failure_count:
        source.failure_count = 0
    if source.last_error is not None:
        source.last_error = None
    source.last_success_at = now
    source.next_poll_at = now + timedelta(seconds=source.poll_interval)
    return PollReport(source.id, outcome, next_poll_at=source.next_poll_at)


def _failed(source: Source, exc: SourceProblem, now: datetime) -> PollReport:
    """Record a failed poll: plain words, and a next poll backed off (never sooner than due)."""
    source.status = "failing"
    source.failure_count += 1
    source.last_error, source.last_error_at = exc.problem, now
    interval = timedelta(seconds=source.poll_interval)
    # Doubling from the source's own interval: a feed polled every minute that keeps
    # failing is asked every 2, 4, 8 ... minutes, up to an hour.
    delay = max(interval, backoff_delay(source.failure_count, exc.retry_after, base=interval))
    source.next_poll_at = now + delay
    return PollReport(source.id, "failed", problem=exc.problem, next_poll_at=source.next_poll_at)
