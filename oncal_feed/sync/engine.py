"""The push-sync engine: `sync_connection()` and its run loop.

`sync_connection()` reconciles one calendar connection: it takes the connection's lease
(`sync.lease`, so two workers never sync it at once), reads what the calendar should
show and the status store (`sync.status`), asks the pure planner (`sync.plan`) what to
change, and applies the actions through the provider, batched (`sync.apply`). Intent is
committed before every remote write — a `creating` record carrying the idempotency key
(Google's client-chosen event id, Graph's transactionId), or a `deleting` mark — so a
crash between a call and its answer is resolved on the next run without a duplicate.
Each batch's answers are recorded in their own small transaction as soon as they arrive.

Failures are states: the connection's status columns say when it last synced, what
changed, what went wrong in plain words and when it will be retried (`sync.schedule`).

Imports the other modules of `sync`, the models, the shift store, rendering and the
providers' interface; never `connections`, `api` or `web`.
"""

from __future__ import annotations

import logging
import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Literal, cast

from sqlalchemy import case, select, update
from sqlalchemy.orm import InstrumentedAttribute, Session, sessionmaker

from oncal_feed.calendar_creation import Target, create_owned_calendar, finish_creation
from oncal_feed.db import Database, instant_json
from oncal_feed.metrics import record_run
from oncal_feed.models import CalendarConnection, Shift, User, mark_needs_reauth
from oncal_feed.providers.base import (
    CALENDAR_NAME,
    AuthorizationLost,
    CalendarProvider,
    ProviderError,
    RateLimited,
    RemoteEvent,
    RemoteNotFound,
    TransientError,
)
from oncal_feed.providers.registry import provider_info
from oncal_feed.rendering.event import TEAM_UID_PREFIX, EventSpec, RenderOptions, shift_event
from oncal_feed.shifts import shift_facts, shifts_for_schedule, shifts_for_user
from oncal_feed.sync.apply import Applier, BatchSizer, CalendarGone, RetryBudget
from oncal_feed.sync.lease import (
    LEASE_TTL,
    Clock,
    Lease,
    LeaseLost,
    default_owner,
    rowcount,
    transaction,
    why_not_acquired,
)
from oncal_feed.sync.plan import (
    Action,
    Create,
    Prune,
    Record,
    Recover,
    Update,
    plan,
    unattributed,
)
from oncal_feed.sync.schedule import (
    FULL_CHECK_INTERVAL,
    LATE_WRITE_RECHECK,
    PROGRESS_RETRY,
    backoff_delay,
    full_check_due,
    full_check_stamp,
    next_pass_delay,
    next_window_move,
    pending_recheck,
    sync_window,
)
from oncal_feed.sync.status import StatusStore

__all__ = [
    "ProviderFactory",
    "ProviderSource",
    "SyncReport",
    "describe_error",
    "sync_connection",
]

log = logging.getLogger(__name__)

_SQL_CHUNK = 500

ProviderFactory = Callable[[CalendarConnection], CalendarProvider]
ProviderSource = CalendarProvider | ProviderFactory
SessionSource = Database | sessionmaker[Session]
Outcome = Literal[
    "ok", "partial", "failed", "needs_reauth", "busy", "inactive", "missing", "lease_lost"
]


@dataclass
class SyncReport:
    """What one `sync_connection()` call did.

    `outcome` is `ok`, `partial` (some writes landed, some failed: not a failure, the rest
    is retried promptly at `next_retry_at`), `failed` (nothing landed: retried with
    back-off at `next_retry_at`), `needs_reauth`, or one of
    `busy` (another worker holds the lease), `inactive` (paused or disconnected),
    `missing` (no such connection) and `lease_lost` (the lease expired mid-sync), which
    leave the status columns alone. `writes` counts remote write operations sent,
    `reads` remote lookups and listings. `provider` is the connection's provider, once
    the connection was read.
    """

    connection_id: int
    outcome: Outcome
    created: int = 0
    updated: int = 0
    deleted: int = 0
    writes: int = 0
    reads: int = 0
    full_check: bool = False
    error: str | None = None
    next_retry_at: datetime | None = None
    provider: str | None = None
    # The listing came through and what it found to repair is remembered on the records:
    # the day's full check is done even if some writes failed.
    checked: bool = False
    # An insert whose outcome is unknown was given up on as absent or (Graph) sent again,
    # and may still land: the calendar is listed again at `recheck_at`
    # (`LATE_WRITE_RECHECK` after the run, or as an earlier, killed run asked).
    late_insert_possible: bool = False
    recheck_at: datetime | None = None

    def as_dict(self) -> dict[str, object]:
        """Return the report as JSON-ready values."""
        return {
            "connection_id": self.connection_id,
            "outcome": self.outcome,
            "created": self.created,
            "updated": self.updated,
            "deleted": self.deleted,
            "full_check": self.full_check,
            "error": self.error,
            "next_retry_at": instant_json(self.next_retry_at),
        }


def describe_error(exc: ProviderError, provider: str) -> str:
    """Say what went wrong in plain words for the settings page (never a secret).

    Adapters already put the service's name, the HTTP status and the service's reason in
    their messages (and never a token or URL), so those are quoted as they are.
    """
    info = provider_info(provider)
    label = info.label if info is not None else "The calendar"
    detail = str(exc).strip().rstrip(".")
    if exc.status and str(exc.status) not in detail:
        detail = f"{detail} (HTTP {exc.status})"
    if isinstance(exc, AuthorizationLost):
        # One plain sentence: the adapter's detail ("invalid_grant", or its own wording
        # of the same thing) only repeated it.
        return (
            f"{label} access was revoked or has expired; reconnect the calendar to resume syncing."
        )
    if isinstance(exc, RateLimited):
        return f"{label} asked us to slow down (too many requests). Syncing resumes by itself."
    if isinstance(exc, TransientError):
        return f"Syncing with {label} failed for now: {detail}. It will be retried automatically."
    if isinstance(exc, RemoteNotFound):
        return (
            f"The calendar we write to in {label} no longer exists. "
            "Reconnect the calendar to choose where shifts go."
        )
    return f"{label} refused a change: {detail}."


# ---------------------------------------------------------------- what should be shown


def _factory(source: SessionSource) -> sessionmaker[Session]:
    return source.sessionmaker if isinstance(source, Database) else source


@dataclass
class _State:
    """Everything one pass reads from the database before planning."""

    connection: CalendarConnection
    user: User
    window: tuple[datetime, datetime]
    desired: dict[int, EventSpec]
    status: StatusStore
    kept: set[int]


def _load_state(
    factory: sessionmaker[Session],
    connection_id: int,
    now: datetime,
    base_url: str,
    window_days: int | None,
) -> _State:
    with factory() as session:
        connection = session.get(CalendarConnection, connection_id)
        assert connection is not None
        user = session.get(User, connection.user_id)
        assert user is not None
        start, end = sync_window(now, window_days or connection.window_days)
        desired = _desired(session, connection, base_url, (start, end))
        status = StatusStore.load(session, connection_id)
        # Every other record's shift is gone (deleted, reassigned, filtered out) and its
        # event will be deleted remotely, unless the shift just lies outside the window.
        others = [shift_id for shift_id in status.shift_ids() if shift_id not in desired]
        kept = set(_live_outside_window(session, connection, Shift.id, others, (start, end)))
        session.expunge_all()
    return _State(connection, user, (start, end), desired, status, kept)


def _desired(
    session: Session,
    connection: CalendarConnection,
    base_url: str,
    window: tuple[datetime, datetime],
) -> dict[int, EventSpec]:
    """What the connection's calendar should show: its user's shifts, or, for a schedule
    push, everyone's shifts in the schedule titled by person (as a schedule feed shows
    them: free, no reminders, which would ring for each colleague's shift)."""
    start, end = window
    if connection.schedule_id is not None:
        team = RenderOptions(base_url, team=True)
        return {
            shift.id: shift_event(shift_facts(shift, shift.user.display_name), team)
            for shift in shifts_for_schedule(session, connection.schedule_id, start, end)
        }
    # The connection's own options (migration 0014): each calendar may differ.
    options = RenderOptions(
        base_url, busy=connection.busy, reminder_minutes=connection.reminder_minutes
    )
    shifts = shifts_for_user(
        session, connection.user_id, start, end, schedule_keys=connection.schedule_keys or None
    )
    return {shift.id: shift_event(shift_facts(shift), options) for shift in shifts}


def _live_outside_window(
    session: Session,
    connection: CalendarConnection,
    key: InstrumentedAttribute[Any],
    values: Sequence[Any],
    window: tuple[datetime, datetime],
) -> dict[Any, int]:
    """Of the connection's live shifts (its user's, or its schedule's) whose `key` (id or
    UID) is in `values`, those outside the window, as key -> shift id: their events stay
    (as aged-out events do)."""
    start, end = window
    if connection.schedule_id is not None:
        mine = Shift.schedule_id == connection.schedule_id
    else:
        mine = Shift.user_id == connection.user_id
    found: dict[Any, int] = {}
    for offset in range(0, len(values), _SQL_CHUNK):
        rows = session.execute(
            select(key, Shift.id, Shift.starts_at, Shift.ends_at).where(
                key.in_(values[offset : offset + _SQL_CHUNK]), mine, Shift.deleted_at.is_(None)
            )
        )
        found.update({value: sid for value, sid, s, e in rows if not (s < end and e > start)})
    return found


def _adoptable(
    factory: sessionmaker[Session],
    connection: CalendarConnection,
    uids: Sequence[str],
    window: tuple[datetime, datetime],
) -> dict[str, int]:
    """Of these listed UIDs without a record, the connection's live shifts outside the
    window.

    Their events stay instead of being pruned as orphans; this matters only when records
    were lost, e.g. after restoring a database backup. A schedule push's events carry
    the schedule feed's UIDs (`schedule-` and the shift's).
    """
    prefix = TEAM_UID_PREFIX if connection.schedule_id is not None else ""
    shift_uids = [uid.removeprefix(prefix) for uid in uids if uid.startswith(prefix)]
    with factory() as session:
        found = _live_outside_window(session, connection, Shift.uid, shift_uids, window)
    return {prefix + uid: shift_id for uid, shift_id in found.items()}


# ---------------------------------------------------------------- the public entry point


def sync_connection(
    database: SessionSource,
    connection_id: int,
    provider: ProviderSource,
    now: datetime,
    *,
    base_url: str,
    full_check: bool | None = None,
    window_days: int | None = None,
    lease_owner: str | None = None,
    lease_ttl: timedelta = LEASE_TTL,
    rng: random.Random | None = None,
    batch_sizer: BatchSizer | None = None,
    on_lease: Callable[[datetime], None] | None = None,
    retry_for: timedelta = timedelta(0),
) -> SyncReport:
    """Reconcile one connection's remote calendar with its user's shifts; never raises
    for remote failures, which are recorded on the connection instead.

    `provider` is a ready adapter, or a factory called with the connection once its lease
    is held (building one may fail, e.g. with `AuthorizationLost`). `full_check=None`
    lists the remote calendar when the last listing is a day old (or never happened);
    True or False forces it. `window_days` overrides the connection's window for this
    run only. `base_url` is where event links point. `batch_sizer` carries batch sizes
    learned on a flaky link from one run of a connection to its next (give the same one
    to every run, as `sync.service.run_sync` does); without one, every run starts afresh.
    `on_lease` is called with the lease's expiry just before the run's first remote call
    (the queue uses it to have a worker that dies mid-sync taken over at that moment; a run
    with nothing to send calls nothing, and is over before a watch could matter).
    `retry_for` is how long the run may spend, in all, pausing to retry what throttles and
    faults turned away (a pass that landed some writes and failed others is followed by
    another); zero ends the run at its first throttle, as "Sync now" wants.

    Every run is counted in `oncal_sync_runs_total` by its outcome, or as `crashed` when
    an internal error escapes.
    """
    report = SyncReport(connection_id, "ok")
    try:
        _sync_connection(
            report, _factory(database), provider, now, base_url=base_url,
            full_check=full_check, window_days=window_days,
            lease_owner=lease_owner or default_owner(), lease_ttl=lease_ttl, rng=rng,
            sizer=batch_sizer or BatchSizer(), on_lease=on_lease, retry_for=retry_for,
        )  # fmt: skip
    except Exception:
        record_run(report.provider, "crashed")
        raise
    record_run(report.provider, report.outcome)
    return report


def _sync_connection(
    report: SyncReport,
    factory: sessionmaker[Session],
    provider: ProviderSource,
    now: datetime,
    *,
    base_url: str,
    full_check: bool | None,
    window_days: int | None,
    lease_owner: str,
    lease_ttl: timedelta,
    rng: random.Random | None,
    sizer: BatchSizer,
    on_lease: Callable[[datetime], None] | None,
    retry_for: timedelta,
) -> None:
    """Run `sync_connection()`, filling in `report`."""
    connection_id = report.connection_id
    lease = Lease(factory, connection_id, lease_owner, lease_ttl, Clock(now))
    if not lease.acquire(now):
        report.outcome, report.provider = why_not_acquired(factory, connection_id)
        return
    budget = RetryBudget(lease, retry_for.total_seconds())

    def announce() -> None:
        if on_lease is not None:
            on_lease(now + lease_ttl)

    adapter = _Adapter(provider, announce)
    state: _State | None = None
    passes: list[Applier] = []
    try:
        idle_passes = 0
        while True:
            checked = any(run.checked for run in passes)
            state = _one_pass(
                factory, lease, now, base_url, window_days, full_check, checked,
                adapter, sizer, budget, passes, report,
            )  # fmt: skip
            run = passes[-1]
            run.remember_batch_size()
            idle_passes = 0 if run.progress else idle_passes + 1
            if not _another_pass(run, budget, idle_passes):
                break
    except LeaseLost:
        log.warning("lease of connection %s was lost mid-sync", connection_id)
        _copy_counts(report, passes)
        report.outcome = "lease_lost"
        return
    except ProviderError as exc:
        _copy_counts(report, passes)
        _finish(lease, report, state, now, exc, rng)
        return
    except Exception:
        log.exception("push sync of connection %s failed", connection_id)
        _copy_counts(report, passes)
        internal = TransientError("an internal error stopped the sync")
        _finish(lease, report, state, now, internal, rng)
        raise
    _copy_counts(report, passes)
    _finish(lease, report, state, now, _failure(passes[-1]), rng)


def _one_pass(
    factory: sessionmaker[Session],
    lease: Lease,
    now: datetime,
    base_url: str,
    window_days: int | None,
    full_check: bool | None,
    checked: bool,
    adapter: _Adapter,
    sizer: BatchSizer,
    budget: RetryBudget,
    passes: list[Applier],
    report: SyncReport,
) -> _State:
    """Read, plan and apply once (twice when the calendar turns out deleted: once more
    into a new one); append each attempt's `Applier` to `passes` and return the state read."""
    for attempt in range(2):
        state = _load_state(factory, lease.connection_id, now, base_url, window_days)
        connection = state.connection
        report.provider = connection.provider
        if attempt == 0:
            if full_check is None:
                check = _listing_pays(state, now, checked)
            else:
                # A forced check lists once per run: later passes go by the records.
                check = full_check and not checked
        report.full_check = report.full_check or check
        run = Applier(
            factory, lease, state.status, adapter.source(connection),
            generation=connection.id_generation, sizer=sizer,
            provider_name=connection.provider, budget=budget,
        )  # fmt: skip
        passes.append(run)
        try:
            _sync_once(run, state, check)
            return state
        except CalendarGone:
            if attempt or not _forget_calendar(factory, state):
                raise RemoteNotFound("the calendar was deleted", 404) from None
            # A new calendar is made on the second attempt; list it to be sure.
            check = True
    raise AssertionError("unreachable")  # pragma: no cover


def _failure(run: Applier) -> ProviderError | None:
    """What a pass reports: the error that stopped it, else its first error."""
    return run.stop or (run.errors[0] if run.errors else None)


def _another_pass(run: Applier, budget: RetryBudget, idle_passes: int) -> bool:
    """Whether the run takes another pass after `run`, having paused within the budget.

    Only a passing failure is worth another pass (a throttle, a fault, a dropped
    connection): the failed writes are planned afresh from the records, so an uncertain
    insert is resolved first and never duplicated. How long it pauses is
    `sync.schedule.next_pass_delay`: briefly after progress, backing off after none.
    """
    failures = [e for e in (run.stop, *run.errors) if e is not None]
    if not any(isinstance(e, TransientError | RateLimited) for e in failures):
        return False
    if isinstance(run.stop, AuthorizationLost):
        return False
    throttles = [e.retry_after or 0 for e in failures if isinstance(e, RateLimited)]
    delay = next_pass_delay(idle_passes, bool(throttles), max(throttles, default=0))
    return delay is not None and budget.pause(delay)


# More uncertain inserts than this and one listing answers them all. Each one asked on
# its own is a call (Graph: a lookup by tag; Google: the insert again, and after a 409,
# which is what an insert that did land answers, an update as well), and every call is one
# more that a throttle or a fault can stop; a listing is a call per page (250 events), and
# the landed inserts it reads back as their shifts cost nothing more.
UNCERTAIN_BEFORE_LISTING = 3


def _listing_pays(state: _State, now: datetime, checked: bool) -> bool:
    """Whether this pass lists the calendar: the daily full check (unless an earlier pass of
    the run did it), or many inserts to resolve."""
    if not checked and full_check_due(state.connection, now):
        return True
    uncertain = sum(1 for record in state.status.records() if record.state == "creating")
    return uncertain > UNCERTAIN_BEFORE_LISTING


class _Adapter:
    """The run's calendar adapter, built on its first remote call and kept for every pass.

    `announce` is called just before it is built (once per run).
    """

    def __init__(self, provider: ProviderSource, announce: Callable[[], None]) -> None:
        self._provider = provider
        self._announce = announce
        self._built: CalendarProvider | None = None

    def source(self, connection: CalendarConnection) -> Callable[[], CalendarProvider]:
        """A builder for an `Applier`: the adapter for `connection`, built once."""

        def build() -> CalendarProvider:
            if self._built is None:
                self._announce()
                if hasattr(self._provider, "apply"):
                    self._built = cast(CalendarProvider, self._provider)
                else:
                    self._built = self._provider(connection)
            return self._built

        return build


def _sync_once(run: Applier, state: _State, check: bool) -> None:
    """Make sure there is a calendar, plan against the records (and listing), apply.

    When the full check's listing fails for a passing reason, the sync carries on from
    the records alone (the failure is reported, so the check is tried again soon), except
    for many uncertain inserts: asking about each on its own is what the listing was to
    spare, so they wait for the next pass's listing.
    """
    connection = state.connection
    kept = state.kept
    calendar_id = connection.calendar_id
    listing: list[RemoteEvent] | None = None
    listing_failed = False
    if calendar_id is None:
        calendar_id = _create_calendar(run, state)
        kept = set()
    elif check:
        try:
            listing = _list_remote(run, connection, calendar_id)
        except CalendarGone:
            if not _forget_calendar(run.factory, state):
                raise
            calendar_id = _create_calendar(run, state)
            kept = set()
        except TransientError as exc:
            run.errors.append(exc)
            listing_failed = True
    run.calendar_id = calendar_id
    records = state.status.records()
    inconsistent = listing is not None and bool(unattributed(listing, records))
    if inconsistent:
        # Never "everything is gone": carry on from the records without creating anything
        # (what looks missing may be there, untagged), and check again soon.
        run.errors.append(TransientError("the calendar's event list came back without our tags"))
        listing = None
    adoptable: dict[str, int] = {}
    if listing is not None:
        known = {spec.uid for spec in state.desired.values()} | {r.uid for r in records}
        unknown = sorted({e.uid for e in listing if e.uid is not None} - known)
        adoptable = _adoptable(run.factory, connection, unknown, state.window)
    actions = list(
        plan(
            state.desired,
            records,
            new_key=run.new_key,
            kept=kept,
            remote=listing,
            adoptable=adoptable,
        )
    )
    if inconsistent:
        actions = [action for action in actions if not isinstance(action, Create)]
    if listing_failed and sum(isinstance(a, Recover) for a in actions) > UNCERTAIN_BEFORE_LISTING:
        actions = [action for action in actions if not isinstance(action, Recover)]
    if listing is not None:
        _remember_repairs(run, records, actions)
    if actions:
        run.apply(actions)


def _remember_repairs(run: Applier, records: list[Record], actions: list[Action]) -> None:
    """Note on the records what a full check found to repair, before sending the repairs.

    An event the user edited or deleted is rewritten from a record that looks in order;
    its content hash is forgotten first, so should the repair fail, the next incremental
    run rewrites it instead of the whole calendar being listed again (under throttling,
    that listing is what keeps failing). An orphan to prune has no record to note it on:
    with one in the plan, only a run without failures completes the check.
    """
    by_shift = {record.shift_id: record for record in records}
    repairs = []
    for action in actions:
        if isinstance(action, Create | Update):
            record = by_shift.get(action.shift_id)
            if (
                record is not None
                and record.state == "synced"
                and record.content_hash == action.spec.content_hash
            ):
                repairs.append(action.shift_id)
    run.forget_hashes(repairs)
    run.checked = not any(isinstance(action, Prune) for action in actions)


def _list_remote(
    run: Applier, connection: CalendarConnection, calendar_id: str
) -> list[RemoteEvent]:
    """List our tagged events; raise `CalendarGone` when the calendar itself is gone."""
    provider = run.provider  # built (and a failed build counted) outside the try
    if connection.owns_calendar and not connection.use_primary:
        run.reads += 1
        try:
            exists = provider.calendar_exists(calendar_id)
        except ProviderError as exc:
            run.count_error(exc)
            raise
        if not exists:
            raise CalendarGone
    run.reads += 1
    try:
        events = []
        for event in provider.list_events(calendar_id):
            events.append(event)
            run.lease.keep()  # a listing of many pages may outlast the lease
        return events
    except ProviderError as exc:
        run.count_error(exc)
        if isinstance(exc, RemoteNotFound):
            raise CalendarGone from None
        raise


def _create_calendar(run: Applier, state: _State) -> str:
    """Create the app's own calendar and remember it before writing anything into it."""
    connection = state.connection
    name = connection.calendar_name or CALENDAR_NAME
    provider = run.provider  # built (and a failed build counted) outside the try
    target = Target(connection.user_id, connection.provider, name)
    try:
        # The intent is committed first: a crash before the id is saved leaves a trace.
        creation = create_owned_calendar(
            run.factory, provider, target, time_zone=state.user.time_zone, now=run.lease.clock()
        )
    except ProviderError as exc:
        run.count_error(exc)
        raise
    run.writes += 1
    run.count_write("calendar")
    with transaction(run.factory) as session:
        session.execute(
            update(CalendarConnection)
            .where(CalendarConnection.id == run.connection_id)
            .values(calendar_id=creation.calendar_id, calendar_name=name, owns_calendar=True)
        )
        run.status.delete_all(session)
        finish_creation(session, creation)
    return creation.calendar_id


def _forget_calendar(factory: sessionmaker[Session], state: _State) -> bool:
    """Our own calendar was deleted by the user: drop it and its records to start afresh.

    Returns False when the calendar is not ours to re-create (the user's primary one).
    """
    connection = state.connection
    if not connection.owns_calendar or connection.use_primary:
        return False
    with transaction(factory) as session:
        session.execute(
            update(CalendarConnection)
            .where(CalendarConnection.id == connection.id)
            .values(calendar_id=None)
        )
        state.status.delete_all(session)
    connection.calendar_id = None
    return True


def _copy_counts(report: SyncReport, passes: Sequence[Applier]) -> None:
    """Sum what the run's passes did into the report."""
    report.created = sum(run.created for run in passes)
    report.updated = sum(run.updated for run in passes)
    report.deleted = sum(run.deleted for run in passes)
    report.writes = sum(run.writes for run in passes)
    report.reads = sum(run.reads for run in passes)
    report.checked = any(run.checked for run in passes)
    report.late_insert_possible = any(run.late_insert_possible for run in passes)


def _finish(
    lease: Lease,
    report: SyncReport,
    state: _State | None,
    now: datetime,
    failure: ProviderError | None,
    rng: random.Random | None,
) -> None:
    """Write the status columns and release the lease, in one transaction.

    The connection as read at the start of the sync is current enough: while we hold
    the lease nobody else writes its sync columns.
    """
    finished = lease.clock()
    connection_id = report.connection_id
    if report.late_insert_possible and not isinstance(failure, AuthorizationLost):
        report.recheck_at = finished + LATE_WRITE_RECHECK
    with transaction(lease.factory) as session:
        connection = state.connection if state is not None else None
        if connection is None:
            connection = session.get(CalendarConnection, connection_id)
            if connection is None:
                report.outcome = "missing"
                return
            session.expunge(connection)
        if report.recheck_at is None and not isinstance(failure, AuthorizationLost):
            # One asked for by a run whose worker died after giving up on an insert.
            report.recheck_at = pending_recheck(connection, finished)
        values: dict[str, object] = {
            "last_sync_at": finished,
            "last_created": report.created,
            "last_updated": report.updated,
            "last_deleted": report.deleted,
            "lease_owner": None,
            "lease_expires_at": None,
            "updated_at": finished,
        }
        if failure is None:
            assert state is not None
            next_due = next_window_move(now, connection_id)
            full_check_at = now if report.full_check else connection.last_full_check_at
            if report.recheck_at is not None:
                full_check_at = full_check_stamp(report.recheck_at)
            if full_check_at is not None:
                next_due = min(next_due, full_check_at + FULL_CHECK_INTERVAL)
            values.update(
                status="active",
                last_success_at=finished,
                last_window_start=state.window[0],
                last_full_check_at=full_check_at,
                last_error=None,
                failure_count=0,
                next_retry_at=None,
                # A change committed during the sync keeps the due time its writer set.
                sync_due_at=case(
                    (CalendarConnection.dirty_since.is_(None), next_due),
                    else_=CalendarConnection.sync_due_at,
                ),
            )
            report.outcome = "ok"
        elif isinstance(failure, AuthorizationLost):
            # The connections package decides what "paused until reconnected" means; its
            # values are written below, under the lease condition, with our wording.
            mark_needs_reauth(connection, failure, finished)
            report.outcome = "needs_reauth"
            report.error = describe_error(failure, connection.provider)
            values.update(
                status=connection.status,
                last_error=report.error,
                last_error_at=connection.last_error_at,
                next_retry_at=connection.next_retry_at,
                sync_due_at=None,
            )
        else:
            if report.checked:
                values["last_full_check_at"] = now
            if report.recheck_at is not None:
                values["last_full_check_at"] = full_check_stamp(report.recheck_at)
            retry_after = failure.retry_after if isinstance(failure, RateLimited) else None
            report.error = describe_error(failure, connection.provider)
            if report.created + report.updated + report.deleted:
                # Progress is not failure: the remote works, only some parts failed. Retry
                # them promptly (never before Retry-After), without growing the back-off.
                failures, status, report.outcome = 0, "active", "partial"
                retry_at = finished + max(PROGRESS_RETRY, timedelta(seconds=retry_after or 0))
            else:
                failures, status, report.outcome = connection.failure_count + 1, "error", "failed"
                if retry_after:
                    # The service said when to come back: then, and no later. A back-off
                    # on top of an explicit Retry-After only keeps the calendar stale.
                    retry_at = finished + max(PROGRESS_RETRY, timedelta(seconds=retry_after))
                else:
                    retry_at = finished + backoff_delay(failures, None, rng)
            report.next_retry_at = retry_at
            values.update(
                status=status,
                last_error=report.error,
                last_error_at=finished,
                failure_count=failures,
                next_retry_at=retry_at,
                sync_due_at=retry_at,
            )
        result = session.execute(
            update(CalendarConnection)
            .where(
                CalendarConnection.id == connection_id,
                CalendarConnection.lease_owner == lease.owner,
            )
            .values(**values)
            .execution_options(synchronize_session=False)
        )
        if rowcount(result) != 1:
            # Our lease expired and another worker took over: its sync writes the status.
            report.outcome = "lease_lost"
