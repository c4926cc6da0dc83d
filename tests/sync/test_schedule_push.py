"""The engine on a schedule push: everyone's shifts of one schedule in a calendar of its
own, with records, kept events and adoptions of its own (in-memory calendars)."""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy import select

from oncal_feed.db import utcnow
from oncal_feed.models import CalendarConnection, SyncRecord
from oncal_feed.rendering.event import TEAM_UID_PREFIX
from oncal_feed.sync.tasks import mark_dirty
from tests.sync.support import NOW, World, add_schedule_push, live, live_uids


def calendar_of(world: World, connection_id: int) -> str:
    """The remote calendar id of a connection, once it has one."""
    calendar_id = world.connection(connection_id).calendar_id
    assert calendar_id is not None
    return calendar_id


def test_a_push_shows_everyone_on_the_schedule_titled_by_person(world: World, memory) -> None:
    world.put_shift("a", 1, user="alice")
    world.put_shift("b", 2, user="bob")
    alice = world.connect(memory, user="alice", reminder_minutes=15)
    push = add_schedule_push(world, alice)

    report = world.sync(push, memory)

    assert (report.outcome, report.created) == ("ok", 2)
    calendar = calendar_of(world, push)
    assert memory.calendar_name(calendar) == "Payments on-call"
    events = live(memory, calendar)
    assert [e.summary for e in events] == ["Alice · primary", "Bob · primary"]
    assert [e.uid for e in events] == [TEAM_UID_PREFIX + world.uid(x) for x in "ab"]
    # Free, and no reminders: they would ring for every colleague's shift.
    assert all(e.transparent and e.reminder_minutes is None for e in events)
    assert [r.shift_uid for r in world.records(push)] == [e.uid for e in events]
    # The account's own calendar is untouched by the push and shows Alice's shift alone.
    assert world.sync(alice, memory).created == 1
    assert [e.summary for e in live(memory, calendar_of(world, alice))] == ["On-call · Payments"]


def test_a_colleagues_change_marks_the_push_and_is_written_in_place(
    world: World, memory, app
) -> None:
    world.put_shift("b", 2, user="bob")
    alice = world.connect(memory, user="alice")
    push = add_schedule_push(world, alice)
    world.sync(alice, memory)
    world.sync(push, memory)

    # Bob's change: his connections (none) and every push of a schedule he is on.
    assert mark_dirty(app, [world.user_id("bob")], utcnow()) == [push]
    world.put_shift("b", 2, user="bob", hours=6)
    report = world.sync(push, memory)
    assert (report.created, report.updated, report.deleted) == (0, 1, 0)
    (event,) = live(memory, calendar_of(world, push))
    assert event.ends_at - event.starts_at == timedelta(hours=6)
    # Reassigned to Alice, it stays one event, now titled by her.
    world.put_shift("b", 2, user="alice", hours=6)
    assert world.sync(push, memory).updated == 1
    assert [e.summary for e in live(memory, calendar_of(world, push))] == ["Alice · primary"]
    world.delete_shift("b")
    assert world.sync(push, memory).deleted == 1
    assert live_uids(memory, calendar_of(world, push)) == []


def test_a_push_of_another_schedule_is_not_marked(world: World, memory, app) -> None:
    from oncal_feed import shifts
    from oncal_feed.validation import ScheduleInput

    with world.database.session() as session:
        shifts.upsert_schedule(session, "search", ScheduleInput("Search", "Europe/Berlin"), NOW)
    world.put_shift("b", 2, user="bob")
    alice = world.connect(memory, user="alice")
    other = add_schedule_push(world, alice, "search")
    world.sync(other, memory)
    assert mark_dirty(app, [world.user_id("bob")], utcnow()) == []


def test_a_deleted_push_calendar_is_made_again(world: World, memory) -> None:
    world.put_shift("a", 1)
    alice = world.connect(memory)
    push = add_schedule_push(world, alice)
    world.sync(push, memory)
    first = calendar_of(world, push)
    memory.delete_calendar(first)

    report = world.sync(push, memory, full_check=True)

    assert (report.outcome, report.created) == ("ok", 1)
    again = calendar_of(world, push)
    assert again != first
    assert memory.calendar_name(again) == "Payments on-call"
    assert live_uids(memory, again) == [TEAM_UID_PREFIX + world.uid("a")]


def test_a_push_keeps_and_adopts_aged_out_events_of_the_schedule(world: World, memory) -> None:
    """Out of the window, a colleague's past event stays; after records were lost, the full
    check adopts it (by the schedule feed's UID) rather than pruning it."""
    world.put_shift("b", 1, user="bob")
    alice = world.connect(memory)
    push = add_schedule_push(world, alice)
    world.sync(push, memory)
    later = NOW + timedelta(days=30)
    assert world.sync(push, memory, now=later).deleted == 0
    world.execute(SyncRecord.__table__.delete().where(SyncRecord.connection_id == push))

    report = world.sync(push, memory, now=later, full_check=True)

    assert (report.outcome, report.deleted, report.writes) == ("ok", 0, 0)
    assert live_uids(memory, calendar_of(world, push)) == [TEAM_UID_PREFIX + world.uid("b")]
    assert [r.state for r in world.records(push)] == ["synced"]


def test_a_push_without_its_account_is_not_connected(world: World, memory, app) -> None:
    """Deleting the account connection takes its pushes (and their records) with it."""
    world.put_shift("a", 1)
    alice = world.connect(memory)
    push = add_schedule_push(world, alice)
    world.sync(push, memory)
    world.execute(CalendarConnection.__table__.delete().where(CalendarConnection.id == alice))
    with world.session() as session:
        assert session.scalars(select(CalendarConnection.id)).all() == []
        assert session.scalars(select(SyncRecord.id)).all() == []
