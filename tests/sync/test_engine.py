"""The sync engine against in-memory calendars: what ends up remote, and what is recorded."""

from __future__ import annotations

import dataclasses
import random
import threading
from collections.abc import Sequence
from datetime import timedelta

import pytest
from prometheus_client import REGISTRY
from sqlalchemy import update

from oncal_feed import shifts
from oncal_feed.models import CalendarConnection, SyncRecord
from oncal_feed.providers.base import (
    AuthorizationLost,
    Operation,
    OperationResult,
    PermanentError,
    PreconditionFailed,
    ProviderError,
    RateLimited,
    RemoteNotFound,
    TransientError,
)
from oncal_feed.providers.memory import MemoryProvider
from oncal_feed.rendering.event import EventSpec
from oncal_feed.sync.engine import describe_error
from oncal_feed.sync.plan import google_event_id
from oncal_feed.sync.schedule import (
    LATE_WRITE_RECHECK,
    MAX_IDLE_PASSES,
    NEXT_PASS_PAUSE,
    PROGRESS_RETRY,
    backoff_delay,
    full_check_due,
    next_pass_delay,
    sync_window,
)
from oncal_feed.validation import ScheduleInput, ShiftInput
from tests.sync.support import (
    NOW,
    CountingProvider,
    FlakyProvider,
    GraphLikeProvider,
    ScriptedErrors,
    World,
    live,
    live_uids,
)

LATER = NOW + timedelta(minutes=3)  # after a crashed worker's lease has run out


def calendar(world: World, connection_id: int) -> str:
    """The remote calendar id of a connection."""
    calendar_id = world.connection(connection_id).calendar_id
    assert calendar_id is not None
    return calendar_id


# ---------------------------------------------------------------- what is shown


def test_initial_sync_creates_each_shift_once_and_records_it(world: World, memory) -> None:
    """Every shift in the window becomes one event with our deterministic Google id."""
    world.put_shift("a", 1)
    world.put_shift("b", 3)
    cid = world.connect(memory)
    report = world.sync(cid, memory)
    assert (report.outcome, report.created) == ("ok", 2)
    cal = calendar(world, cid)
    assert live_uids(memory, cal) == sorted([world.uid("a"), world.uid("b")])
    records = world.records(cid)
    assert [r.state for r in records] == ["synced", "synced"]
    assert {r.remote_id for r in records} == {google_event_id(world.uid(x), 1) for x in "ab"}
    assert all(r.content_hash and r.remote_etag for r in records)


def test_window_edges(world: World, memory) -> None:
    """The window runs from midnight 7 days back to midnight N+1 days ahead, exclusive."""
    start, end = sync_window(NOW, 90)
    assert (start, end) == (
        NOW.replace(hour=0) - timedelta(days=7),
        NOW.replace(hour=0) + timedelta(days=91),
    )
    world.put_shift("ends-at-start", -8, hours=24)  # [start - 1 day, start): outside
    world.put_shift("overlaps-start", -8, hours=25)  # ends one hour into the window
    world.put_shift("last-inside", 90, hours=1)  # starts on the window's last day
    world.put_shift("starts-at-end", 91, hours=1)  # starts exactly at the end: outside
    cid = world.connect(memory)
    world.sync(cid, memory)
    expected = sorted(world.uid(x) for x in ("overlaps-start", "last-inside"))
    assert live_uids(memory, calendar(world, cid)) == expected


def test_window_days_is_per_connection(world: World, memory) -> None:
    """A 14-day connection shows no shift three weeks out."""
    world.put_shift("soon", 2)
    world.put_shift("far", 21)
    cid = world.connect(memory, window_days=14)
    world.sync(cid, memory)
    assert live_uids(memory, calendar(world, cid)) == [world.uid("soon")]


def test_shifts_that_age_out_stay_in_the_calendar(world: World, memory) -> None:
    """A month later, last month's shifts are outside the window but not deleted."""
    world.put_shift("past", 1)
    cid = world.connect(memory)
    world.sync(cid, memory)
    counting = CountingProvider(memory)
    report = world.sync(cid, counting, now=NOW + timedelta(days=30), full_check=True)
    assert report.outcome == "ok"
    assert counting.writes == 0
    assert live_uids(memory, calendar(world, cid)) == [world.uid("past")]
    assert [r.state for r in world.records(cid)] == ["synced"]


def test_deleted_shift_is_deleted_remotely(world: World, memory) -> None:
    """A tombstoned shift's event goes, and so does its record."""
    world.put_shift("a", 1)
    world.put_shift("b", 2)
    cid = world.connect(memory)
    world.sync(cid, memory)
    world.delete_shift("a")
    report = world.sync(cid, memory)
    assert report.deleted == 1
    assert live_uids(memory, calendar(world, cid)) == [world.uid("b")]
    assert len(world.records(cid)) == 1


def test_deleted_past_shift_is_deleted_even_outside_the_window(world: World, memory) -> None:
    """Leaving the window keeps an event; deleting the shift later still removes it."""
    world.put_shift("a", 1)
    cid = world.connect(memory)
    world.sync(cid, memory)
    world.delete_shift("a")
    world.sync(cid, memory, now=NOW + timedelta(days=30))
    assert live_uids(memory, calendar(world, cid)) == []


def test_reassigned_shift_moves_between_calendars(world: World, memory) -> None:
    """Giving Alice's shift to Bob deletes it from her calendar and creates it in his."""
    world.put_shift("a", 1, user="alice")
    alice = world.connect(memory, user="alice")
    bob = world.connect(memory, user="bob")
    world.sync(alice, memory)
    world.sync(bob, memory)
    world.put_shift("a", 1, user="bob")
    assert world.sync(alice, memory).deleted == 1
    assert world.sync(bob, memory).created == 1
    assert live_uids(memory, calendar(world, alice)) == []
    assert live_uids(memory, calendar(world, bob)) == [world.uid("a")]


@pytest.mark.parametrize(
    "change",
    [
        pytest.param(lambda w: w.put_shift("a", 1, hours=8), id="times"),
        pytest.param(lambda w: w.rename_schedule("Payments API"), id="title"),
        pytest.param(lambda w: w.put_shift("a", 1, notes="Pager: +49"), id="description"),
        pytest.param(
            lambda w: w.execute(update(CalendarConnection).values(busy=True)), id="transparency"
        ),
    ],
)
def test_a_change_updates_the_event_in_one_write(world: World, memory, change) -> None:
    """Times, title, description or transparency: one update, nothing else."""
    world.put_shift("a", 1)
    world.put_shift("b", 5, user="bob")
    cid = world.connect(memory)
    world.sync(cid, memory)
    before = live(memory, calendar(world, cid))[0]
    change(world)
    counting = CountingProvider(memory)
    report = world.sync(cid, counting)
    assert (report.outcome, report.updated, counting.writes, counting.round_trips) == (
        "ok", 1, 1, 1,
    )  # fmt: skip
    after = live(memory, calendar(world, cid))[0]
    assert after.content_hash != before.content_hash


def test_nothing_to_change_makes_no_call_at_all(world: World, memory) -> None:
    """The second sync of an unchanged world touches no remote API."""
    for n in range(5):
        world.put_shift(f"s{n}", n)
    cid = world.connect(memory)
    world.sync(cid, memory)
    counting = CountingProvider(memory)
    report = world.sync(cid, counting)
    assert report.outcome == "ok"
    assert counting.calls == {}


def test_full_check_with_nothing_to_change_only_reads(world: World, memory) -> None:
    """The daily full check lists events but writes nothing when all is well."""
    world.put_shift("a", 1)
    cid = world.connect(memory)
    world.sync(cid, memory)
    counting = CountingProvider(memory)
    report = world.sync(cid, counting, full_check=True)
    assert report.full_check
    assert counting.writes == 0
    assert counting.calls["list_events"] == 1


def test_full_check_runs_once_a_day_by_itself(world: World, memory) -> None:
    """`full_check=None` lists remote events when the last listing is a day old."""
    cid = world.connect(memory)
    assert world.sync(cid, memory).full_check  # never listed yet
    assert not world.sync(cid, memory, now=NOW + timedelta(hours=23)).full_check
    assert world.sync(cid, memory, now=NOW + timedelta(hours=24)).full_check


def test_initial_sync_of_500_shifts_is_batched(world: World) -> None:
    """500 creates go out in batches of the provider's size (Graph: 20, so 25 batches)."""
    graph = GraphLikeProvider()
    world.put_many(500)
    cid = world.connect(graph, kind="microsoft")
    counting = CountingProvider(graph)
    report = world.sync(cid, counting)
    assert (report.outcome, report.created) == ("ok", 500)
    assert counting.calls["apply"] == 25
    assert counting.calls["op:insert"] == 500
    assert len(live_uids(graph, calendar(world, cid))) == 500


@pytest.mark.parametrize(("lost", "lists"), [(2, False), (6, True)])
def test_many_uncertain_inserts_are_answered_by_one_listing(
    world: World, lost: int, lists: bool
) -> None:
    """Graph has no client-chosen ids: each lost insert is a lookup by tag, so past a few
    of them the run lists the calendar once instead."""
    graph = GraphLikeProvider()
    world.put_many(10)
    cid = world.connect(graph, kind="microsoft")
    scripted = ScriptedErrors(graph)
    for _ in range(lost):
        scripted.fail_next("insert_event", TransientError("connection reset", None))
    world.sync(cid, scripted)
    assert sum(r.state == "creating" for r in world.records(cid)) == lost
    counting = CountingProvider(graph)
    report = world.sync(cid, counting, NOW + timedelta(minutes=1))
    assert report.outcome == "ok", report
    assert report.full_check is lists
    assert counting.calls.get("find_event", 0) == (0 if lists else lost)
    assert len(live_uids(graph, calendar(world, cid))) == 10


# ---------------------------------------------------------------- exactly once


class Crash(BaseException):
    """The worker dies (not an error the engine may catch)."""


class CrashingProvider(CountingProvider):
    """Dies on the n-th batch, either before sending it or after it took effect."""

    def __init__(self, inner, *, batch: int, after: bool) -> None:
        super().__init__(inner)
        self.batch, self.after = batch, after

    def apply(self, calendar_id: str, operations: Sequence[Operation]) -> list[OperationResult]:
        """Crash on the chosen batch."""
        if self.calls.get("apply", 0) + 1 == self.batch:
            if self.after:
                self.inner.apply(calendar_id, operations)
            raise Crash
        return super().apply(calendar_id, operations)


@pytest.mark.parametrize("after", [False, True], ids=["before-call", "after-call"])
@pytest.mark.parametrize("kind", ["google", "microsoft"])
def test_crash_between_intent_and_answer_leaves_no_duplicate(
    world: World, memory, kind: str, after: bool
) -> None:
    """A worker killed with inserts in flight: the next run neither duplicates nor loses."""
    provider = memory if kind == "google" else GraphLikeProvider()
    for n in range(30):
        world.put_shift(f"s{n}", n)
    cid = world.connect(provider, kind=kind)
    crashing = CrashingProvider(provider, batch=1, after=after)
    with pytest.raises(Crash):
        world.sync(cid, crashing, full_check=False)
    assert {r.state for r in world.records(cid)} == {"creating"}
    assert world.sync(cid, provider).outcome == "busy"  # the dead worker's lease holds
    report = world.sync(cid, provider, now=LATER, full_check=False)
    assert report.outcome == "ok"
    uids = live_uids(provider, calendar(world, cid))
    assert uids == sorted(world.uid(f"s{n}") for n in range(30))
    assert {r.state for r in world.records(cid)} == {"synced"}
    counting = CountingProvider(provider)
    world.sync(cid, counting, now=LATER, full_check=True)
    assert counting.writes == 0


@pytest.mark.parametrize(("landed", "lists"), [(3, False), (30, True)])
def test_many_uncertain_google_inserts_are_answered_by_one_listing(
    world: World, memory, landed: int, lists: bool
) -> None:
    """Google's answer to an insert that did land is a 409, and an update must follow;
    past a few uncertain inserts, one listing finds the landed ones, reads them back as
    what the shifts render to, and writes nothing."""
    world.put_many(landed)
    cid = world.connect(memory)
    with pytest.raises(Crash):
        world.sync(cid, CrashingProvider(memory, batch=1, after=True), full_check=False)
    assert {r.state for r in world.records(cid)} == {"creating"}
    # The day's full check is done: only the uncertain inserts can make this run list.
    world.execute(update(CalendarConnection).values(last_full_check_at=LATER))
    counting = CountingProvider(memory)
    report = world.sync(cid, counting, now=LATER)
    assert report.outcome == "ok", report
    assert report.full_check is lists
    assert counting.calls.get("list_events", 0) == int(lists)
    assert counting.calls.get("op:insert", 0) == (0 if lists else landed)
    assert counting.calls.get("op:update", 0) == (0 if lists else landed)
    assert report.created == landed
    assert len(live_uids(memory, calendar(world, cid))) == landed
    assert {(r.state, r.content_hash is not None) for r in world.records(cid)} == {("synced", True)}
    # The etags read back are recorded: an edit made later is found by the next check.
    assert all(r.remote_etag is not None for r in world.records(cid))


def test_a_landed_insert_edited_before_the_listing_is_rewritten(world: World, memory) -> None:
    """An insert whose answer was lost, then retitled by the user before the listing that
    finds it: it does not read back as the shift renders to, so it is written again."""
    world.put_many(5)
    cid = world.connect(memory)
    with pytest.raises(Crash):
        world.sync(cid, CrashingProvider(memory, batch=1, after=True), full_check=False)
    edited_behind_us(memory, calendar(world, cid), index=2)
    counting = CountingProvider(memory)
    report = world.sync(cid, counting, now=LATER, full_check=True)
    assert report.outcome == "ok", report
    assert counting.calls.get("op:update", 0) == 1
    assert "Dentist" not in {spec.summary for spec in live(memory, calendar(world, cid))}


def test_a_409_is_remembered_when_the_run_stops_before_the_restore(world: World, memory) -> None:
    """The insert meets our own event (409) and the run is throttled before the update
    that follows: the record already says the event exists, so the next run updates it
    instead of inserting once more."""
    world.put_shift("a", 1)
    cid = world.connect(memory)
    with pytest.raises(Crash):
        world.sync(cid, CrashingProvider(memory, batch=1, after=True), full_check=False)
    scripted = ScriptedErrors(memory)
    scripted.fail_next("update_event", RateLimited("rate limited", 429, retry_after=30))
    report = world.sync(cid, scripted, now=LATER, full_check=False)
    assert report.outcome == "failed", report
    [record] = world.records(cid)
    assert (record.state, record.content_hash) == ("synced", None)
    assert record.remote_id == google_event_id(world.uid("a"), 1)
    counting = CountingProvider(memory)
    report = world.sync(cid, counting, now=LATER + timedelta(minutes=1), full_check=False)
    assert (report.outcome, report.updated) == ("ok", 1), report
    assert counting.calls.get("op:insert", 0) == 0
    assert counting.calls.get("op:update", 0) == 1
    assert live_uids(memory, calendar(world, cid)) == [world.uid("a")]


def test_crash_after_a_delete_was_sent(world: World, memory) -> None:
    """A delete whose answer was lost is simply sent again (404 counts as done)."""
    world.put_shift("a", 1)
    cid = world.connect(memory)
    world.sync(cid, memory)
    world.delete_shift("a")
    with pytest.raises(Crash):
        world.sync(cid, CrashingProvider(memory, batch=1, after=True))
    assert [r.state for r in world.records(cid)] == ["deleting"]
    assert world.sync(cid, memory, now=LATER).outcome == "ok"
    assert world.records(cid) == []
    assert live_uids(memory, calendar(world, cid)) == []


def test_deleting_record_whose_shift_came_back_is_restored(world: World, memory) -> None:
    """Delete sent, answer lost, shift revived: the event is brought back by an update."""
    world.put_shift("a", 1)
    cid = world.connect(memory)
    world.sync(cid, memory)
    world.delete_shift("a")
    with pytest.raises(Crash):
        world.sync(cid, CrashingProvider(memory, batch=1, after=True))
    world.put_shift("a", 1)
    assert world.sync(cid, memory, now=LATER, full_check=False).outcome == "ok"
    assert live_uids(memory, calendar(world, cid)) == [world.uid("a")]


def test_409_on_insert_adopts_and_updates_the_existing_event(world: World, memory) -> None:
    """Our records were lost but the event exists under our id: no duplicate, content fixed."""
    world.put_shift("a", 1)
    cid = world.connect(memory)
    world.sync(cid, memory)
    world.execute(SyncRecord.__table__.delete())
    world.put_shift("a", 1, notes="changed")
    report = world.sync(cid, memory, full_check=False)
    assert report.outcome == "ok"
    events = live(memory, calendar(world, cid))
    assert [e.uid for e in events] == [world.uid("a")]
    assert "changed" in events[0].description
    assert world.records(cid)[0].remote_id == google_event_id(world.uid("a"), 1)


def test_event_cancelled_by_the_user_is_restored_on_full_check(world: World, memory) -> None:
    """Google keeps a deleted event's id; the full check brings it back under that id."""
    world.put_shift("a", 1)
    cid = world.connect(memory)
    world.sync(cid, memory)
    cal = calendar(world, cid)
    event_id = google_event_id(world.uid("a"), 1)
    memory.delete_event(cal, event_id)  # the user deletes it in Google Calendar
    assert world.sync(cid, memory, full_check=False).created == 0  # not noticed without a check
    report = world.sync(cid, memory, full_check=True)
    assert report.created == 1
    assert live_uids(memory, cal) == [world.uid("a")]
    assert world.records(cid)[0].remote_id == event_id
    assert world.connection(cid).id_generation == 1


@pytest.mark.parametrize(
    "refusal",
    [RemoteNotFound("event not found", 404), PermanentError("cannot restore", 403)],
    ids=["404", "403"],
)
def test_refused_restore_bumps_the_id_generation(world: World, memory, refusal) -> None:
    """When the cancelled event can't be restored, a new generation of ids is used."""
    world.put_shift("a", 1)
    cid = world.connect(memory)
    world.sync(cid, memory)
    cal = calendar(world, cid)
    memory.delete_event(cal, google_event_id(world.uid("a"), 1))
    scripted = ScriptedErrors(memory)
    scripted.fail_next("update_event", refusal)
    report = world.sync(cid, scripted, full_check=True)
    assert report.outcome == "ok"
    assert world.connection(cid).id_generation == 2
    new_id = google_event_id(world.uid("a"), 2)
    assert world.records(cid)[0].remote_id == new_id
    assert live_uids(memory, cal) == [world.uid("a")]


# ---------------------------------------------------------------- conditional writes


def edited_behind_us(memory: MemoryProvider, calendar_id: str, index: int = 0) -> str:
    """The user retitles one of our events (by default the first) in their calendar app;
    return its new etag."""
    spec = live(memory, calendar_id)[index]
    event_id = google_event_id(spec.uid, 1)
    return (
        memory.update_event(
            calendar_id, event_id, dataclasses.replace(spec, summary="Dentist")
        ).etag
        or ""
    )


def test_an_update_on_a_stale_etag_refetches_and_rewrites(world: World, memory) -> None:
    """412: the event changed behind us; it is read again and rewritten on its fresh etag."""
    world.put_shift("a", 1)
    cid = world.connect(memory)
    world.sync(cid, memory)
    cal = calendar(world, cid)
    sent_on = world.records(cid)[0].remote_etag
    assert sent_on is not None
    assert edited_behind_us(memory, cal) != sent_on
    world.put_shift("a", 2)  # the shift moves: an incremental update, on the old etag
    counting = CountingProvider(memory)

    report = world.sync(cid, counting, full_check=False)

    assert (report.outcome, report.updated, report.error) == ("ok", 1, None), report
    assert counting.calls["get_event"] == 1
    [event] = live(memory, cal)
    assert event.summary != "Dentist"
    assert event.starts_at.date() == (NOW + timedelta(days=2)).date()
    fresh = memory.get_event(cal, google_event_id(world.uid("a"), 1))
    assert fresh is not None
    assert world.records(cid)[0].remote_etag == fresh.etag


def test_a_412_from_our_own_late_write_is_settled_by_reading_back(world: World, memory) -> None:
    """The move's update landed but its answer was lost: the next update meets a 412, the
    refetch reads the event back as the moved shift, and nothing is written again."""
    world.put_shift("a", 1)
    cid = world.connect(memory)
    world.sync(cid, memory)
    world.put_shift("a", 2)
    with pytest.raises(Crash):
        world.sync(cid, CrashingProvider(memory, batch=1, after=True), full_check=False)
    counting = CountingProvider(memory)
    report = world.sync(cid, counting, now=LATER, full_check=False)
    assert (report.outcome, report.updated) == ("ok", 1), report
    assert (counting.calls.get("op:update"), counting.calls.get("get_event")) == (1, 1)
    fresh = memory.get_event(calendar(world, cid), google_event_id(world.uid("a"), 1))
    assert fresh is not None
    [record] = world.records(cid)
    assert record.remote_etag == fresh.etag
    assert world.sync(cid, counting, now=LATER, full_check=False).writes == 0


def test_a_delete_on_a_stale_etag_refetches_and_deletes(world: World, memory) -> None:
    """The shift is gone and the user had edited its event: it still goes (the calendar is ours)."""
    world.put_shift("a", 1)
    cid = world.connect(memory)
    world.sync(cid, memory)
    cal = calendar(world, cid)
    edited_behind_us(memory, cal)
    world.delete_shift("a")
    report = world.sync(cid, memory, full_check=False)
    assert (report.outcome, report.deleted) == ("ok", 1), report
    assert live(memory, cal) == []
    assert world.records(cid) == []


def test_an_event_that_keeps_changing_is_left_for_the_next_run(world: World, memory) -> None:
    """A second 412 in one run is not chased: the run reports it, the next one settles it."""
    world.put_shift("a", 1)
    cid = world.connect(memory)
    world.sync(cid, memory)
    world.put_shift("a", 2)
    scripted = ScriptedErrors(memory)
    for _ in range(2):
        scripted.fail_next("update_event", PreconditionFailed("changed", 412))

    report = world.sync(cid, scripted, full_check=False)

    assert (report.outcome, report.updated) == ("failed", 0), report
    assert scripted.queue == []  # both 412s were met: one refetch, then it stopped
    report = world.sync(cid, memory, full_check=False)
    assert (report.outcome, report.updated) == ("ok", 1), report
    assert (
        live(memory, calendar(world, cid))[0].starts_at.date() == (NOW + timedelta(days=2)).date()
    )


def test_event_deleted_by_the_user_in_outlook_comes_back(world: World) -> None:
    """Graph deletes for good; the full check creates the event again."""
    graph = GraphLikeProvider()
    world.put_shift("a", 1)
    world.put_shift("b", 2)
    cid = world.connect(graph, kind="microsoft")
    world.sync(cid, graph)
    cal = calendar(world, cid)
    graph.delete_by_user(cal, world.uid("a"))
    report = world.sync(cid, graph, full_check=True)
    assert (report.created, report.deleted) == (1, 0)
    assert live_uids(graph, cal) == sorted([world.uid("a"), world.uid("b")])


def test_update_of_an_event_gone_from_outlook_recreates_it(world: World) -> None:
    """Without a full check, an update that meets 404 inserts the event afresh."""
    graph = GraphLikeProvider()
    world.put_shift("a", 1)
    cid = world.connect(graph, kind="microsoft")
    world.sync(cid, graph)
    cal = calendar(world, cid)
    graph.delete_by_user(cal, world.uid("a"))
    world.put_shift("a", 1, notes="new")
    report = world.sync(cid, graph, full_check=False)
    assert report.outcome == "ok"
    assert [e.description.endswith("/settings") for e in live(graph, cal)] == [True]
    assert "new" in live(graph, cal)[0].description


def test_full_check_removes_orphans_and_duplicates(world: World, memory) -> None:
    """Tagged events without a record, and second copies of one shift, are deleted."""
    world.put_shift("a", 1)
    world.put_shift("b", 2)
    cid = world.connect(memory)
    world.sync(cid, memory)
    cal = calendar(world, cid)
    spec_a = live(memory, cal)[0]
    memory.insert_event(cal, spec_a, "dup0a")  # a duplicate of shift a
    orphan = dataclasses.replace(spec_a, uid="gone@oncal-feed")
    memory.insert_event(cal, orphan, "orphan0")  # an event of a shift we no longer know
    report = world.sync(cid, memory, full_check=True)
    assert report.deleted == 2
    assert live_uids(memory, cal) == sorted([world.uid("a"), world.uid("b")])


def test_deleted_calendar_is_recreated(world: World, memory) -> None:
    """The user deleted our calendar: a new one is made and filled."""
    world.put_shift("a", 1)
    cid = world.connect(memory)
    world.sync(cid, memory)
    old = calendar(world, cid)
    memory.delete_calendar(old)
    world.put_shift("a", 1, notes="x")
    report = world.sync(cid, memory, full_check=False)
    assert report.outcome == "ok"
    new = calendar(world, cid)
    assert new != old
    assert live_uids(memory, new) == [world.uid("a")]


def test_a_calendar_deleted_behind_a_refusal_is_recreated_at_once(world: World, memory) -> None:
    """Google answers writes to a deleted calendar with 403 under calendar.app.created:
    a refused write makes the sync look for the calendar, and make a new one."""
    world.put_shift("a", 1)
    cid = world.connect(memory)
    world.sync(cid, memory)
    old = calendar(world, cid)
    memory.delete_calendar(old)
    scripted = ScriptedErrors(memory)
    scripted.fail_next("update_event", PermanentError("insufficientPermissions", 403))
    world.put_shift("a", 1, notes="x")
    report = world.sync(cid, scripted, full_check=False)
    assert report.outcome == "ok", report
    new = calendar(world, cid)
    assert new != old
    assert live_uids(memory, new) == [world.uid("a")]


def test_a_refusal_in_a_calendar_that_exists_is_reported(world: World, memory) -> None:
    """The calendar is there: the refusal stands, nothing is made afresh."""
    world.put_shift("a", 1)
    cid = world.connect(memory)
    world.sync(cid, memory)
    kept = calendar(world, cid)
    scripted = ScriptedErrors(memory)
    scripted.fail_next("update_event", PermanentError("forbidden", 403))
    world.put_shift("a", 1, notes="x")
    report = world.sync(cid, scripted, full_check=False)
    assert report.outcome == "failed"
    assert calendar(world, cid) == kept
    assert live_uids(memory, kept) == [world.uid("a")]


def test_a_full_check_whose_repair_failed_is_done_and_the_repair_follows(
    world: World, memory
) -> None:
    """The listing came through: the day's check is done; the failed repair is remembered
    on its record, so the next incremental run restores the event without listing again."""
    world.put_shift("a", 1)
    world.put_shift("b", 2)
    cid = world.connect(memory)
    world.sync(cid, memory)
    cal = calendar(world, cid)
    memory.delete_event(cal, google_event_id(world.uid("a"), 1))  # the user deletes it
    scripted = ScriptedErrors(memory)
    scripted.fail_next("update_event", TransientError("unavailable", 503))
    later = NOW + timedelta(minutes=5)
    report = world.sync(cid, scripted, later, full_check=True)
    assert report.outcome == "failed"
    assert world.connection(cid).last_full_check_at == later
    assert live_uids(memory, cal) == [world.uid("b")]
    counting = CountingProvider(memory)
    report = world.sync(cid, counting, later + timedelta(seconds=5))
    assert (report.outcome, report.full_check) == ("ok", False)
    assert sorted(live_uids(memory, cal)) == sorted([world.uid("a"), world.uid("b")])


def test_connection_without_calendar_gets_one(world: World, memory) -> None:
    """A connection whose calendar was never made gets its own on first sync."""
    world.put_shift("a", 1)
    cid = world.connect(memory)
    world.execute(update(CalendarConnection).values(calendar_id=None))
    world.sync(cid, memory)
    connection = world.connection(cid)
    assert connection.calendar_name == "On-call shifts"
    assert live_uids(memory, calendar(world, cid)) == [world.uid("a")]


def test_uncertain_graph_create_is_found_by_its_tag(world: World) -> None:
    """A Graph insert whose answer was lost is looked up by tag, not sent again."""
    graph = GraphLikeProvider()
    world.put_shift("a", 1)
    cid = world.connect(graph, kind="microsoft")
    world.sync(cid, graph, full_check=False)  # a clean first sync
    world.put_shift("b", 2)

    class LoseAnswer(ScriptedErrors):
        def insert_event(self, calendar_id, spec, event_key):
            self.inner.insert_event(calendar_id, spec, event_key)
            raise TransientError("timed out", None)

    report = world.sync(cid, LoseAnswer(graph), full_check=False)
    assert report.outcome == "failed"
    assert [r.state for r in world.records(cid)] == ["synced", "creating"]
    counting = CountingProvider(graph)
    report = world.sync(cid, counting, now=report.next_retry_at, full_check=False)
    assert (report.outcome, report.created) == ("ok", 1)
    # Found by its tag and read back as what the shift renders to: nothing is written.
    assert counting.calls == {"find_event": 1}
    assert live_uids(graph, calendar(world, cid)) == sorted([world.uid("a"), world.uid("b")])
    assert [(r.state, r.content_hash is not None) for r in world.records(cid)] == [
        ("synced", True),
        ("synced", True),
    ]
    assert world.records(cid)[1].remote_etag is not None


@pytest.mark.parametrize("semantics", ["google", "graph"])
def test_an_insert_given_up_as_absent_is_checked_again_soon(
    world: World, memory, semantics: str
) -> None:
    """An insert whose answer was lost, of a shift deleted since, is not found (Graph's
    lookup) or not there to delete (Google's 404): its record goes, and the calendar is
    listed again `LATE_WRITE_RECHECK` later, which removes the event should the held call
    land after all, instead of leaving it until the next day's check."""
    remote = memory if semantics == "google" else GraphLikeProvider()
    world.put_shift("a", 1)
    cid = world.connect(remote, kind="google" if semantics == "google" else "microsoft")
    held: list[tuple[str, EventSpec, str]] = []

    class HoldInsert(ScriptedErrors):
        def insert_event(self, calendar_id, spec, event_key):
            held.append((calendar_id, spec, event_key))
            raise TransientError("timed out", None)

    world.sync(cid, HoldInsert(remote), full_check=False)
    world.delete_shift("a")
    report = world.sync(cid, remote, now=LATER, full_check=False)
    assert report.outcome == "ok", report
    assert world.records(cid) == []
    assert report.recheck_at is not None
    assert report.recheck_at - LATER >= LATE_WRITE_RECHECK
    row = world.connection(cid)
    assert full_check_due(row, report.recheck_at)
    assert not full_check_due(row, report.recheck_at - timedelta(seconds=1))
    remote.insert_event(*held[0])  # the held call lands after all
    assert live_uids(remote, calendar(world, cid)) == [world.uid("a")]
    again = world.sync(cid, remote, now=report.recheck_at)
    assert (again.outcome, again.full_check, again.recheck_at) == ("ok", True, None)
    assert live_uids(remote, calendar(world, cid)) == []


class Killed(BaseException):
    """What SIGKILL is to a run: it stops where it is, and nothing of ours runs after."""


class HoldInsert(ScriptedErrors):
    """Times out every insert, keeping the call so a test can have it land late."""

    def __init__(self, inner: GraphLikeProvider) -> None:
        super().__init__(inner)
        self.held: list[tuple[str, EventSpec, str]] = []

    def insert_event(self, calendar_id: str, spec: EventSpec, event_key: str):
        self.held.append((calendar_id, spec, event_key))
        raise TransientError("timed out", None)


@pytest.mark.parametrize("lease_ttl", [timedelta(minutes=2), timedelta(seconds=6)])
def test_a_recheck_outlives_the_worker_that_gave_up_on_an_insert(
    world: World, lease_ttl: timedelta
) -> None:
    """A worker dies right after giving up on a lost insert (its shift deleted): the one
    that takes the connection over still lists the calendar within `LATE_WRITE_RECHECK`
    (at once when the lease outlasted it, else by asking for the recheck), and removes
    the event when the held call lands late."""
    remote = GraphLikeProvider()
    world.put_shift("b", 2)
    cid = world.connect(remote, kind="microsoft", last_full_check_at=NOW)  # none due
    world.sync(cid, remote)
    world.put_shift("a", 1)
    holding = HoldInsert(remote)
    world.sync(cid, holding)
    world.delete_shift("a")
    world.put_shift("b", 2, notes="swapped")

    class DieOnUpdate(ScriptedErrors):
        def update_event(self, *args: object, **kwargs: object):
            raise Killed

    with pytest.raises(Killed):  # a's record given up (not found), then b's update: killed
        world.sync(cid, DieOnUpdate(remote), now=LATER, lease_ttl=lease_ttl)
    assert [r.shift_uid for r in world.records(cid)] == [world.uid("b")]
    remote.insert_event(*holding.held[0])  # the held call lands after all
    taken_over = LATER + lease_ttl + timedelta(seconds=1)
    report = world.sync(cid, remote, now=taken_over, lease_owner="another worker")
    assert report.outcome == "ok", report
    if lease_ttl > LATE_WRITE_RECHECK:
        assert (report.full_check, report.recheck_at) == (True, None)
    else:
        assert not report.full_check
        assert report.recheck_at is not None
        assert report.recheck_at - LATER <= LATE_WRITE_RECHECK + timedelta(seconds=1)
        assert world.connection(cid).sync_due_at == report.recheck_at
        report = world.sync(cid, remote, now=report.recheck_at, lease_owner="another worker")
        assert (report.outcome, report.full_check, report.recheck_at) == ("ok", True, None)
    assert live_uids(remote, calendar(world, cid)) == [world.uid("b")]


def test_an_insert_sent_again_to_graph_is_checked_again_soon(world: World) -> None:
    """A Graph insert whose answer was lost and that a lookup did not find is sent again;
    its first attempt may still land once the second's event is deleted, so the calendar
    is listed again `LATE_WRITE_RECHECK` later. Google's client-chosen ids need no such
    listing (the late insert meets a 409)."""
    remote = GraphLikeProvider()
    world.put_shift("a", 1)
    cid = world.connect(remote, kind="microsoft", last_full_check_at=NOW)  # none due
    world.sync(cid, HoldInsert(remote), full_check=False)
    report = world.sync(cid, remote, now=LATER)
    assert (report.outcome, report.created) == ("ok", 1)
    assert report.recheck_at is not None
    assert LATE_WRITE_RECHECK <= report.recheck_at - LATER <= LATE_WRITE_RECHECK * 2
    again = world.sync(cid, remote, now=LATER + timedelta(seconds=1))  # still ahead: asked
    assert (again.full_check, again.recheck_at) == (False, report.recheck_at)
    assert world.sync(cid, remote, now=report.recheck_at).full_check


def test_many_uncertain_inserts_wait_for_a_listing_that_failed(world: World) -> None:
    """Thirty Graph inserts whose answers were lost, and the listing meant to answer them
    fails: they are not looked up one by one (thirty more calls) but left for the next
    pass's listing, which finds them all."""
    graph = GraphLikeProvider()
    world.put_many(30)
    cid = world.connect(graph, kind="microsoft")

    class LoseAnswer(ScriptedErrors):
        def insert_event(self, calendar_id, spec, event_key):
            self.inner.insert_event(calendar_id, spec, event_key)
            raise TransientError("timed out", None)

    world.sync(cid, LoseAnswer(graph), full_check=False)
    assert {r.state for r in world.records(cid)} == {"creating"}
    scripted = ScriptedErrors(graph)
    scripted.fail_next("list_events", TransientError("unavailable", 503))
    counting = CountingProvider(scripted)
    report = world.sync(cid, counting, now=LATER)
    assert report.outcome == "failed", report
    assert (counting.calls.get("list_events"), counting.calls.get("find_event", 0)) == (1, 0)
    assert counting.writes == 0
    assert {r.state for r in world.records(cid)} == {"creating"}
    counting = CountingProvider(graph)
    report = world.sync(cid, counting, now=LATER + timedelta(minutes=1))
    assert (report.outcome, report.created, counting.writes) == ("ok", 30, 0), report
    assert counting.calls.get("find_event", 0) == 0
    assert len(live_uids(graph, calendar(world, cid))) == 30


def test_uncertain_graph_create_found_edited_is_rewritten(world: World) -> None:
    """The event the lookup finds was retitled since (or holds an older write): rewritten."""
    graph = GraphLikeProvider()
    world.put_shift("a", 1)
    cid = world.connect(graph, kind="microsoft")

    class LoseAnswer(ScriptedErrors):
        def insert_event(self, calendar_id, spec, event_key):
            self.inner.insert_event(
                calendar_id, dataclasses.replace(spec, summary="Dentist"), event_key
            )
            raise TransientError("timed out", None)

    world.sync(cid, LoseAnswer(graph), full_check=False)
    counting = CountingProvider(graph)
    report = world.sync(cid, counting, now=LATER, full_check=False)
    assert (report.outcome, report.updated) == ("ok", 1), report
    assert counting.calls == {"find_event": 1, "apply": 1, "op:update": 1}
    assert [spec.summary for spec in live(graph, calendar(world, cid))] != ["Dentist"]


# ---------------------------------------------------------------- failures are states


def test_a_run_that_made_progress_is_not_a_failure(world: World, memory) -> None:
    """One failed part of three: no back-off, the rest is retried a second later."""
    for name in ("a", "b", "c"):
        world.put_shift(name, 1)
    cid = world.connect(memory)
    scripted = ScriptedErrors(memory)
    scripted.fail_next("insert_event", TransientError("service unavailable", 503))
    report = world.sync(cid, scripted, rng=random.Random(1))
    connection = world.connection(cid)
    assert (report.outcome, report.created) == ("partial", 2)
    assert (connection.status, connection.failure_count) == ("active", 0)
    assert "service unavailable" in connection.last_error
    assert connection.next_retry_at == connection.sync_due_at
    assert connection.next_retry_at - connection.last_sync_at == timedelta(seconds=1)

    report = world.sync(cid, memory, now=connection.next_retry_at)
    assert (report.outcome, report.created) == ("ok", 1)
    assert len(live_uids(memory, calendar(world, cid))) == 3


def test_progress_still_waits_for_retry_after(world: World, memory) -> None:
    """A 429 after some writes landed: the retry comes at Retry-After, not sooner."""
    for name in ("a", "b", "c"):
        world.put_shift(name, 1)
    cid = world.connect(memory)

    class ThrottleThird(ScriptedErrors):
        inserted = 0

        def insert_event(self, calendar_id, spec, event_key):
            if self.inserted == 2:
                raise RateLimited("slow down", 429, retry_after=30)
            self.inserted += 1
            return self.inner.insert_event(calendar_id, spec, event_key)

    report = world.sync(cid, ThrottleThird(memory))
    connection = world.connection(cid)
    assert (report.outcome, report.created) == ("partial", 2)
    assert connection.failure_count == 0
    assert connection.next_retry_at - connection.last_sync_at == timedelta(seconds=30)


def test_transient_failure_is_recorded_and_cleared(world: World, memory) -> None:
    """A 503 sets status error, a plain message and a retry time; success clears them."""
    world.put_shift("a", 1)
    cid = world.connect(memory)
    scripted = ScriptedErrors(memory)
    scripted.fail_next("insert_event", TransientError("service unavailable", 503))
    report = world.sync(cid, scripted, rng=random.Random(1))
    connection = world.connection(cid)
    assert report.outcome == "failed"
    assert connection.status == "error"
    assert connection.failure_count == 1
    assert connection.last_error == (
        "Syncing with Google Calendar failed for now: service unavailable (HTTP 503). "
        "It will be retried automatically."
    )
    assert NOW + timedelta(seconds=0.5) <= connection.next_retry_at <= NOW + timedelta(seconds=1.1)
    assert connection.sync_due_at == connection.next_retry_at
    assert connection.last_success_at is None
    assert connection.last_sync_at is not None
    assert connection.lease_owner is None

    report = world.sync(cid, memory, now=connection.next_retry_at)
    connection = world.connection(cid)
    assert (report.outcome, connection.status, connection.failure_count) == ("ok", "active", 0)
    assert connection.last_error is None
    assert connection.next_retry_at is None
    assert (connection.last_created, connection.last_updated, connection.last_deleted) == (1, 0, 0)
    assert live_uids(memory, calendar(world, cid)) == [world.uid("a")]


def test_backoff_grows_and_is_capped() -> None:
    """1 s, 2 s, 4 s ... never above an hour; jitter keeps it in the upper half."""
    rng = random.Random(7)
    for failures in range(1, 30):
        delay = backoff_delay(failures, rng=rng).total_seconds()
        ceiling = min(3600, 2 ** (failures - 1))
        assert ceiling / 2 <= delay <= ceiling


def test_a_run_pauses_briefly_after_progress_and_backs_off_after_none() -> None:
    """Progress through faults: a quarter second; through a throttle: a second or
    Retry-After; nothing landed: 1 s, then 2 s (jittered), then the run stops."""
    assert next_pass_delay(0, throttled=False) == NEXT_PASS_PAUSE < PROGRESS_RETRY
    assert next_pass_delay(0, throttled=True) == PROGRESS_RETRY
    assert next_pass_delay(0, throttled=True, retry_after=5) == timedelta(seconds=5)
    first, second = (next_pass_delay(idle, throttled=False) for idle in (1, 2))
    assert first is not None
    assert timedelta(seconds=0.5) <= first <= timedelta(seconds=1)
    assert second is not None
    assert timedelta(seconds=1) <= second <= timedelta(seconds=2)
    assert next_pass_delay(1, throttled=True, retry_after=30) == timedelta(seconds=30)
    assert next_pass_delay(MAX_IDLE_PASSES + 1, throttled=False) is None


def test_rate_limit_honours_retry_after(world: World, memory) -> None:
    """429 with Retry-After: 120 s → no retry sooner than that, and the sync stops at once."""
    for n in range(60):  # more than one batch of the memory provider (50)
        world.put_shift(f"s{n}", n)
    cid = world.connect(memory)
    scripted = ScriptedErrors(memory)
    scripted.fail_next("insert_event", RateLimited("rate limited", 429, retry_after=120))
    counting = CountingProvider(scripted)
    report = world.sync(cid, counting, full_check=False)
    connection = world.connection(cid)
    assert report.outcome == "partial"  # 49 of the batch landed
    assert connection.next_retry_at >= NOW + timedelta(seconds=120)
    assert "slow down" in connection.last_error
    assert counting.calls == {"apply": 1, "op:insert": 50}  # no second batch


def test_permanent_error_is_readable(world: World, memory) -> None:
    """Another 4xx is shown with the provider's words."""
    world.put_shift("a", 1)
    cid = world.connect(memory)
    scripted = ScriptedErrors(memory)
    scripted.fail_next("insert_event", PermanentError("The event end is before its start", 400))
    world.sync(cid, scripted)
    assert world.connection(cid).last_error == (
        "Google Calendar refused a change: The event end is before its start (HTTP 400)."
    )


@pytest.mark.parametrize("where", ["factory", "call"])
def test_invalid_grant_pauses_the_connection(world: World, memory, where: str) -> None:
    """A lost grant marks the connection needs_reauth; it is not synced until reconnected."""
    world.put_shift("a", 1)
    cid = world.connect(memory)
    lost = AuthorizationLost("invalid_grant", 400)
    if where == "factory":

        def provider(connection):
            raise lost
    else:
        provider = ScriptedErrors(memory)
        provider.fail_next("list_events", lost)
    report = world.sync(cid, provider)
    connection = world.connection(cid)
    assert (report.outcome, connection.status) == ("needs_reauth", "needs_reauth")
    assert "reconnect the calendar" in connection.last_error
    assert connection.sync_due_at is None
    assert connection.next_retry_at is None
    counting = CountingProvider(memory)
    assert world.sync(cid, counting, now=LATER).outcome == "inactive"
    assert counting.calls == {}


def test_auth_error_message_names_outlook_and_asks_to_reconnect() -> None:
    """A lost grant is explained in the user's words, with what to do about it."""
    message = describe_error(AuthorizationLost("invalid_grant"), "microsoft")
    assert message == (
        "Outlook access was revoked or has expired; reconnect the calendar to resume syncing."
    )


# ---------------------------------------------------------------- leases


class SlowProvider(CountingProvider):
    """Blocks inside its first batch until released, to hold a sync mid-way."""

    def __init__(self, inner) -> None:
        super().__init__(inner)
        self.entered = threading.Event()
        self.release = threading.Event()

    def apply(self, calendar_id, operations):
        """Wait for the test's go."""
        self.entered.set()
        assert self.release.wait(10)
        return super().apply(calendar_id, operations)


def test_two_workers_never_sync_one_connection_at_once(world: World, memory) -> None:
    """While one sync holds the lease, another attempt returns `busy` and calls nothing."""
    world.put_shift("a", 1)
    cid = world.connect(memory)
    slow = SlowProvider(memory)
    reports = []
    first = threading.Thread(target=lambda: reports.append(world.sync(cid, slow)))
    first.start()
    assert slow.entered.wait(10)
    other = CountingProvider(memory)
    assert world.sync(cid, other).outcome == "busy"
    slow.release.set()
    first.join(10)
    assert [r.outcome for r in reports] == ["ok"]
    assert other.calls == {}
    assert world.connection(cid).lease_owner is None


def test_racing_workers_one_wins(world: World, memory) -> None:
    """Many threads start a sync of one connection at the same instant; exactly one runs."""
    world.put_shift("a", 1)
    cid = world.connect(memory)
    slow = SlowProvider(memory)
    barrier = threading.Barrier(6)
    outcomes: list[str] = []

    def attempt() -> None:
        barrier.wait()
        outcomes.append(world.sync(cid, slow).outcome)

    threads = [threading.Thread(target=attempt) for _ in range(6)]
    for thread in threads:
        thread.start()
    assert slow.entered.wait(10)
    # While the winner is held inside its sync, every other attempt has returned.
    for thread in threads:
        thread.join(0.5)
    assert sorted(outcomes) == ["busy"] * 5
    slow.release.set()
    for thread in threads:
        thread.join(10)
    assert sorted(outcomes) == ["busy"] * 5 + ["ok"]
    assert live_uids(memory, calendar(world, cid)) == [world.uid("a")]


def test_an_expired_lease_is_taken_over(world: World, memory) -> None:
    """A lease left by a dead worker stops others only until it expires."""
    cid = world.connect(memory)
    world.execute(
        update(CalendarConnection).values(
            lease_owner="dead-worker", lease_expires_at=NOW + timedelta(minutes=1)
        )
    )
    assert world.sync(cid, memory).outcome == "busy"
    assert world.sync(cid, memory, now=NOW + timedelta(minutes=2)).outcome == "ok"


# ---------------------------------------------------------------- convergence under faults


@pytest.mark.parametrize("kind", ["google", "microsoft"])
def test_converges_exactly_through_random_faults(world: World, kind: str) -> None:
    """30% of calls fail (half after the write landed); retries end with the exact set."""
    provider = MemoryProvider() if kind == "google" else GraphLikeProvider()
    for n in range(40):
        world.put_shift(f"s{n}", n / 2, hours=6)
    cid = world.connect(provider, kind=kind)
    flaky = FlakyProvider(provider, rate=0.3, seed=11)
    now = NOW
    rng = random.Random(3)
    for round_ in range(6):
        # Churn between rounds: changes, deletions, reassignments, new shifts.
        for n in rng.sample(range(40), 6):
            world.put_shift(f"s{n}", n / 2, hours=6, notes=f"round {round_}")
        world.delete_shift(f"s{rng.randrange(40)}")
        world.put_shift(f"s{rng.randrange(40)}", 3, user="bob")
        world.put_shift(f"new{round_}", 10 + round_)
        for _ in range(3):
            now += timedelta(minutes=1)
            world.sync(cid, flaky, now=now, full_check=rng.random() < 0.3)
    for _ in range(40):
        now += timedelta(minutes=1)
        if world.sync(cid, flaky, now=now, full_check=True).outcome == "ok":
            break
    assert flaky.injected > 20
    desired = set()
    with world.session() as session:
        from oncal_feed.shifts import shifts_for_user

        start, end = sync_window(now, 90)
        desired = {s.uid for s in shifts_for_user(session, world.user_id("alice"), start, end)}
    assert live_uids(provider, calendar(world, cid)) == sorted(desired)
    counting = CountingProvider(provider)
    assert world.sync(cid, counting, now=now, full_check=True).outcome == "ok"
    assert counting.writes == 0


class EnvelopeFailures(CountingProvider):
    """Loses whole batches (the connection drops before any answer) `fail` times."""

    def __init__(self, inner, fail: int) -> None:
        super().__init__(inner)
        self.fail = fail
        self.sizes: list[int] = []

    def apply(self, calendar_id, operations):
        """Fail the batch as a whole, or delegate."""
        self.sizes.append(len(operations))
        if self.fail:
            self.fail -= 1
            raise TransientError("connection reset", None)
        return super().apply(calendar_id, operations)


def test_lost_batches_shrink_the_batch_size_until_clean_ones_grow_it(world: World, memory) -> None:
    """50 → 25 → 12 lost, give up (next size 6); the retry starts at 6 and doubles back."""
    for n in range(120):
        world.put_shift(f"s{n}", n / 2, hours=2)
    cid = world.connect(memory)
    flaky = EnvelopeFailures(memory, fail=3)
    assert world.sync(cid, flaky, full_check=False).outcome == "failed"
    assert flaky.sizes == [50, 25, 12]
    again = EnvelopeFailures(memory, fail=0)
    report = world.sync(cid, again, now=LATER, full_check=False)
    assert (report.outcome, report.created) == ("ok", 120)
    assert again.sizes == [6, 12, 24, 48, 30]
    assert len(live_uids(memory, calendar(world, cid))) == 120


def test_full_check_keeps_an_aged_out_event_whose_record_was_lost(world: World, memory) -> None:
    """After a database restore lost records, past events are adopted, not pruned."""
    world.put_shift("past", 1)
    cid = world.connect(memory)
    world.sync(cid, memory)
    world.execute(SyncRecord.__table__.delete())
    later = NOW + timedelta(days=30)
    report = world.sync(cid, memory, now=later, full_check=True)
    assert (report.outcome, report.deleted, report.writes) == ("ok", 0, 0)
    assert live_uids(memory, calendar(world, cid)) == [world.uid("past")]
    assert [r.state for r in world.records(cid)] == ["synced"]


@pytest.mark.parametrize("records_lost", [False, True], ids=["records", "records lost"])
def test_a_schedule_left_out_of_the_feed_leaves_the_calendar(
    world: World, memory, records_lost: bool
) -> None:
    """The calendar shows the schedules the user's feed shows: once they narrow them, the
    left-out schedule's events in the window go, also when only a listing finds them."""
    world.put_shift("pay", 1)
    start = NOW.replace(hour=0) + timedelta(days=2)
    with world.database.session() as session:
        search, _, _ = shifts.upsert_schedule(
            session, "search", ScheduleInput("Search", "Europe/Berlin"), NOW
        )
        shift = ShiftInput("srch", "alice@example.com", start, start + timedelta(hours=8))
        shifts.upsert_shift(session, search, shift, NOW)
    cid = world.connect(memory)
    world.sync(cid, memory)
    assert sorted(live_uids(memory, calendar(world, cid))) == sorted(
        [world.uid("pay"), world.uid("srch")]
    )
    world.execute(
        update(CalendarConnection)
        .where(CalendarConnection.id == cid)
        .values(schedule_keys=["payments"])
    )
    if records_lost:
        world.execute(SyncRecord.__table__.delete())
    assert world.sync(cid, memory, full_check=True).outcome == "ok"
    assert live_uids(memory, calendar(world, cid)) == [world.uid("pay")]


# ---------------------------------------------------------------- metrics


class SyncMetrics:
    """The sync counters' samples, as changes since this object was made.

    Counters are global to the test process, so each test compares before and after.
    """

    def __init__(self) -> None:
        self.before = self._read()

    @staticmethod
    def _read() -> dict[str, float]:
        samples: dict[str, float] = {}
        for family in REGISTRY.collect():
            for sample in family.samples:
                if sample.name.startswith("oncal_sync_") and sample.name.endswith("_total"):
                    labels = ",".join(f'{k}="{v}"' for k, v in sorted(sample.labels.items()))
                    samples[f"{sample.name}{{{labels}}}"] = sample.value
        return samples

    def changes(self) -> dict[str, float]:
        """Every sample that moved, by how much (e.g. `..._total{kind="create",...}: 2`)."""
        after = self._read()
        moved = {key: value - self.before.get(key, 0.0) for key, value in after.items()}
        return {key: delta for key, delta in moved.items() if delta}


def runs(outcome: str, provider: str = "google") -> str:
    """The key of a `oncal_sync_runs_total` sample."""
    return f'oncal_sync_runs_total{{outcome="{outcome}",provider="{provider}"}}'


def writes(kind: str, provider: str = "google") -> str:
    """The key of a `oncal_sync_actions_total` sample."""
    return f'oncal_sync_actions_total{{kind="{kind}",provider="{provider}"}}'


def errors(kind: str, provider: str = "google") -> str:
    """The key of a `oncal_sync_errors_total` sample."""
    return f'oncal_sync_errors_total{{kind="{kind}",provider="{provider}"}}'


def test_metrics_count_each_run_and_each_confirmed_write(world: World, memory) -> None:
    """Creates, updates and deletes are counted once each; a sync with nothing to do is a run."""
    for name in "abc":
        world.put_shift(name, 1 + "abc".index(name))
    cid = world.connect(memory)
    metrics = SyncMetrics()
    world.sync(cid, memory)
    assert metrics.changes() == {runs("ok"): 1, writes("create"): 3}

    world.put_shift("b", 2, notes="moved")
    world.delete_shift("c")
    metrics = SyncMetrics()
    report = world.sync(cid, memory, full_check=True)
    assert (report.updated, report.deleted) == (1, 1)
    assert metrics.changes() == {runs("ok"): 1, writes("update"): 1, writes("delete"): 1}

    metrics = SyncMetrics()
    world.sync(cid, memory, full_check=True)
    assert metrics.changes() == {runs("ok"): 1}


def test_metrics_count_a_calendar_we_create(world: World, memory) -> None:
    """Making our own calendar is a remote write of its own kind."""
    world.put_shift("a", 1)
    cid = world.connect(memory)
    world.execute(update(CalendarConnection).values(calendar_id=None))
    metrics = SyncMetrics()
    world.sync(cid, memory)
    assert metrics.changes() == {runs("ok"): 1, writes("calendar"): 1, writes("create"): 1}


@pytest.mark.parametrize(
    ("error", "kind", "outcome"),
    [
        (TransientError("service unavailable", 503), "transient", "failed"),
        (RateLimited("rate limited", 429, retry_after=30), "throttled", "failed"),
        (PermanentError("The event end is before its start", 400), "permanent", "failed"),
        (AuthorizationLost("invalid_grant", 400), "auth", "needs_reauth"),
    ],
)
def test_metrics_count_a_failed_write_by_its_kind(
    world: World, memory, error: ProviderError, kind: str, outcome: str
) -> None:
    """A refused insert is an error of its class, the run has its outcome, nothing is written."""
    world.put_shift("a", 1)
    cid = world.connect(memory)
    scripted = ScriptedErrors(memory)
    scripted.fail_next("insert_event", error)
    metrics = SyncMetrics()
    assert world.sync(cid, scripted).outcome == outcome
    assert metrics.changes() == {runs(outcome): 1, errors(kind): 1}


def test_metrics_count_a_failed_listing(world: World, memory) -> None:
    """A failed read counts; the sync carries on from its records and still writes."""
    world.put_shift("a", 1)
    cid = world.connect(memory)
    scripted = ScriptedErrors(memory)
    scripted.fail_next("list_events", TransientError("timed out", None))
    metrics = SyncMetrics()
    # The create landed, so the run is partial (retried promptly), not a failure.
    assert world.sync(cid, scripted, full_check=True).outcome == "partial"
    assert metrics.changes() == {runs("partial"): 1, errors("transient"): 1, writes("create"): 1}


@pytest.mark.parametrize("first_call", ["listing", "write", "calendar"])
def test_metrics_count_a_refused_grant_once(world: World, memory, first_call: str) -> None:
    """A token refresh refused while building the client is one error, whatever came first."""
    world.put_shift("a", 1)
    cid = world.connect(memory)
    if first_call == "calendar":
        world.execute(update(CalendarConnection).values(calendar_id=None))

    def refused(connection):
        raise AuthorizationLost("invalid_grant", 400)

    metrics = SyncMetrics()
    assert world.sync(cid, refused, full_check=first_call == "listing").outcome == "needs_reauth"
    assert metrics.changes() == {runs("needs_reauth"): 1, errors("auth"): 1}


def test_metrics_count_every_operation_of_a_batch_lost_whole(world: World, memory) -> None:
    """A dropped batch of three is three failed operations."""
    for n in range(3):
        world.put_shift(f"s{n}", n)
    cid = world.connect(memory)
    metrics = SyncMetrics()
    world.sync(cid, EnvelopeFailures(memory, fail=1), full_check=False)
    assert metrics.changes() == {runs("failed"): 1, errors("transient"): 3}


def test_metrics_count_handled_answers_but_not_as_writes(world: World, memory) -> None:
    """A 409 on a replayed insert, and a delete of an event already gone (404), are counted
    as errors of their kind; only writes the calendar confirmed count as writes.
    """
    world.put_shift("a", 1)
    cid = world.connect(memory)
    world.sync(cid, memory)
    world.execute(SyncRecord.__table__.delete())
    world.put_shift("a", 1, notes="changed")
    metrics = SyncMetrics()
    assert world.sync(cid, memory, full_check=False).outcome == "ok"
    # The insert meets our own event (409), and the update that follows restores it.
    assert metrics.changes() == {runs("ok"): 1, errors("conflict"): 1, writes("create"): 1}

    graph = GraphLikeProvider()
    gid = world.connect(graph, user="bob", kind="microsoft")
    world.put_shift("b", 2, user="bob")
    world.sync(gid, graph)
    graph.delete_by_user(calendar(world, gid), world.uid("b"))
    world.delete_shift("b")
    metrics = SyncMetrics()
    assert world.sync(gid, graph, full_check=False).outcome == "ok"
    assert metrics.changes() == {runs("ok", "microsoft"): 1, errors("not_found", "microsoft"): 1}


def test_metrics_count_runs_that_did_not_sync(world: World, memory) -> None:
    """busy, inactive and missing are runs too; a connection not found has no provider."""
    cid = world.connect(memory)
    world.execute(update(CalendarConnection).values(lease_owner="other", lease_expires_at=LATER))
    metrics = SyncMetrics()
    assert world.sync(cid, memory).outcome == "busy"
    world.execute(
        update(CalendarConnection).values(
            status="disconnected", lease_owner=None, lease_expires_at=None
        )
    )
    assert world.sync(cid, memory).outcome == "inactive"
    assert world.sync(cid + 1000, memory).outcome == "missing"
    assert metrics.changes() == {
        runs("busy"): 1,
        runs("inactive"): 1,
        runs("missing", "unknown"): 1,
    }


def test_metrics_count_a_crash_and_it_still_raises(world: World, memory) -> None:
    """An internal error is a `crashed` run, not a remote error."""

    class Broken(CountingProvider):
        def apply(self, calendar_id, operations):
            raise RuntimeError("a bug in an adapter")

    world.put_shift("a", 1)
    cid = world.connect(memory)
    metrics = SyncMetrics()
    with pytest.raises(RuntimeError):
        world.sync(cid, Broken(memory))
    assert metrics.changes() == {runs("crashed"): 1}
