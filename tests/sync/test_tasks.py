"""The queue wiring: nudges from shift writes, debounce, the sweep, Huey on SQLite and Redis."""

from __future__ import annotations

import random
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from flask import Flask
from sqlalchemy import select, update

from oncal_feed import create_app, shifts
from oncal_feed.db import get_database, utcnow
from oncal_feed.models import CalendarConnection
from oncal_feed.notify import shifts_changed
from oncal_feed.providers.base import TransientError
from oncal_feed.providers.memory import MemoryProvider
from oncal_feed.sync.lease import LEASE_TTL
from oncal_feed.sync.service import use_providers
from oncal_feed.sync.tasks import (
    BUSY_RETRY,
    DEBOUNCE,
    MAX_DEBOUNCE,
    WATCH_MARGIN,
    SyncQueue,
    get_queue,
    mark_dirty,
    request_sync,
    start_embedded_worker,
    sweep_due,
)
from oncal_feed.validation import ShiftInput
from tests.sync.support import NOW, CountingProvider, ScriptedErrors, World, live_uids


class Clock:
    """A stepped clock for the queue's tasks."""

    def __init__(self, now: datetime) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now

    def step(self, **delta: float) -> datetime:
        """Move on and return the new time."""
        self.now += timedelta(**delta)
        return self.now


class Providers:
    """A provider factory for `use_providers` that counts syncs per connection."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner
        self.syncs: dict[int, int] = {}

    def __call__(self, connection: CalendarConnection) -> Any:
        self.syncs[connection.id] = self.syncs.get(connection.id, 0) + 1
        return self.inner


@pytest.fixture
def queue(app: Flask) -> Iterator[SyncQueue]:
    """The app's queue with a stepped clock, emptied afterwards."""
    q = get_queue(app)
    q.clock = Clock(NOW)
    yield q
    q.huey.flush()


@pytest.fixture
def providers(app: Flask, memory: MemoryProvider) -> Providers:
    """Syncs of this app go to `memory`, and are counted."""
    factory = Providers(memory)
    use_providers(app, factory)
    return factory


def shift_input(external_id: str, day: float, user: str = "alice") -> ShiftInput:
    """A one-hour shift `day` days after NOW's midnight."""
    start = NOW.replace(hour=0) + timedelta(days=day)
    return ShiftInput(external_id, f"{user}@example.com", start, start + timedelta(hours=1))


def write_shift(world: World, external_id: str, day: float, user: str = "alice") -> None:
    """Write a shift and tell the listeners, as an API write does after its commit."""
    data = shift_input(external_id, day, user)
    with world.database.session() as session:
        result = shifts.upsert_shift(session, shifts.get_schedule(session, "payments"), data, NOW)
    with world.app.app_context():
        shifts_changed(result.touched_user_ids)


def test_a_thousand_writes_make_one_sync_per_connection(
    world: World, queue: SyncQueue, providers: Providers, memory: MemoryProvider
) -> None:
    """1,000 separate shift writes, each notifying: one sync of each of Alice's calendars."""
    google = world.connect(memory, kind="google")
    outlook = world.connect(memory, kind="microsoft")
    bob = world.connect(memory, user="bob")
    # An import in 40 transactions of 25 shifts, each followed by one notification per
    # shift (as 1,000 single PUTs would send), spread over 1.6 seconds.
    for chunk in range(40):
        items = [shift_input(f"s{n}", n / 12) for n in range(chunk * 25, chunk * 25 + 25)]
        with world.database.session() as session:
            schedule = shifts.get_schedule(session, "payments")
            result = shifts.import_window(
                session, schedule, items[0].starts_at, items[-1].ends_at, items, NOW
            )
        with world.app.app_context():
            for _item in items:
                shifts_changed(result.touched_user_ids)
        queue.clock.step(seconds=0.04)
        queue.drain()
    assert providers.syncs == {}  # nothing ran before the debounce passed
    queue.clock.step(seconds=3)
    queue.drain()
    assert providers.syncs == {google: 1, outlook: 1}
    assert bob not in providers.syncs
    assert len(live_uids(memory, world.connection(google).calendar_id)) == 1000
    queue.clock.step(minutes=5)
    queue.drain()
    assert providers.syncs == {google: 1, outlook: 1}


def test_debounce_trails_the_last_write_but_is_capped(
    world: World, queue: SyncQueue, providers: Providers, memory: MemoryProvider
) -> None:
    """Writes closer together than the debounce keep postponing the sync, up to 30 s."""
    cid = world.connect(memory)
    start = queue.clock.now
    n = 0
    while queue.clock.now < start + MAX_DEBOUNCE + timedelta(seconds=5):
        write_shift(world, f"s{n}", 1 + n / 24)
        n += 1
        queue.clock.step(seconds=DEBOUNCE.total_seconds() * 0.8)
        queue.drain()
        if providers.syncs:
            break
    synced_at = queue.clock.now
    assert providers.syncs == {cid: 1}
    assert start + MAX_DEBOUNCE <= synced_at <= start + MAX_DEBOUNCE + timedelta(seconds=2)


def test_a_write_during_a_sync_gets_its_own_sync(
    world: World, queue: SyncQueue, providers: Providers, memory: MemoryProvider
) -> None:
    """The lease clears the dirty mark when a sync starts; a later write marks it again."""
    cid = world.connect(memory)
    write_shift(world, "a", 1)
    queue.clock.step(seconds=3)
    queue.drain()
    write_shift(world, "b", 2)
    queue.clock.step(seconds=3)
    queue.drain()
    assert providers.syncs == {cid: 2}
    assert len(live_uids(memory, world.connection(cid).calendar_id)) == 2


def test_busy_connection_is_retried_shortly(
    world: World, queue: SyncQueue, providers: Providers, memory: MemoryProvider
) -> None:
    """A nudge that finds the lease taken comes back a few seconds later."""
    cid = world.connect(memory)
    write_shift(world, "a", 1)
    lease = queue.clock.now + timedelta(seconds=20)
    world.execute(
        update(CalendarConnection).values(lease_owner="other-worker", lease_expires_at=lease)
    )
    queue.clock.step(seconds=3)
    queue.drain()
    assert providers.syncs == {}
    queue.clock.step(seconds=20)
    queue.drain()
    assert providers.syncs == {cid: 1}


def test_a_dead_workers_connection_resumes_just_after_its_lease_expires(
    world: World, queue: SyncQueue, providers: Providers, memory: MemoryProvider
) -> None:
    """The sweep's claim (minutes ahead) does not hold back the retry of a dead lease."""
    cid = world.connect(memory)
    write_shift(world, "a", 1)
    expires = queue.clock.now + LEASE_TTL
    world.execute(
        update(CalendarConnection).values(lease_owner="killed-worker", lease_expires_at=expires)
    )
    queue.clock.step(seconds=45)
    queue._sweep()
    queue.drain()
    assert world.connection(cid).sync_due_at > expires + timedelta(minutes=5)  # the claim
    assert providers.syncs == {}
    for _ in range(int(LEASE_TTL / BUSY_RETRY) + 2):
        queue.clock.step(seconds=BUSY_RETRY.total_seconds())
        queue.drain()
        if providers.syncs:
            break
    assert providers.syncs == {cid: 1}
    assert queue.clock.now <= expires + BUSY_RETRY
    assert live_uids(memory, world.connection(cid).calendar_id) == [world.uid("a")]


class WorkerKilled(BaseException):
    """Stands for SIGKILL: not an Exception, so nothing in the worker cleans up after it."""


class DiesAtFirstWrite:
    """A calendar whose first batch of writes kills the worker sending it."""

    def __init__(self, inner: MemoryProvider) -> None:
        self.inner = inner
        self.died = False

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)

    def apply(self, calendar_id: str, operations: Any) -> Any:
        """Die the first time; pass the batch on afterwards."""
        if not self.died:
            self.died = True
            raise WorkerKilled
        return self.inner.apply(calendar_id, operations)


def test_a_worker_killed_mid_sync_is_taken_over_as_its_lease_runs_out(
    world: World, queue: SyncQueue, memory: MemoryProvider, app: Flask
) -> None:
    """No change and no sweep needed: the watch queued with the lease syncs it at expiry."""
    cid = world.connect(memory)
    dying = DiesAtFirstWrite(memory)
    use_providers(app, lambda connection: dying)
    write_shift(world, "a", 1)
    queue.clock.step(seconds=3)
    with pytest.raises(WorkerKilled):
        queue.drain()
    left = world.connection(cid)
    assert left.lease_owner is not None
    assert left.lease_expires_at is not None
    assert left.calendar_id is not None
    queue.clock.now = left.lease_expires_at - timedelta(seconds=1)
    queue.drain()
    assert live_uids(memory, left.calendar_id) == []  # the lease still stands
    queue.clock.now = left.lease_expires_at + WATCH_MARGIN
    assert queue.drain() >= 1
    assert live_uids(memory, left.calendar_id) == [world.uid("a")]
    assert world.connection(cid).lease_owner is None
    # The takeover's own watch finds its lease released and ends there.
    queue.clock.step(seconds=LEASE_TTL.total_seconds() + WATCH_MARGIN.total_seconds())
    assert queue.drain() == 1
    assert queue.drain(queue.clock.step(hours=2)) == 0


def test_a_sync_with_nothing_to_send_queues_no_watch(
    world: World, queue: SyncQueue, providers: Providers, memory: MemoryProvider
) -> None:
    """Only a run that calls the calendar can die half-way through it: a no-op run is over
    in milliseconds and leaves nothing queued behind it."""
    cid = world.connect(memory)
    write_shift(world, "a", 1)
    queue.clock.step(seconds=3)
    queue.drain()
    assert providers.syncs == {cid: 1}
    queue.clock.step(seconds=LEASE_TTL.total_seconds() + WATCH_MARGIN.total_seconds())
    assert queue.drain() == 1  # the watch of the run that wrote "a": released
    queue.nudge(cid, force=True)
    assert queue.drain() == 1
    queue.clock.step(seconds=LEASE_TTL.total_seconds() + WATCH_MARGIN.total_seconds())
    assert queue.drain() == 0


def test_a_watch_follows_a_renewed_lease(
    world: World, queue: SyncQueue, providers: Providers, memory: MemoryProvider
) -> None:
    """A live worker renewed its lease: the watch leaves it be and looks again at the end."""
    cid = world.connect(memory)
    expires = queue.clock.now + timedelta(seconds=30)
    world.execute(
        update(CalendarConnection).values(lease_owner="slow-worker", lease_expires_at=expires)
    )
    queue.watch_lease(cid, queue.clock.now + timedelta(seconds=10))
    queue.clock.step(seconds=12)
    assert queue.drain() == 1
    assert providers.syncs == {}
    queue.clock.now = expires + WATCH_MARGIN
    assert queue.drain() >= 1
    assert providers.syncs == {cid: 1}


def sync_through_one_503(world: World, queue: SyncQueue, memory: MemoryProvider, app: Flask) -> int:
    """Connect, make the first insert answer 503, write a shift and let the worker run;
    return the connection's id."""
    cid = world.connect(memory)
    scripted = ScriptedErrors(memory)
    scripted.fail_next("insert_event", TransientError("unavailable", 503))
    use_providers(app, lambda connection: scripted)
    write_shift(world, "a", 1)
    queue.clock.step(seconds=3)
    queue.drain()
    return cid


def test_failed_sync_is_retried_at_its_retry_time(
    world: World, queue: SyncQueue, memory: MemoryProvider, app: Flask
) -> None:
    """After a 503, the next attempt is scheduled for `next_retry_at`, not before (with
    no retry budget: the run itself does not try again)."""
    app.config["SYNC_RETRY_SECONDS"] = 0
    cid = sync_through_one_503(world, queue, memory, app)
    retry_at = world.connection(cid).next_retry_at
    assert retry_at is not None
    queue.drain(retry_at - timedelta(seconds=1))
    assert world.connection(cid).status == "error"
    queue.clock.now = retry_at
    queue.drain()
    assert world.connection(cid).status == "active"
    assert live_uids(memory, world.connection(cid).calendar_id) == [world.uid("a")]


def test_a_given_up_insert_is_listed_again_by_the_queue(
    world: World, queue: SyncQueue, memory: MemoryProvider, app: Flask
) -> None:
    """The run that gives up on a lost insert (its shift deleted meanwhile) queues the
    listing that removes the event should the held call land after all."""
    app.config["SYNC_RETRY_SECONDS"] = 0
    cid = world.connect(memory)
    held: list[tuple[Any, ...]] = []

    class HoldInsert(ScriptedErrors):
        def insert_event(self, *args: Any) -> Any:
            held.append(args)
            raise TransientError("timed out", None)

    use_providers(app, lambda connection: HoldInsert(memory))
    write_shift(world, "a", 1)
    queue.clock.step(seconds=3)
    queue.drain()
    assert held
    queue.huey.flush()  # no retry of that run pending: only what comes next counts
    use_providers(app, lambda connection: memory)
    world.delete_shift("a")
    request_sync(app, [cid])
    queue.clock.step(seconds=1)
    queue.drain()
    assert world.records(cid) == []  # given up: not found, its shift gone
    recheck_at = world.connection(cid).sync_due_at
    assert recheck_at is not None
    assert recheck_at - queue.clock.now <= timedelta(seconds=15)
    calendar_id = world.connection(cid).calendar_id
    memory.insert_event(*held[0])  # the held call lands after all
    queue.drain(recheck_at - timedelta(seconds=1))
    assert live_uids(memory, calendar_id) == [world.uid("a")]
    queue.clock.now = recheck_at + timedelta(seconds=1)
    queue.drain()
    assert live_uids(memory, calendar_id) == []


def test_a_worker_run_takes_another_pass_after_a_passing_failure(
    world: World, queue: SyncQueue, memory: MemoryProvider, app: Flask
) -> None:
    """Within its retry budget, a worker's run plans again after a 503 and finishes the job
    itself: one run, `ok`, nothing left for a later retry."""
    cid = sync_through_one_503(world, queue, memory, app)
    row = world.connection(cid)
    assert (row.status, row.next_retry_at, row.last_error) == ("active", None, None)
    assert live_uids(memory, row.calendar_id) == [world.uid("a")]


def test_request_sync_nudges_a_connection(
    world: World, queue: SyncQueue, providers: Providers, memory: MemoryProvider, app: Flask
) -> None:
    """`request_sync` (e.g. after connecting) syncs within the debounce."""
    world.put_shift("a", 1)
    cid = world.connect(memory)
    request_sync(app, [cid])
    queue.clock.step(seconds=3)
    queue.drain()
    assert providers.syncs == {cid: 1}


# ---------------------------------------------------------------- the sweep


def test_concurrent_dirty_marks_never_deadlock(
    app: Flask, world: World, memory: MemoryProvider
) -> None:
    """Overlapping writes mark connections at once (an edit of Alice's shift, a hand-over
    from Alice to Bob) while syncs take leases: none of them may fail.

    On PostgreSQL, row locks taken in different orders by two transactions make one of
    them fail as a deadlock, and its dirty marks would be lost.
    """
    alice, bob = world.user_id("alice"), world.user_id("bob")
    ids = [world.connect(memory, kind=k) for k in ("google", "microsoft")]
    ids.append(world.connect(memory, user="bob"))
    errors: list[str] = []

    def mark(seed: int) -> None:
        rng = random.Random(seed)
        for _ in range(120):
            try:
                mark_dirty(app, rng.choice([[alice], [alice, bob], [bob, alice]]), utcnow())
            except Exception as exc:  # collected: a thread's exception would vanish
                errors.append(type(getattr(exc, "orig", exc)).__name__)

    def start_syncs() -> None:
        rng = random.Random(99)
        for _ in range(120):
            try:
                with world.database.session() as session:
                    session.execute(
                        update(CalendarConnection)
                        .where(CalendarConnection.id == rng.choice(ids))
                        .values(dirty_since=None)
                    )
            except Exception as exc:
                errors.append(type(getattr(exc, "orig", exc)).__name__)

    threads = [threading.Thread(target=mark, args=(n,)) for n in range(4)]
    threads.append(threading.Thread(target=start_syncs))
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []


def test_sweep_finds_exactly_the_overdue_connections(
    world: World, queue: SyncQueue, providers: Providers, memory: MemoryProvider, app: Flask
) -> None:
    """New, failed-and-due, window-moved, crashed and stale-dirty: yes; idle, paused: no."""
    world.put_shift("a", 1)
    idle = world.connect(memory)
    world.sync(idle, memory)  # due at the next window move (tomorrow)
    states = {
        "new": {},
        "retry": {"status": "error", "next_retry_at": NOW,
                  "sync_due_at": NOW - timedelta(minutes=1)},
        "window": {"sync_due_at": NOW - timedelta(minutes=5)},
        "crashed": {"lease_owner": "dead", "lease_expires_at": NOW - timedelta(minutes=1),
                    "sync_due_at": NOW - timedelta(minutes=1)},
        "dirty": {"dirty_since": NOW - timedelta(minutes=2),
                  "sync_due_at": NOW + timedelta(days=1)},
        "paused": {"status": "needs_reauth", "sync_due_at": None},
        "not-yet": {"status": "error", "sync_due_at": NOW + timedelta(minutes=3)},
    }  # fmt: skip
    made = {}
    for name, values in states.items():
        # One connection per user and provider: a provider name of its own for each.
        made[name] = world.connect(memory, user="bob", kind=name)
        if not values:
            continue
        world.execute(
            update(CalendarConnection).where(CalendarConnection.id == made[name]).values(**values)
        )
    due = sweep_due(app, NOW)
    expected = {made[n] for n in ("new", "retry", "window", "crashed", "dirty")}
    assert set(due) == expected
    assert sweep_due(app, NOW) == []  # claimed: the next sweep leaves them to their nudges
    # Ten minutes on, the claimed ones (their nudges lost?) come back, with "not-yet".
    later = sweep_due(app, NOW + timedelta(minutes=11))
    assert later == sorted(expected | {made["not-yet"]})


def test_concurrent_sweeps_claim_each_connection_once(
    app: Flask, world: World, memory: MemoryProvider
) -> None:
    """Every worker runs the sweep: at the same moment they must split the work, not repeat it."""
    made = {world.connect(memory, user="bob", kind=f"p{n}") for n in range(60)}
    start = threading.Barrier(4)
    claims: list[list[int]] = []

    def sweep() -> None:
        start.wait()
        claims.append(sweep_due(app, NOW))

    threads = [threading.Thread(target=sweep) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    claimed = [cid for claim in claims for cid in claim]
    assert len(claims) == 4
    assert sorted(claimed) == sorted(made)  # all of them, none twice


def test_sweep_task_nudges_and_syncs(
    world: World, queue: SyncQueue, providers: Providers, memory: MemoryProvider
) -> None:
    """The periodic task queues overdue connections, which then sync (the window moved)."""
    world.put_shift("a", 1)
    cid = world.connect(memory)
    world.sync(cid, memory)
    assert queue.sweep.call_local() == 0
    queue.clock.now = NOW + timedelta(days=1, hours=2)  # past the next window move
    assert queue.sweep.call_local() == 1
    queue.drain()
    assert providers.syncs == {cid: 1}
    assert world.connection(cid).last_window_start == datetime(2030, 1, 9, tzinfo=UTC)


def test_sweeping_many_idle_connections_makes_no_remote_call(
    world: World, app: Flask, memory: MemoryProvider
) -> None:
    """2,000 connections synced a moment ago: the sweep selects none, in one quick query."""
    counting = CountingProvider(memory)
    use_providers(app, lambda c: counting)
    future = NOW + timedelta(days=300)
    with world.database.session() as session:
        user_id = world.user_id("alice")
        session.execute(
            CalendarConnection.__table__.insert(),
            [
                {"user_id": user_id, "provider": f"p{n}", "status": "active", "owns_calendar": True,
                 "use_primary": False, "scopes": "", "window_days": 90, "id_generation": 1,
                 "last_created": 0, "last_updated": 0, "last_deleted": 0, "failure_count": 0,
                 "created_at": NOW, "updated_at": NOW, "sync_due_at": future, "calendar_id": "c"}
                for n in range(2000)
            ],
        )  # fmt: skip
    started = time.perf_counter()
    assert sweep_due(app, NOW) == []
    assert time.perf_counter() - started < 0.5
    assert counting.calls == {}


# ---------------------------------------------------------------- real consumers


def wait_for(predicate, timeout: float = 15.0) -> bool:
    """Poll until `predicate()` is true."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.05)
    return False


def put_shift_via_api(api, external_id: str, start: datetime) -> None:
    """Create a shift through the JSON API (which commits, then notifies)."""
    body = {
        "user_email": "alice@example.com",
        "starts_at": start.isoformat(),
        "ends_at": (start + timedelta(hours=8)).isoformat(),
    }
    response = api.put(f"/api/v1/schedules/payments/shifts/{external_id}", json=body)
    assert response.status_code in (200, 201), response.get_json()


def end_to_end(app: Flask, api, world: World, memory: MemoryProvider) -> None:
    """A shift written through the API shows up in the calendar within seconds."""
    use_providers(app, lambda c: memory)
    cid = world.connect(memory)
    world.sync(cid, memory, now=utcnow())  # idle: not due for the sweep, only for nudges
    stop = start_embedded_worker(app, workers=2)
    try:
        tomorrow = utcnow().replace(minute=0, second=0, microsecond=0) + timedelta(days=1)
        started = time.monotonic()
        put_shift_via_api(api, "e2e", tomorrow)
        calendar_id = world.connection(cid).calendar_id
        assert wait_for(lambda: len(memory.live_specs(calendar_id)) == 1)
        elapsed = time.monotonic() - started
        assert DEBOUNCE.total_seconds() <= elapsed < 10
        put_shift_via_api(api, "e2e", tomorrow + timedelta(hours=1))
        # Compare instants, not hours: at 23:xx UTC the moved shift starts at hour 0.
        moved = tomorrow + timedelta(hours=1)
        assert wait_for(lambda: memory.live_specs(calendar_id)[0].starts_at == moved)
    finally:
        stop()
    assert world.connection(cid).status == "active"


def test_embedded_worker_on_sqlite(app: Flask, api, world: World, memory: MemoryProvider) -> None:
    """Huey on its default SQLite file, consumer threads in this process."""
    assert app.config["QUEUE_URL"].startswith("sqlite:///")
    try:
        end_to_end(app, api, world, memory)
    finally:
        get_queue(app).huey.flush()


@pytest.fixture
def redis_app(app_config: dict[str, Any], redis_queue: dict[str, str]) -> Iterator[Flask]:
    """An app whose queue is on the test Redis, under a queue name of its own."""
    application = create_app({**app_config, **redis_queue})
    yield application
    get_queue(application).huey.flush()
    database = get_database(application)
    from tests.conftest import _empty_tables

    _empty_tables(database)
    database.dispose()


def test_embedded_worker_on_redis(redis_app: Flask, memory: MemoryProvider) -> None:
    """The same code on Redis (as several machines would share it)."""
    from oncal_feed import accounts

    world = World(redis_app)
    with get_database(redis_app).session() as session:
        _key, secret = accounts.create_api_key(session, "tests", utcnow())
    api = redis_app.test_client()
    api.environ_base["HTTP_AUTHORIZATION"] = f"Bearer {secret}"
    assert type(get_queue(redis_app).huey).__name__ == "RedisHuey"
    end_to_end(redis_app, api, world, memory)


def test_two_apps_share_one_redis_queue(
    redis_app: Flask, app_config, memory: MemoryProvider
) -> None:
    """A nudge enqueued by one process (web) is run by another's consumer (worker)."""
    world = World(redis_app)
    use_providers(redis_app, lambda c: memory)
    # The consumer runs on the real clock: a shift tomorrow, really.
    world.put_shift("a", (utcnow() - NOW).total_seconds() / 86400 + 1)
    cid = world.connect(memory)
    queue_name = redis_app.config["QUEUE_NAME"]
    queue_url = redis_app.config["QUEUE_URL"]
    worker_app = create_app({**app_config, "QUEUE_URL": queue_url, "QUEUE_NAME": queue_name})
    use_providers(worker_app, lambda c: memory)
    stop = start_embedded_worker(worker_app, workers=1)
    try:
        get_queue(redis_app).nudge(cid, force=True)
        calendar_id = world.connection(cid).calendar_id
        assert wait_for(lambda: len(memory.live_specs(calendar_id)) == 1)
    finally:
        stop()
        get_database(worker_app).dispose()


def test_the_consumer_moves_due_nudges_more_than_once_a_second(app: Flask) -> None:
    """Huey's one-second floor would add half a second to the median change."""
    from oncal_feed.sync.tasks import IDLE_POLL, SCHEDULER_TICK

    for embedded in (True, False):
        consumer = get_queue(app).consumer(2, embedded=embedded)
        scheduler = consumer._create_scheduler()
        assert scheduler.interval == SCHEDULER_TICK.total_seconds() < 1
        assert scheduler.periodic  # the sweeps still run
        assert consumer.max_delay == IDLE_POLL.total_seconds() < 1


def test_queue_url_must_be_sqlite_or_redis(app_config) -> None:
    """A wrong QUEUE_URL stops the app with a message that says what to use."""
    from oncal_feed.errors import ConfigError

    with pytest.raises(ConfigError, match="redis://"):
        create_app({**app_config, "QUEUE_URL": "amqp://127.0.0.1"})


def test_listener_is_registered(app: Flask) -> None:
    """create_app wires shift writes to the queue."""
    listeners = app.extensions["oncal_listeners"]
    assert get_queue(app).on_shifts_changed in listeners
    with get_database(app).sessionmaker() as session:
        assert session.scalars(select(CalendarConnection.id)).all() == []
