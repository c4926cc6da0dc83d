"""Applying a plan: intent → batch → record.

`Applier.apply(actions)` commits each batch's intent (a `creating` record carrying the
idempotency key, or a `deleting` mark) before sending it, sends the batch through the
provider, records every answer in one small transaction, and follows up conflicts and
vanished events. Batch sizes adapt to the link: a batch lost whole halves the next one,
a clean one doubles it again, and a `BatchSizer` carries the size a run ended with to the
connection's next run.

A `RetryBudget` lets a run wait out a throttle (Retry-After) and send the throttled
writes again, rather than end at the first 429 and lose what it learned.

Imports `sync.lease`, `sync.status`, `sync.plan` and `sync.schedule`, the providers'
interface and the metrics; not the engine.
"""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass
from datetime import timedelta

from sqlalchemy import update
from sqlalchemy.orm import Session, sessionmaker

from oncal_feed.metrics import record_error, record_write
from oncal_feed.models import CalendarConnection
from oncal_feed.providers.base import (
    AuthorizationLost,
    CalendarProvider,
    Operation,
    OperationResult,
    PermanentError,
    PreconditionFailed,
    ProviderError,
    RateLimited,
    RemoteConflict,
    RemoteEvent,
    RemoteNotFound,
    TransientError,
)
from oncal_feed.rendering.event import EventSpec
from oncal_feed.sync.lease import Lease
from oncal_feed.sync.plan import (
    Action,
    Adopt,
    Create,
    Delete,
    Forget,
    Prune,
    Record,
    Recover,
    Update,
    google_event_id,
)
from oncal_feed.sync.schedule import LATE_WRITE_RECHECK, backoff_delay, full_check_stamp
from oncal_feed.sync.status import StatusChange, StatusStore

__all__ = ["Applier", "BatchSizer", "CalendarGone", "RetryBudget"]

# Give up a sync after this many batches in a row were lost entirely: the remote is down.
MAX_FAILED_BATCHES = 3
# Follow-ups (after 409s and vanished events) of follow-ups are sent this deep at most.
MAX_FOLLOW_UP_DEPTH = 3
# Throttled writes are sent again after a pause at most this many batches in a row; then
# the run stops and the connection comes back at Retry-After.
MAX_THROTTLED_BATCHES = 3


class RetryBudget:
    """How long one run may wait, in all, to send again what a throttle or a fault turned away.

    Waiting inside the run (instead of ending it and coming back later) keeps what the run
    learned: its batch size, its listing, its built client. Every pause is short (at most a
    third of the lease, which is renewed after it) and ends before the budget's deadline;
    `pause` says no to anything longer, and the run ends as it did without a budget. A
    budget of zero never waits: "Sync now" answers at once.
    """

    def __init__(
        self, lease: Lease, seconds: float, *, sleep: Callable[[float], None] = time.sleep
    ) -> None:
        self.lease = lease
        self.deadline = lease.clock() + timedelta(seconds=max(0.0, seconds))
        self._sleep = sleep

    def pause(self, delay: timedelta) -> bool:
        """Wait `delay` and renew the lease, if the budget allows it; else return False at once."""
        if delay > self.lease.ttl / 3 or self.lease.clock() + delay > self.deadline:
            return False
        self._sleep(max(0.0, delay.total_seconds()))
        self.lease.renew()
        return True


class BatchSizer:
    """Batch sizes learned on flaky links, by connection id, for each one's next run.

    A hint, not state: it lives in memory, one per process (`sync.service` keeps the app's),
    and only reduced sizes are kept. Thread-safe: a worker's threads share it.
    """

    def __init__(self) -> None:
        self._hints: dict[int, int] = {}
        self._lock = threading.Lock()

    def first_size(self, connection_id: int, max_batch: int) -> int:
        """The size of a run's first batch: the provider's largest, or what was learned."""
        with self._lock:
            return min(max_batch, self._hints.get(connection_id, max_batch))

    def remember(self, connection_id: int, size: int, max_batch: int) -> None:
        """Start the connection's next run at `size`, the size this run ended with."""
        with self._lock:
            if size < max_batch:
                self._hints[connection_id] = size
            else:
                self._hints.pop(connection_id, None)


@dataclass(frozen=True)
class _Restore:
    """After a 409 on insert: update the event that holds our key (restores a cancelled one)."""

    shift_id: int
    spec: EventSpec
    remote_id: str


_Remote = Create | Update | Delete | Prune | _Restore


class Applier:
    """One sync's remote work: builds the provider on first use, counts, collects errors.

    The provider is built on first use: a sync with nothing to send never decrypts a
    token or builds an API client (that alone costs tens of milliseconds for Google).
    `calendar_id` is set once the engine knows the calendar (it may create it first).
    """

    def __init__(
        self,
        factory: sessionmaker[Session],
        lease: Lease,
        status: StatusStore,
        source: Callable[[], CalendarProvider],
        *,
        generation: int,
        sizer: BatchSizer,
        provider_name: str | None,
        budget: RetryBudget | None = None,
    ) -> None:
        self.factory = factory
        self.lease = lease
        self.connection_id = lease.connection_id
        self.status = status
        self.source = source
        self.generation = generation
        self.sizer = sizer
        self.provider_name = provider_name  # the connection's provider, for metrics labels
        self.budget = budget or RetryBudget(lease, 0)
        self.calendar_id = ""
        self.created = self.updated = self.deleted = self.writes = self.reads = 0
        self.errors: list[ProviderError] = []
        self.checked = False  # see engine._remember_repairs
        # An insert whose first attempt's outcome is unknown was given up on as absent, or
        # (Graph) sent again: the first may still land (see `LATE_WRITE_RECHECK`).
        self.late_insert_possible = False
        self.calendar_checked = False  # see _calendar_vanished
        self.stop: ProviderError | None = None  # AuthorizationLost or RateLimited: stop at once
        self.batch_size = 0  # set when the first batch goes out
        self._bumped = False
        self._provider: CalendarProvider | None = None
        # Shifts whose write met a 412 and was refetched in this run: a second 412 is left
        # to the next run rather than refetched again (no endless chase of a moving event).
        self._refetched: set[int] = set()

    @property
    def provider(self) -> CalendarProvider:
        """The remote calendar's adapter (built on first use)."""
        if self._provider is None:
            try:
                self._provider = self.source()
            except ProviderError as exc:  # e.g. a token refresh answered invalid_grant
                self.count_error(exc)
                raise
        return self._provider

    @property
    def progress(self) -> int:
        """How many writes the calendar confirmed in this run."""
        return self.created + self.updated + self.deleted

    def count_error(self, exc: ProviderError) -> None:
        """Count a failed remote operation in the metrics."""
        record_error(self.provider_name, exc)

    def count_write(self, kind: str) -> None:
        """Count a remote write the calendar confirmed in the metrics."""
        record_write(self.provider_name, kind)

    def remember_batch_size(self) -> None:
        """Start this connection's next run at the batch size this one ended with."""
        if self.batch_size:
            self.sizer.remember(self.connection_id, self.batch_size, self.max_batch)

    @property
    def max_batch(self) -> int:
        """The provider's largest batch."""
        return max(1, int(self.provider.max_batch))

    @property
    def client_ids(self) -> bool:
        """Whether the provider takes client-chosen event ids (Google semantics)."""
        return self.provider.client_chosen_ids

    def new_key(self, uid: str) -> str:
        """The idempotency key of a fresh insert for `uid`."""
        if self.client_ids:
            return google_event_id(uid, self.generation)
        return uuid.uuid4().hex

    def _fail(self, exc: ProviderError) -> None:
        if isinstance(exc, AuthorizationLost | RateLimited):
            if self.stop is None or isinstance(exc, AuthorizationLost):
                self.stop = exc
        else:
            self.errors.append(exc)

    def forget_hashes(self, shift_ids: Sequence[int]) -> None:
        """Mark the records' content as unknown: the next plan rewrites their events."""
        if shift_ids:
            with self._change() as change:
                for shift_id in shift_ids:
                    change.mark(shift_id, content_hash=None)

    def _note_given_up(self, change: StatusChange, record: Record | None) -> None:
        """A record dropped while its insert's outcome is unknown: it may land late."""
        if record is not None and record.state == "creating":
            self._expect_late_insert(change)

    def _expect_late_insert(self, change: StatusChange) -> None:
        """An insert whose outcome is unknown may still land: have the calendar listed
        again soon.

        The recheck is due `LATE_WRITE_RECHECK` from now, written in the transaction that
        drops (or re-sends) the record: a worker killed before the run ends leaves it to
        whoever takes the connection over (see `engine._finish`), not to the next day.
        """
        if not self.late_insert_possible:
            recheck_at = self.lease.clock() + LATE_WRITE_RECHECK
            change.session.execute(
                update(CalendarConnection)
                .where(CalendarConnection.id == self.connection_id)
                .values(last_full_check_at=full_check_stamp(recheck_at))
            )
        self.late_insert_possible = True

    def _count_landed(self, kind: str) -> None:
        """Count a write of ours whose answer was lost, found landed by reading back."""
        if kind == "create":
            self.created += 1
        else:
            self.updated += 1
        self.count_write(kind)

    def _change(self) -> AbstractContextManager[StatusChange]:
        return self.status.change(self.factory, self.lease.clock)

    # -- the pass

    def apply(self, actions: Sequence[Action]) -> None:
        """Apply a plan: database-only actions first, then remote writes in batches."""
        local = [a for a in actions if isinstance(a, Adopt | Forget)]
        if local:
            with self._change() as change:
                for action in local:
                    if isinstance(action, Adopt):
                        if action.content_hash is not None:
                            # Read back as the shift renders: an insert that landed.
                            self._count_landed("create")
                        change.put(
                            Record(
                                action.shift_id, action.uid, "synced", action.remote_id,
                                action.content_hash, remote_etag=action.etag,
                            )
                        )  # fmt: skip
                    else:
                        self._note_given_up(change, change.get(action.shift_id))
                        change.drop(action.shift_id)
        remote: list[_Remote] = []
        for step in actions:
            if isinstance(step, Recover):
                remote.extend(self._recover(step))
            elif isinstance(step, Create | Update | Delete | Prune):
                remote.append(step)
            if self.stop is not None:
                return
        self._write(remote)

    def _recover(self, action: Recover) -> list[_Remote]:
        """Turn an uncertain insert into what it needs now.

        Where ids are client-chosen, inserting again with the same id is the cheapest
        question (a 409 means it exists, and the update that follows restores it). Else
        the event is looked up by its tag.
        """
        if action.spec is not None and self.client_ids:
            return [Create(action.shift_id, action.spec, action.event_key)]
        provider = self.provider  # built (and a failed build counted) outside the try
        try:
            self.reads += 1
            found = provider.find_event(self.calendar_id, action.uid)
        except ProviderError as exc:
            self.count_error(exc)
            self._fail(exc)
            return []
        if found is None:
            if action.spec is None:
                with self._change() as change:
                    change.drop(action.shift_id)
                    self._expect_late_insert(change)
                return []
            # The insert never landed: send it again with the same key.
            return [Create(action.shift_id, action.spec, action.event_key)]
        with self._change() as change:
            if action.spec is None and not action.keep:
                change.drop(action.shift_id)
                return [Prune(action.uid, found.remote_id)]
            # The event found is known when it reads back as what the shift renders to;
            # else (an older write of other content, or edited since) it is rewritten.
            known = action.spec is not None and found.shows(action.spec)
            content = action.spec.content_hash if known and action.spec is not None else None
            change.put(
                Record(
                    action.shift_id, action.uid, "synced", found.remote_id, content,
                    remote_etag=found.etag,
                )
            )  # fmt: skip
        if known:
            self._count_landed("create")
        elif action.spec is not None:
            return [Update(action.shift_id, found.remote_id, action.spec)]
        return []

    def _write(self, writes: Sequence[_Remote], depth: int = 0) -> None:
        """Send remote writes in batches; follow up 409s and vanished events.

        Batches start at the provider's `max_batch`. A batch lost as a whole (a dropped
        connection or a failed envelope takes every member with it) halves the size of
        the next one, and a clean batch doubles it again, so a flaky link costs retries
        of a few operations rather than of fifty. Throttled members (never applied: a 429
        or a rate-limit 403) go to the back of the queue after a pause within the budget
        (Retry-After, else 1, 2, 4 s), with the batch size halved.
        """
        ops = list(writes)
        follow_ups: list[_Remote] = []
        failed_batches = throttled_batches = 0
        offset = 0
        if ops and not self.batch_size:
            self.batch_size = self.sizer.first_size(self.connection_id, self.max_batch)
        while offset < len(ops):
            if self.stop is not None:
                return
            chunk = ops[offset : offset + self.batch_size]
            offset += len(chunk)
            self.lease.renew()
            self._commit_intent(chunk)
            operations = [self._operation(op) for op in chunk]
            self.writes += len(operations)
            try:
                results = self.provider.apply(self.calendar_id, operations)
            except ProviderError as exc:
                results = [OperationResult(error=exc)] * len(operations)
            if len(results) != len(operations):
                # A provider bug; treat every answer as lost rather than mis-assign them.
                lost = TransientError("the calendar returned an incomplete batch answer")
                results = [OperationResult(error=lost)] * len(operations)
            more, throttled = self._record_results(chunk, results)
            follow_ups.extend(more)
            if throttled:
                throttled_batches += 1
                self.batch_size = max(1, self.batch_size // 2)
                if not self._wait_out(throttled, throttled_batches):
                    return
                ops.extend(op for op, _ in throttled)
            else:
                throttled_batches = 0
            lost_count = sum(isinstance(r.error, TransientError | RateLimited) for r in results)
            if lost_count == len(results):
                failed_batches += 1
                self.batch_size = max(1, self.batch_size // 2)
                if failed_batches >= MAX_FAILED_BATCHES:
                    return
            else:
                failed_batches = 0
                if lost_count == 0:
                    self.batch_size = min(self.max_batch, self.batch_size * 2)
        if follow_ups and self.stop is None and depth < MAX_FOLLOW_UP_DEPTH:
            self._write(follow_ups, depth + 1)

    def _wait_out(self, throttled: Sequence[tuple[_Remote, RateLimited]], in_a_row: int) -> bool:
        """Pause before sending throttled writes again; False (run stopped) when we may not."""
        error = throttled[0][1]
        delay = backoff_delay(in_a_row, max((e.retry_after or 0) for _, e in throttled) or None)
        if in_a_row <= MAX_THROTTLED_BATCHES and self.budget.pause(delay):
            return True
        self._fail(error)
        return False

    def _operation(self, op: _Remote) -> Operation:
        if isinstance(op, Create):
            return Operation("insert", spec=op.spec, event_key=op.event_key)
        if isinstance(op, Update):
            return Operation("update", spec=op.spec, remote_id=op.remote_id, etag=op.etag)
        if isinstance(op, _Restore):
            return Operation("update", spec=op.spec, remote_id=op.remote_id)
        if isinstance(op, Delete):
            return Operation("delete", remote_id=op.remote_id, etag=op.etag)
        return Operation("delete", remote_id=op.remote_id)

    def _commit_intent(self, chunk: Sequence[_Remote]) -> None:
        """Record what is about to be sent, before sending it (crash safety)."""
        intents = [op for op in chunk if isinstance(op, Create | Delete)]
        if not intents:
            return
        with self._change() as change:
            for op in intents:
                if isinstance(op, Create):
                    previous = change.get(op.shift_id)
                    resent = previous is not None and previous.state == "creating"
                    if resent and not self.client_ids:
                        # The transactionId keeps this retry from making a second event;
                        # nothing is documented to stop the first attempt landing late once
                        # the retry's event is deleted (its shift gone), so look again soon.
                        self._expect_late_insert(change)
                    key = op.event_key
                    change.put(
                        Record(
                            op.shift_id, op.spec.uid, "creating",
                            remote_id=key if self.client_ids else None,
                            content_hash=op.spec.content_hash,
                            transaction_id=None if self.client_ids else key,
                        )
                    )  # fmt: skip
                else:
                    change.mark(op.shift_id, state="deleting")

    def _record_results(
        self, chunk: Sequence[_Remote], results: Sequence[OperationResult]
    ) -> tuple[list[_Remote], list[tuple[_Remote, RateLimited]]]:
        """Record one batch's answers in one transaction; return the follow-up writes and
        the throttled ones (not applied, to be sent again).

        Raises `CalendarGone` when an insert found the calendar itself missing.
        """
        follow_ups: list[_Remote] = []
        throttled: list[tuple[_Remote, RateLimited]] = []
        stale: list[Update | Delete] = []
        calendar_gone = refused = False
        with self._change() as change:
            for op, result in zip(chunk, results, strict=True):
                error = result.error
                if error is not None:
                    self.count_error(error)
                if isinstance(error, RateLimited):
                    throttled.append((op, error))
                    continue
                if isinstance(op, Update | Delete) and isinstance(error, PreconditionFailed):
                    if op.shift_id in self._refetched:
                        self._fail(TransientError("the event kept changing while we wrote it"))
                    else:
                        stale.append(op)
                    continue
                if isinstance(op, Delete | Prune):
                    if error is None or isinstance(error, RemoteNotFound):
                        if isinstance(op, Delete):
                            change.drop(op.shift_id)
                            # Done, or a 404 (which adapters may report as done): either
                            # way the insert it answers for may not have landed yet.
                            if op.uncertain:
                                self._expect_late_insert(change)
                        if error is None:
                            self.deleted += 1
                            self.count_write("delete")
                    else:
                        self._fail(error)
                    continue
                if error is None:
                    self._record_written(change, op, result.event)
                elif isinstance(op, Create) and isinstance(error, RemoteConflict):
                    follow_ups.extend(self._conflict(change, op))
                elif isinstance(op, Create) and isinstance(error, RemoteNotFound):
                    calendar_gone = True
                elif isinstance(op, Update) and isinstance(error, RemoteNotFound):
                    # The event vanished (Graph deletes for good): insert it afresh.
                    follow_ups.append(Create(op.shift_id, op.spec, self.new_key(op.spec.uid)))
                elif isinstance(op, _Restore) and isinstance(
                    error, RemoteNotFound | PermanentError
                ):
                    # Google refused to bring the old event back: use a new generation of ids.
                    follow_ups.append(self._regenerate(change.session, op))
                else:
                    self._fail(error)
                    refused = refused or isinstance(error, PermanentError)
        if calendar_gone or (refused and self._calendar_vanished()):
            raise CalendarGone
        if stale:
            follow_ups.extend(self._refetch(stale))
        return follow_ups, throttled

    def _calendar_vanished(self) -> bool:
        """After a refused write: is the calendar itself gone? (Asked once per run.)

        A calendar its owner deleted answers writes with a refusal, not always a 404
        (Google says 403 to a `calendar.app.created` grant), so a refusal is checked
        before it is reported as one: a deleted calendar is made afresh at once.
        """
        if self.calendar_checked:
            return False
        self.calendar_checked = True
        self.reads += 1
        try:
            return not self.provider.calendar_exists(self.calendar_id)
        except ProviderError as exc:
            self.count_error(exc)
            return False

    def _refetch(self, stale: Sequence[Update | Delete]) -> list[_Remote]:
        """After a 412: read the events again and decide each write afresh.

        The etag we sent is not the event's any more: someone changed it behind us (the
        user, or a late write of an earlier, timed-out call). The calendar is ours, so the
        write is sent again on the fresh etag; an event that is gone is created afresh
        (update) or counts as deleted (delete). Each shift is refetched once per run.
        """
        follow_ups: list[_Remote] = []
        gone: list[int] = []
        landed: list[tuple[Update, RemoteEvent]] = []
        for op in stale:
            self._refetched.add(op.shift_id)
            try:
                self.reads += 1
                fresh = self.provider.get_event(self.calendar_id, op.remote_id)
            except ProviderError as exc:
                self.count_error(exc)
                self._fail(exc)
                continue
            if isinstance(op, Delete):
                if fresh is None or fresh.cancelled:
                    gone.append(op.shift_id)
                else:
                    follow_ups.append(Delete(op.shift_id, op.remote_id, fresh.etag))
            elif fresh is None:
                follow_ups.append(Create(op.shift_id, op.spec, self.new_key(op.spec.uid)))
            elif fresh.shows(op.spec):
                # What changed it was our own earlier write of this content, landed late.
                landed.append((op, fresh))
            else:
                follow_ups.append(Update(op.shift_id, op.remote_id, op.spec, fresh.etag))
        if gone or landed:
            with self._change() as change:
                for shift_id in gone:
                    change.drop(shift_id)
                for op, fresh in landed:
                    self._count_landed("update")
                    change.put(
                        Record(
                            op.shift_id, op.spec.uid, "synced", op.remote_id,
                            op.spec.content_hash, remote_etag=fresh.etag,
                        )
                    )  # fmt: skip
        return follow_ups

    def _record_written(
        self, change: StatusChange, op: Create | Update | _Restore, event: RemoteEvent | None
    ) -> None:
        if event is not None and event.remote_id:
            remote_id: str | None = event.remote_id
        elif isinstance(op, Create):
            remote_id = op.event_key if self.client_ids else None
        else:
            remote_id = op.remote_id
        change.put(
            Record(
                op.shift_id, op.spec.uid, "synced", remote_id, op.spec.content_hash,
                remote_etag=event.etag if event is not None else None,
            )
        )  # fmt: skip
        # A restore after a 409 brings back the event our lost insert made: a create.
        if isinstance(op, Update):
            self.updated += 1
            self.count_write("update")
        else:
            self.created += 1
            self.count_write("create")

    def _conflict(self, change: StatusChange, op: Create) -> list[_Remote]:
        """A 409 on insert: the key is taken, by our own earlier (or replayed) insert."""
        if self.client_ids:
            # The event exists at our id: say so at once, with its content unknown, so a
            # run that stops before the restore below is sent plans an update next time
            # rather than asking again.
            change.put(Record(op.shift_id, op.spec.uid, "synced", op.event_key, None))
            return [_Restore(op.shift_id, op.spec, op.event_key)]
        # Graph has no client-chosen ids; a conflict means it found our transactionId.
        # Leave the record `creating`: the next pass looks the event up by its tag.
        self._fail(TransientError("the calendar reported the event as already created"))
        return []

    def _regenerate(self, session: Session, op: _Restore) -> Create:
        if not self._bumped:
            self.generation = session.execute(
                update(CalendarConnection)
                .where(CalendarConnection.id == self.connection_id)
                .values(id_generation=CalendarConnection.id_generation + 1)
                .returning(CalendarConnection.id_generation)
            ).scalar_one()
            self._bumped = True
        return Create(op.shift_id, op.spec, self.new_key(op.spec.uid))


class CalendarGone(Exception):
    """The calendar itself answered 404."""
