"""Push sync through the real Google and Graph adapters against the fake servers.

The fault test is the one that matters: both fakes fail over a fifth of all calls (5xx,
429 and 403 throttling, timeouts, connections dropped before and *after* the write
committed), and the worker — Huey's consumer in a process of its own, as
`oncal-feed worker` runs it — is killed with SIGKILL in the middle of its syncs, twice,
with shifts changing in between. After recovery each remote calendar must hold exactly
the desired events: none missing, no duplicates, no orphans.
"""

from __future__ import annotations

import json
import random
import time
from collections.abc import Iterator
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import delete, select

from oncal_feed import shifts
from oncal_feed.db import get_database, utcnow
from oncal_feed.models import CalendarConnection, SyncRecord
from oncal_feed.sync.lease import LEASE_TTL
from oncal_feed.sync.service import run_sync
from oncal_feed.sync.tasks import get_queue
from oncal_feed.validation import ShiftInput
from tests.sync.remote import (
    ALICE,
    connect_both,
    connection,
    desired_events,
    mismatch,
    remote_events,
    tomorrow_noon,
)
from tests.sync.support import World
from tests.sync.worker_process import WorkerChild, worker_child


@pytest.fixture
def app_config(app_config: dict[str, Any], oauth_settings: dict[str, Any]) -> dict[str, Any]:
    """The test app, pointed at the fakes, with a short timeout so slow calls time out."""
    return {**app_config, **oauth_settings, "PROVIDER_TIMEOUT": 1}


@pytest.fixture
def world(app: Flask) -> World:
    """Alice and Bob and the `payments` schedule."""
    return World(app)


def put_shifts(world: World, items: list[ShiftInput], now: datetime) -> None:
    """Write shifts (one transaction)."""
    with world.database.session() as session:
        schedule = shifts.get_schedule(session, "payments")
        for item in items:
            shifts.upsert_shift(session, schedule, item, now)


def shift(external_id: str, start: datetime, *, user: str = "alice", notes: str = "") -> ShiftInput:
    """A four-hour shift."""
    return ShiftInput(external_id, f"{user}@example.com", start, start + timedelta(hours=4),
                      notes=notes)  # fmt: skip


def remote_writes(fakes: dict[str, Any]) -> int:
    """Event writes that reached the fakes' handlers."""
    google = fakes["google"].stats.snapshot()
    graph = fakes["microsoft"].stats.snapshot()
    return sum(
        stats.get(op, 0)
        for stats in (google, graph)
        for op in ("events.insert", "events.update", "events.patch", "events.delete",
                   "events.create")
    )  # fmt: skip


def assert_exact(app: Flask, fakes: dict[str, Any], ids: dict[str, int], now: datetime) -> None:
    """Each calendar holds exactly the desired events, and every record says so."""
    alice = connection(app, ids["google"]).user_id
    expected = desired_events(app, alice, now)
    assert expected, "the test needs events"
    for provider, connection_id in ids.items():
        row = connection(app, connection_id)
        problems = mismatch(expected, remote_events(fakes, row))
        assert problems == {}, f"{provider}: {problems}"
        with get_database(app).sessionmaker() as session:
            states = set(
                session.scalars(
                    select(SyncRecord.state).where(SyncRecord.connection_id == connection_id)
                )
            )
        assert states == {"synced"}, provider


# ---------------------------------------------------------------- without faults


def test_sync_through_real_adapters(
    app: Flask, client: FlaskClient, world: World, fakes: dict[str, Any]
) -> None:
    """Initial sync batched, a second sync writes nothing, one change is one write."""
    ids = connect_both(app, client, fakes)
    start = tomorrow_noon() - timedelta(days=2)
    put_shifts(world, [shift(f"s{n}", start + timedelta(hours=6 * n)) for n in range(60)], utcnow())
    for fake in fakes.values():
        fake.reset_stats()
    now = utcnow()
    for connection_id in ids.values():
        report = run_sync(app, connection_id, now=now)
        assert (report.outcome, report.created) == ("ok", 60), report
    google, graph = fakes["google"].stats.snapshot(), fakes["microsoft"].stats.snapshot()
    assert google["batch"] == 2  # 60 inserts in batches of 50
    assert graph["batch"] == 3  # and of 20
    assert_exact(app, fakes, ids, now)

    for fake in fakes.values():
        fake.reset_stats()
    for connection_id in ids.values():
        report = run_sync(app, connection_id, now=now, full_check=False)
        assert (report.outcome, report.writes) == ("ok", 0)
    assert fakes["google"].stats.snapshot().get("http", 0) == 0
    assert fakes["microsoft"].stats.snapshot().get("http", 0) == 0

    put_shifts(world, [shift("s3", start + timedelta(hours=18), notes="swap with Bob")], utcnow())
    for connection_id in ids.values():
        report = run_sync(app, connection_id, now=now, full_check=False)
        assert (report.outcome, report.updated, report.writes) == ("ok", 1, 1)
    assert remote_writes(fakes) == 2


def test_the_chosen_reminder_rings_in_both_calendars_and_a_change_of_it_is_pushed(
    app: Flask, client: FlaskClient, world: World, fakes: dict[str, Any]
) -> None:
    """No reminder at first: Google without its meeting default, Outlook's default off.
    Choosing one rewrites every event with it; pushed events, unlike feeds, ring."""
    ids = connect_both(app, client, fakes)
    start = tomorrow_noon()
    put_shifts(world, [shift(f"r{n}", start + timedelta(days=n)) for n in range(3)], utcnow())

    def reminders() -> dict[str, set[Any]]:
        google = fakes["google"].events(ALICE, connection(app, ids["google"]).calendar_id)
        graph = fakes["microsoft"].events(ALICE, connection(app, ids["microsoft"]).calendar_id)
        return {
            "google": {json.dumps(event["reminders"], sort_keys=True) for event in google},
            "microsoft": {
                (event["isReminderOn"], event["reminderMinutesBeforeStart"]) for event in graph
            },
        }

    for connection_id in ids.values():
        assert run_sync(app, connection_id).created == 3
    assert reminders() == {"google": {'{"useDefault": false}'}, "microsoft": {(False, 0)}}

    with world.database.session() as session:
        for row in session.scalars(select(CalendarConnection)):
            row.reminder_minutes = 30
    for connection_id in ids.values():
        report = run_sync(app, connection_id, full_check=False)
        assert (report.outcome, report.updated) == ("ok", 3), report
    assert reminders() == {
        "google": {'{"overrides": [{"method": "popup", "minutes": 30}], "useDefault": false}'},
        "microsoft": {(True, 30)},
    }


@pytest.mark.parametrize("expanded", [True, False], ids=["as-documented", "strict"])
def test_outlook_full_check_after_a_user_deletion_restores_just_that_event(
    app: Flask, client: FlaskClient, world: World, fakes: dict[str, Any], expanded: bool
) -> None:
    """Events are matched by recorded id first, so a listing without tags creates one.

    Graph returns expanded properties whatever `$select` says; a server that drops them
    (the strict fake) once made a full check re-create the whole calendar.
    """
    ids = connect_both(app, client, fakes)
    start = tomorrow_noon()
    put_shifts(world, [shift(f"s{n}", start + timedelta(hours=6 * n)) for n in range(30)], utcnow())
    now = utcnow()
    graph = fakes["microsoft"]
    assert run_sync(app, ids["microsoft"], now=now).created == 30
    graph.expanded_under_select = expanded
    row = connection(app, ids["microsoft"])
    assert row.calendar_id is not None
    graph.remove_event(ALICE, graph.events(ALICE, row.calendar_id)[7]["id"])

    report = run_sync(app, ids["microsoft"], now=now, full_check=True)

    assert (report.outcome, report.created, report.deleted) == ("ok", 1, 0), report
    assert mismatch(desired_events(app, row.user_id, now), remote_events(fakes, row)) == {}


def test_a_listing_that_lost_our_tags_creates_nothing(
    app: Flask, client: FlaskClient, world: World, fakes: dict[str, Any]
) -> None:
    """Untagged events in a listing of tagged ones: an error to retry, never 30 creates."""
    ids = connect_both(app, client, fakes)
    start = tomorrow_noon()
    put_shifts(world, [shift(f"s{n}", start + timedelta(hours=6 * n)) for n in range(30)], utcnow())
    now = utcnow()
    graph = fakes["microsoft"]
    assert run_sync(app, ids["microsoft"], now=now).created == 30
    # The records are lost (a restored backup) and the server drops the tags.
    with get_database(app).session() as session:
        session.execute(delete(SyncRecord).where(SyncRecord.connection_id == ids["microsoft"]))
    graph.expanded_under_select = False

    report = run_sync(app, ids["microsoft"], now=now, full_check=True)

    assert (report.outcome, report.created) == ("failed", 0), report
    assert report.error is not None
    assert "without our tags" in report.error
    assert report.next_retry_at is not None
    row = connection(app, ids["microsoft"])
    assert row.calendar_id is not None
    assert len(graph.events(ALICE, row.calendar_id)) == 30


def edit_and_delete(fakes: dict[str, Any], row: CalendarConnection, edit: int, gone: int) -> None:
    """The user retitles one of our events and deletes another, in their calendar app."""
    assert row.calendar_id is not None
    fake = fakes[row.provider]
    events = fake.events(ALICE, row.calendar_id)
    if row.provider == "google":
        fake.edit_event(ALICE, row.calendar_id, events[edit]["id"], {"summary": "Dentist"})
        fake.remove_event(ALICE, row.calendar_id, events[gone]["id"])
    else:
        fake.edit_event(ALICE, events[edit]["id"], {"subject": "Dentist"})
        fake.remove_event(ALICE, events[gone]["id"])


def test_users_edits_and_deletions_are_undone_by_the_full_check(
    app: Flask, client: FlaskClient, world: World, fakes: dict[str, Any]
) -> None:
    """One rule on both providers: the full check restores what we render."""
    ids = connect_both(app, client, fakes)
    start = tomorrow_noon()
    put_shifts(world, [shift(f"s{n}", start + timedelta(hours=6 * n)) for n in range(10)], utcnow())
    now = utcnow()
    for connection_id in ids.values():
        assert run_sync(app, connection_id, now=now).created == 10
        edit_and_delete(fakes, connection(app, connection_id), edit=2, gone=5)
        # An incremental sync trusts its records: nothing to do yet.
        assert run_sync(app, connection_id, now=now, full_check=False).writes == 0
    for connection_id in ids.values():
        report = run_sync(app, connection_id, now=now, full_check=True)
        assert report.outcome == "ok", report
    assert_exact(app, fakes, ids, now)
    for connection_id in ids.values():
        assert run_sync(app, connection_id, now=now, full_check=True).writes == 0


def test_a_changed_shift_restores_its_deleted_or_edited_event_at_once(
    app: Flask, client: FlaskClient, world: World, fakes: dict[str, Any]
) -> None:
    """No full check needed when the shift itself changes."""
    ids = connect_both(app, client, fakes)
    start = tomorrow_noon()
    items = [shift(f"s{n}", start + timedelta(hours=6 * n)) for n in range(4)]
    put_shifts(world, items, utcnow())
    now = utcnow()
    for connection_id in ids.values():
        run_sync(app, connection_id, now=now)
        edit_and_delete(fakes, connection(app, connection_id), edit=1, gone=2)
    moved = [shift(f"s{n}", start + timedelta(hours=6 * n), notes="moved") for n in (1, 2)]
    put_shifts(world, moved, utcnow())
    for connection_id in ids.values():
        report = run_sync(app, connection_id, now=now, full_check=False)
        assert report.outcome == "ok", report
    assert_exact(app, fakes, ids, now)


@pytest.mark.parametrize("provider", ["google", "microsoft"])
def test_a_late_write_from_a_timed_out_call_cannot_overwrite_a_newer_one(
    app: Flask, client: FlaskClient, world: World, fakes: dict[str, Any], provider: str
) -> None:
    """The race If-Match closes: a write that timed out lands after a newer one, and loses.

    The first update is held by the server past our timeout (the call fails here, but the
    write still arrives later, as on the real services); the next sync writes newer content;
    then the held write reaches the server naming the etag it was planned on: 412, refused.
    """
    ids = connect_both(app, client, fakes)
    connection_id, fake = ids[provider], fakes[provider]
    start = tomorrow_noon()
    put_shifts(world, [shift("s0", start)], utcnow())
    now = utcnow()
    assert run_sync(app, connection_id, now=now).created == 1

    put_shifts(world, [shift("s0", start + timedelta(hours=1))], utcnow())  # moved
    fake.faults.fail_next(kind="slow", delay=3.0)  # longer than PROVIDER_TIMEOUT (1 s)
    timed_out = run_sync(app, connection_id, now=now)
    assert (timed_out.outcome, timed_out.updated) == ("failed", 0), timed_out
    before = remote_writes(fakes)
    put_shifts(world, [shift("s0", start + timedelta(hours=2))], utcnow())  # moved again
    newer = run_sync(app, connection_id, now=now)
    assert (newer.outcome, newer.updated) == ("ok", 1), newer

    deadline = time.monotonic() + 15
    while remote_writes(fakes) < before + 2:  # the newer write, then the held one
        assert time.monotonic() < deadline, "the held write never reached the fake"
        time.sleep(0.05)
    row = connection(app, connection_id)
    assert mismatch(desired_events(app, row.user_id, now), remote_events(fakes, row)) == {}
    [event] = remote_events(fakes, row)
    assert event.start == start + timedelta(hours=2)
    # The records still name the event's etag: nothing to rewrite at the full check.
    assert run_sync(app, connection_id, now=now, full_check=True).writes == 0


def test_sync_now_endpoint(
    app: Flask, client: FlaskClient, world: World, fakes: dict[str, Any]
) -> None:
    """POST /api/calendar/sync runs both connections and answers the counts."""
    connect_both(app, client, fakes)
    start = tomorrow_noon()
    put_shifts(world, [shift("a", start), shift("far", start + timedelta(days=40))], utcnow())
    response = client.post("/api/calendar/sync?days=30")
    assert response.status_code == 200, response.get_json()
    body = response.get_json()
    assert (body["created"], body["failed"]) == (2, 0)  # one event in each calendar
    assert [c["provider"] for c in body["connections"]] == ["google", "microsoft"]
    listing = client.get("/api/calendar/connections").get_json()["connections"]
    assert {c["last_counts"]["created"] for c in listing} == {1}
    assert all(c["last_sync_at"] and c["last_error"] is None for c in listing)


def test_revoked_grant_needs_reauth(
    app: Flask, client: FlaskClient, world: World, fakes: dict[str, Any]
) -> None:
    """invalid_grant at refresh → needs_reauth, a plain message, no retry scheduled."""
    ids = connect_both(app, client, fakes)
    put_shifts(world, [shift("a", tomorrow_noon())], utcnow())
    fakes["google"].revoke_grants(ALICE)
    fakes["google"].expire_access_tokens(ALICE)
    report = run_sync(app, ids["google"], now=utcnow() + timedelta(hours=2))
    row = connection(app, ids["google"])
    assert (report.outcome, row.status) == ("needs_reauth", "needs_reauth")
    assert row.last_error == (
        "Google Calendar access was revoked or has expired; reconnect the calendar to resume "
        "syncing."
    )
    assert row.next_retry_at is None
    assert run_sync(app, ids["microsoft"]).outcome == "ok"


def test_throttling_is_honoured(
    app: Flask, client: FlaskClient, world: World, fakes: dict[str, Any]
) -> None:
    """A 429 with Retry-After (and Google's 403 rateLimitExceeded) sets the retry time."""
    ids = connect_both(app, client, fakes)
    put_shifts(world, [shift("a", tomorrow_noon())], utcnow())
    fakes["microsoft"].fail_next(1, 429, retry_after=90)
    fakes["google"].fail_next(1, kind="quota")
    now = utcnow()
    for provider, connection_id in ids.items():
        report = run_sync(app, connection_id, now=now, full_check=False)
        row = connection(app, connection_id)
        assert report.outcome == "failed", provider
        assert "slow down" in row.last_error
        if provider == "microsoft":
            assert row.next_retry_at >= now + timedelta(seconds=90)
    for connection_id in ids.values():
        assert run_sync(app, connection_id, now=now, full_check=False).outcome == "ok"


def test_a_worker_run_waits_out_a_short_throttle_and_lands_the_rest(
    app: Flask, client: FlaskClient, world: World, fakes: dict[str, Any]
) -> None:
    """With a retry budget (the worker's runs), a throttle whose Retry-After fits in it is
    waited out: the throttled writes land in the same run, which ends `ok`."""
    ids = connect_both(app, client, fakes)
    start = tomorrow_noon()
    put_shifts(world, [shift(f"s{i}", start + timedelta(days=i)) for i in range(4)], utcnow())
    fakes["microsoft"].fail_next(2, 429, retry_after=1)
    fakes["google"].fail_next(2, kind="quota")
    for provider, connection_id in ids.items():
        began = time.monotonic()
        report = run_sync(app, connection_id, now=utcnow(), full_check=False, retry=True)
        assert report.outcome == "ok", (provider, report)
        assert report.created == 4, provider
        if provider == "microsoft":
            assert time.monotonic() - began >= 1, "Retry-After was not honoured"
        assert connection(app, connection_id).last_error is None
    assert_exact(app, fakes, ids, utcnow())


def test_a_throttle_longer_than_the_budget_ends_the_run_at_once(
    app: Flask, client: FlaskClient, world: World, fakes: dict[str, Any]
) -> None:
    """A Retry-After the budget cannot wait out is left to the next run, without waiting."""
    ids = connect_both(app, client, fakes)
    put_shifts(world, [shift("a", tomorrow_noon())], utcnow())
    fakes["microsoft"].fail_next(1, 429, retry_after=90)
    now = utcnow()
    began = time.monotonic()
    report = run_sync(app, ids["microsoft"], now=now, full_check=False, retry=True)
    assert time.monotonic() - began < 5
    assert report.outcome == "failed"
    assert connection(app, ids["microsoft"]).next_retry_at >= now + timedelta(seconds=90)


# ---------------------------------------------------------------- faults and a killed worker


FAULT_RATES = {
    "error_rate": 0.08,
    "rate_limit_rate": 0.02,
    "quota_rate": 0.02,
    "drop_rate": 0.04,
    "drop_after_commit_rate": 0.06,
    "slow_rate": 0.02,
}


def inject_faults(fakes: dict[str, Any], seed: int, drop_mode: str) -> None:
    """Make each fake fail 24% of its calendar calls (batch members included)."""
    assert sum(FAULT_RATES.values()) >= 0.2
    for offset, fake in enumerate(fakes.values()):
        fake.faults.seed(seed + offset)
        for name, rate in FAULT_RATES.items():
            setattr(fake.faults, name, rate)
        fake.faults.retry_after = 1
        fake.faults.slow_seconds = 1.5  # longer than PROVIDER_TIMEOUT: a timeout
        fake.faults.drop_mode = drop_mode


@pytest.fixture
def worker(
    app_config: dict[str, Any], fakes: dict[str, Any], tmp_path: Path
) -> Iterator[WorkerChild]:
    """A worker process, killed at the end whatever happens."""
    with worker_child(app_config, fakes, tmp_path, periodic=False) as child:
        yield child


def leases_held(app: Flask) -> int:
    """Connections whose lease a (dead) worker holds."""
    with get_database(app).sessionmaker() as session:
        return len(
            session.scalars(
                select(CalendarConnection.id).where(CalendarConnection.lease_owner.is_not(None))
            ).all()
        )


def run_and_kill(
    app: Flask, worker: WorkerChild, fakes: dict[str, Any], ids: dict[str, int], rng: random.Random
) -> None:
    """Start the worker, nudge both connections, and kill it once writes are under way."""
    worker.start()
    before = sum(fake.stats.snapshot().get("batch_members", 0) for fake in fakes.values())
    threshold = before + rng.randrange(5, 40)
    queue = get_queue(app)
    for connection_id in ids.values():
        queue.nudge(connection_id, force=True)
    deadline = time.monotonic() + 60
    while sum(fake.stats.snapshot().get("batch_members", 0) for fake in fakes.values()) < threshold:
        assert time.monotonic() < deadline, worker.log_path.read_text()
        time.sleep(0.002)
    worker.kill()
    assert leases_held(app) >= 1, "the worker was meant to die in the middle of a sync"


def recover(app: Flask, ids: dict[str, int], now: datetime, rounds: int = 60) -> None:
    """Sync (with full checks) until each connection has had one run without a failure."""
    pending = dict(ids)
    for _ in range(rounds):
        for provider, connection_id in list(pending.items()):
            report = run_sync(app, connection_id, now=now, full_check=True)
            assert report.outcome in ("ok", "partial", "failed"), report
            if report.outcome == "ok":
                del pending[provider]
        if not pending:
            return
    pytest.fail(f"no clean sync after {rounds} rounds: {pending}")


def test_exactly_the_desired_events_after_faults_and_a_killed_worker(
    app: Flask, client: FlaskClient, world: World, fakes: dict[str, Any], worker: WorkerChild
) -> None:
    """≥20% injected failures, SIGKILL mid-sync twice, churn between: exact after recovery."""
    rng = random.Random(2024)
    ids = connect_both(app, client, fakes)
    start = tomorrow_noon() - timedelta(days=5)
    at = [start + timedelta(hours=7 * n) for n in range(80)]
    put_shifts(world, [shift(f"s{n}", at[n]) for n in range(80)], utcnow())

    # Round 1: the initial sync under faults, killed part way. httplib2 replays a request
    # whose connection closed after the write ("close"): Google sees a 409 for its own insert.
    inject_faults(fakes, seed=1, drop_mode="close")
    run_and_kill(app, worker, fakes, ids, rng)

    # Changes while no worker runs: edits, deletions, reassignments, new shifts.
    now = utcnow()
    numbers = rng.sample(range(80), 40)
    edits = [shift(f"s{n}", at[n] + timedelta(hours=1), notes="moved") for n in numbers[:15]]
    gone = [shift(f"s{n}", at[n], user="bob") for n in numbers[15:25]]
    fresh = [shift(f"new{n}", at[n] + timedelta(hours=5)) for n in range(10)]
    put_shifts(world, edits + gone + fresh, now)
    for n in numbers[25:35]:
        world.delete_shift(f"s{n}", now=now)

    # Round 2: a fresh worker picks up the pieces (the dead one's leases must expire
    # first: it is nudged again), and is killed too. Connections now reset rather than close.
    inject_faults(fakes, seed=2, drop_mode="reset")
    with get_database(app).session() as session:
        for row in session.scalars(select(CalendarConnection)):
            row.lease_expires_at = utcnow() - timedelta(seconds=1)  # as if TTL had passed
    run_and_kill(app, worker, fakes, ids, rng)
    injected = sum(sum(fake.faults.injected.values()) for fake in fakes.values())
    assert injected > 0

    # Recovery, faults still on, as later syncs would run it (after the leases expired).
    later = utcnow() + LEASE_TTL + timedelta(seconds=5)
    recover(app, ids, later)
    # A call that timed out on a slow fault still lands (as on the real services): let every
    # one land before checking the calendars and counting the writes of the last check.
    for fake in fakes.values():
        fake.wait_idle()
    assert_exact(app, fakes, ids, later)

    # With the faults gone, a full check rewrites at most the events a late write (a
    # timed-out call that landed after ours) changed behind our back, and the next one
    # finds nothing to do.
    for fake in fakes.values():
        fake.faults.reset()
    for connection_id in ids.values():
        report = run_sync(app, connection_id, now=later, full_check=True)
        assert (report.outcome, report.created, report.deleted) == ("ok", 0, 0), report
    for fake in fakes.values():
        fake.wait_idle()
        fake.reset_stats()
    assert_exact(app, fakes, ids, later)
    for connection_id in ids.values():
        report = run_sync(app, connection_id, now=later, full_check=True)
        assert (report.outcome, report.writes) == ("ok", 0)
    for fake in fakes.values():
        fake.wait_idle()
    assert remote_writes(fakes) == 0


def test_a_token_refreshed_during_a_sync_is_kept(
    app: Flask, client: FlaskClient, world: World, fakes: dict[str, Any]
) -> None:
    """The services revoke the access token mid-life: the adapters refresh, we keep it."""
    ids = connect_both(app, client, fakes)
    put_shifts(world, [shift("a", tomorrow_noon())], utcnow())
    before = {p: connection(app, cid).token_ciphertext for p, cid in ids.items()}
    for fake in fakes.values():
        assert fake.expire_access_tokens(ALICE) >= 1
    for provider, connection_id in ids.items():
        report = run_sync(app, connection_id)
        assert report.outcome == "ok", (provider, report)
        assert connection(app, connection_id).token_ciphertext != before[provider], provider
    for provider, connection_id in ids.items():
        assert run_sync(app, connection_id, full_check=True).outcome == "ok", provider
