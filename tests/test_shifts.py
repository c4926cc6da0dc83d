"""The shift store: upserts, tombstones, window imports, hand-overs and queries."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session

from oncal_feed import accounts, shifts
from oncal_feed.errors import NotFound, ValidationError
from oncal_feed.models import Schedule, Shift, User
from oncal_feed.validation import ScheduleInput, ShiftInput, UserInput
from tests.statements import recorded

NOW = datetime(2026, 3, 1, 12, tzinfo=UTC)
MONDAY = datetime(2026, 3, 2, 9, tzinfo=UTC)


def make_user(session: Session, email: str, name: str) -> User:
    """Create and flush a user."""
    return accounts.create_user(session, UserInput(email, name, "Europe/Berlin"), NOW)


@pytest.fixture
def team(db_session: Session) -> tuple[Schedule, User, User]:
    """A schedule and two people."""
    schedule, _, _ = shifts.upsert_schedule(
        db_session, "payments", ScheduleInput("Payments", "Europe/Berlin"), NOW
    )
    alice = make_user(db_session, "alice@example.com", "Alice")
    bob = make_user(db_session, "bob@example.com", "Bob")
    db_session.commit()
    return schedule, alice, bob


def week(external_id: str, email: str, n: int, **extra: str) -> ShiftInput:
    """The n-th weekly shift from MONDAY."""
    start = MONDAY + timedelta(weeks=n)
    return ShiftInput(external_id, email, start, start + timedelta(weeks=1), **extra)


def test_same_upsert_twice_changes_nothing(db_session: Session, team) -> None:
    """Revision and updated_at stay put when nothing changed."""
    schedule, alice, _ = team
    first = shifts.upsert_shift(db_session, schedule, week("w1", alice.email, 0), NOW)
    later = NOW + timedelta(hours=1)
    second = shifts.upsert_shift(db_session, schedule, week("w1", alice.email, 0), later)
    shift = shifts.get_shift(db_session, schedule, "w1")
    assert (first.created, second.unchanged) == (1, 1)
    assert (shift.revision, shift.updated_at) == (1, NOW)
    assert second.touched_user_ids == set()


def test_change_bumps_revision_and_touches_old_and_new_owner(db_session: Session, team) -> None:
    """Reassigning a shift touches both people and raises the revision once."""
    schedule, alice, bob = team
    shifts.upsert_shift(db_session, schedule, week("w1", alice.email, 0), NOW)
    result = shifts.upsert_shift(db_session, schedule, week("w1", bob.email, 0), NOW)
    shift = shifts.get_shift(db_session, schedule, "w1")
    assert shift.revision == 2
    assert result.touched_user_ids == {alice.id, bob.id}


def test_delete_is_a_tombstone_and_revival_keeps_uid(db_session: Session, team) -> None:
    """A deleted shift keeps its row and UID; upserting it again brings it back."""
    schedule, alice, _ = team
    shifts.upsert_shift(db_session, schedule, week("w1", alice.email, 0), NOW)
    uid = shifts.get_shift(db_session, schedule, "w1").uid
    shifts.delete_shift(db_session, schedule, "w1", NOW)
    shift = shifts.get_shift(db_session, schedule, "w1")
    assert shift.deleted_at == NOW
    assert shift.revision == 2
    assert shifts.delete_shift(db_session, schedule, "w1", NOW).unchanged == 1
    shifts.upsert_shift(db_session, schedule, week("w1", alice.email, 0), NOW)
    revived = shifts.get_shift(db_session, schedule, "w1")
    assert (revived.uid, revived.deleted_at, revived.revision) == (uid, None, 3)
    with pytest.raises(NotFound):
        shifts.delete_shift(db_session, schedule, "never", NOW)


def test_window_import_tombstones_missing_and_keeps_outside(db_session: Session, team) -> None:
    """Shifts in the window but not in the list are deleted; others are untouched."""
    schedule, alice, bob = team
    for n in range(4):
        shifts.upsert_shift(db_session, schedule, week(f"w{n}", alice.email, n), NOW)
    window = (MONDAY + timedelta(weeks=1), MONDAY + timedelta(weeks=3))
    result = shifts.import_window(db_session, schedule, *window, [week("w1", bob.email, 1)], NOW)
    assert result.as_dict() == {"created": 0, "updated": 1, "unchanged": 0, "deleted": 1}
    live = {
        s.external_id for s in db_session.scalars(select(Shift).where(Shift.deleted_at.is_(None)))
    }
    assert live == {"w0", "w1", "w3"}


def test_window_import_is_all_or_nothing(db_session: Session, team) -> None:
    """One unknown user rejects the whole import before anything is written."""
    schedule, alice, _ = team
    items = [week("w0", alice.email, 0), week("w1", "nobody@example.com", 1)]
    with pytest.raises(ValidationError) as caught:
        shifts.import_window(db_session, schedule, MONDAY, MONDAY + timedelta(weeks=2), items, NOW)
    assert caught.value.errors[0].field == "[1].user_email"
    assert db_session.scalars(select(Shift)).all() == []


def test_handover_names_follow_neighbours(db_session: Session, team) -> None:
    """Each shift names who hands over to it and to whom it hands over."""
    schedule, alice, bob = team
    shifts.upsert_shift(db_session, schedule, week("w0", alice.email, 0), NOW)
    shifts.upsert_shift(db_session, schedule, week("w1", bob.email, 1), NOW)
    first = shifts.get_shift(db_session, schedule, "w0")
    second = shifts.get_shift(db_session, schedule, "w1")
    assert (first.handover_from, first.handover_to) == (None, "Bob")
    assert (second.handover_from, second.handover_to) == ("Alice", None)
    assert first.revision == 2  # its text changed when Bob's shift arrived
    assert second.revision == 1  # created with its hand-over text: one write, one revision

    accounts.update_user(db_session, bob, UserInput(display_name="Robert"), NOW)
    assert shifts.get_shift(db_session, schedule, "w0").handover_to == "Robert"


def test_one_write_raises_a_revision_at_most_once(db_session: Session, team) -> None:
    """An edit that also changes the shift's own hand-over text is still one new revision."""
    schedule, alice, bob = team
    shifts.upsert_shift(db_session, schedule, week("w0", alice.email, 0), NOW)
    shifts.upsert_shift(db_session, schedule, week("w1", bob.email, 2), NOW)
    assert shifts.get_shift(db_session, schedule, "w1").revision == 1
    # Moving w1 next to w0 changes its times and gives it a hand-over in the same write.
    shifts.upsert_shift(db_session, schedule, week("w1", bob.email, 1), NOW)
    moved = shifts.get_shift(db_session, schedule, "w1")
    assert (moved.handover_from, moved.revision) == ("Alice", 2)


def test_query_by_user_and_window(db_session: Session, team) -> None:
    """Only the user's overlapping shifts come back; tombstones on request."""
    schedule, alice, bob = team
    for n in range(6):
        email = alice.email if n % 2 == 0 else bob.email
        shifts.upsert_shift(db_session, schedule, week(f"w{n}", email, n), NOW)
    shifts.delete_shift(db_session, schedule, "w2", NOW)
    window = (MONDAY + timedelta(days=3), MONDAY + timedelta(weeks=4, days=1))
    live = shifts.shifts_for_user(db_session, alice.id, *window)
    assert [s.external_id for s in live] == ["w0", "w4"]
    with_deleted = shifts.shifts_for_user(db_session, alice.id, *window, deleted_since=NOW)
    assert [s.external_id for s in with_deleted] == ["w0", "w2", "w4"]


# ---------------------------------------------------------------- set-based writes


def rotation(count: int, people: list[User], first: int = 0) -> list[ShiftInput]:
    """`count` back-to-back daily shifts, people taking turns, so each has hand-overs."""
    return [
        ShiftInput(
            f"d{n}",
            people[n % len(people)].email,
            MONDAY + timedelta(days=n),
            MONDAY + timedelta(days=n + 1),
        )
        for n in range(first, first + count)
    ]


def test_statements_do_not_grow_with_the_rows(db_session: Session, team) -> None:
    """A window import of 400 shifts sends as many statements as one of 20: it is set-based."""
    schedule, alice, bob = team
    other, _, _ = shifts.upsert_schedule(
        db_session, "search", ScheduleInput("Search", "Europe/Berlin"), NOW
    )
    window = (MONDAY, MONDAY + timedelta(days=400))
    with recorded(db_session.get_bind()) as small:
        shifts.import_window(db_session, schedule, *window, rotation(20, [alice, bob]), NOW)
    with recorded(db_session.get_bind()) as large:
        result = shifts.import_window(db_session, other, *window, rotation(400, [alice, bob]), NOW)
    assert result.created == 400
    assert len(large.sql) == len(small.sql)
    assert large.verbs.count("INSERT") == 1  # 400 rows in one multi-row INSERT


def test_unchanged_import_sends_no_insert_or_update(db_session: Session, team) -> None:
    """Importing the same shifts again only reads: no INSERT, UPDATE or DELETE, nobody touched."""
    schedule, alice, bob = team
    window = (MONDAY, MONDAY + timedelta(days=100))
    items = rotation(60, [alice, bob])
    shifts.import_window(db_session, schedule, *window, items, NOW)
    db_session.commit()
    with recorded(db_session.get_bind()) as sent:
        again = shifts.import_window(db_session, schedule, *window, items, NOW + timedelta(1))
        same = shifts.upsert_shifts(db_session, schedule, items, NOW + timedelta(1))
    assert (again.unchanged, same.unchanged) == (60, 60)
    assert again.touched_user_ids == same.touched_user_ids == set()
    assert set(sent.verbs) == {"SELECT"}  # the counter saw the reads, and only reads


def test_bulk_write_settles_hand_overs_like_one_by_one(db_session: Session, team) -> None:
    """Many shifts written at once get the same hand-overs as written one at a time, and
    each new row gets revision 1: written once, with its hand-over text."""
    schedule, alice, bob = team
    carol = make_user(db_session, "carol@example.com", "Carol")
    other, _, _ = shifts.upsert_schedule(
        db_session, "search", ScheduleInput("Search", "Europe/Berlin"), NOW
    )
    people = [alice, bob, bob, carol]  # bob twice in a row: no hand-over between them
    items = rotation(40, people)
    items = items[1::2] + items[::2]  # written out of order
    shifts.upsert_shifts(db_session, schedule, items, NOW)
    for item in items:
        shifts.upsert_shift(db_session, other, item, NOW)

    def handovers(of: Schedule) -> dict[str, tuple[str | None, str | None]]:
        rows = db_session.scalars(select(Shift).where(Shift.schedule_id == of.id))
        return {s.external_id: (s.handover_from, s.handover_to) for s in rows}

    bulk = handovers(schedule)
    assert bulk == handovers(other)
    assert [bulk[f"d{n}"] for n in (0, 1, 2, 3, 39)] == [
        (None, "Bob"),
        ("Alice", None),
        (None, "Carol"),
        ("Bob", "Alice"),
        ("Bob", None),
    ]
    revisions = db_session.scalars(select(Shift.revision).where(Shift.schedule_id == schedule.id))
    assert set(revisions) == {1}


def test_bulk_update_refreshes_neighbours_outside_the_list(db_session: Session, team) -> None:
    """Moving shifts in a bulk write renames the hand-overs of neighbours it does not list,
    each neighbour with one new revision."""
    schedule, alice, bob = team
    carol = make_user(db_session, "carol@example.com", "Carol")
    shifts.upsert_shifts(db_session, schedule, rotation(10, [alice, bob]), NOW)
    later = NOW + timedelta(hours=1)
    result = shifts.upsert_shifts(db_session, schedule, rotation(1, [carol], first=5), later)
    assert (result.updated, result.created) == (1, 0)
    assert result.touched_user_ids == {alice.id, bob.id, carol.id}
    d4, d6 = (shifts.get_shift(db_session, schedule, key) for key in ("d4", "d6"))
    assert (d4.handover_to, d4.revision, d4.updated_at) == ("Carol", 2, later)
    assert (d6.handover_from, d6.revision) == ("Carol", 2)
    assert shifts.get_shift(db_session, schedule, "d2").revision == 1  # out of reach: untouched


def test_upsert_shifts_refuses_repeated_ids_before_writing(db_session: Session, team) -> None:
    """An external id given twice names its index and nothing is written."""
    schedule, alice, _ = team
    items = [week("w1", alice.email, 0), week("w1", alice.email, 1)]
    with pytest.raises(ValidationError) as caught:
        shifts.upsert_shifts(db_session, schedule, items, NOW)
    assert [(e.field, e.problem) for e in caught.value.errors] == [
        ("[1].external_id", "appears more than once")
    ]
    assert db_session.scalars(select(Shift)).all() == []


def test_changes_far_apart_refresh_both_neighbourhoods(db_session: Session, team) -> None:
    """Two edits months apart in one write: the neighbours of each get the new name, the
    shifts between them keep their revision."""
    schedule, alice, bob = team
    carol = make_user(db_session, "carol@example.com", "Carol")
    shifts.upsert_shifts(db_session, schedule, rotation(200, [alice, bob]), NOW)
    edits = rotation(1, [carol], first=10) + rotation(1, [carol], first=150)
    result = shifts.upsert_shifts(db_session, schedule, edits, NOW + timedelta(hours=1))
    assert result.updated == 2
    found = {
        key: shifts.get_shift(db_session, schedule, key)
        for key in ("d9", "d11", "d149", "d151", "d80")
    }
    assert [found[k].handover_to for k in ("d9", "d149")] == ["Carol", "Carol"]
    assert [found[k].handover_from for k in ("d11", "d151")] == ["Carol", "Carol"]
    assert [found[k].revision for k in ("d9", "d11", "d149", "d151", "d80")] == [2, 2, 2, 2, 1]


def test_an_override_takes_over_from_and_hands_back_to_the_primary_rotation(
    db_session: Session, team
) -> None:
    """Bob's override in the middle of Alice's primary week names her both ways; one that
    ends as Carol's week starts hands over to Carol; a secondary is no one's stand-in."""
    schedule, alice, bob = team
    carol = make_user(db_session, "carol@example.com", "Carol")
    week = timedelta(days=7)
    items = [
        ShiftInput("alice-week", alice.email, MONDAY, MONDAY + week),
        ShiftInput("carol-week", carol.email, MONDAY + week, MONDAY + 2 * week),
        ShiftInput("bob-tue", bob.email, MONDAY + timedelta(days=1),
                   MONDAY + timedelta(days=1, hours=8), role="override"),
        ShiftInput("bob-sun", bob.email, MONDAY + timedelta(days=6),
                   MONDAY + week, role="override"),
        ShiftInput("bob-second", bob.email, MONDAY, MONDAY + week, role="secondary"),
    ]  # fmt: skip
    shifts.upsert_shifts(db_session, schedule, items, NOW)

    def handovers(external_id: str) -> tuple[str | None, str | None]:
        shift = shifts.get_shift(db_session, schedule, external_id)
        return shift.handover_from, shift.handover_to

    assert handovers("bob-tue") == ("Alice", "Alice")
    assert handovers("bob-sun") == ("Alice", "Carol")
    assert handovers("bob-second") == (None, None)
    assert handovers("alice-week") == (None, "Carol")

    # Moving Carol's week away changes whom the Sunday override hands back to.
    later = NOW + timedelta(hours=1)
    shifts.upsert_shift(
        db_session,
        schedule,
        ShiftInput("carol-week", carol.email, MONDAY + 3 * week, MONDAY + 4 * week),
        later,
    )
    assert handovers("bob-sun") == ("Alice", None)
    assert shifts.get_shift(db_session, schedule, "bob-sun").revision == 2


def test_each_shift_names_who_else_is_on_call_with_their_contact(db_session: Session, team) -> None:
    """Alice's primary week lists Bob's secondary week and Carol's escalation day that
    overlap it, by start, each once; not Alice herself, not the override that stands in for
    her, nobody outside the week. A colleague's move, rename or new address is a new
    revision of the shifts that name them."""
    schedule, alice, bob = team
    carol = make_user(db_session, "carol@example.com", "Carol")
    dave = make_user(db_session, "dave@example.com", "Dave")
    week = timedelta(days=7)
    day = timedelta(days=1)
    items = [
        ShiftInput("alice-week", alice.email, MONDAY, MONDAY + week),
        ShiftInput("alice-escalation", alice.email, MONDAY, MONDAY + day, role="escalation"),
        ShiftInput("bob-second-1", bob.email, MONDAY - day, MONDAY + 3 * day, role="secondary"),
        ShiftInput("bob-second-2", bob.email, MONDAY + 3 * day, MONDAY + week, role="secondary"),
        ShiftInput("carol-escalation", carol.email, MONDAY + 2 * day, MONDAY + 3 * day,
                   role="escalation"),
        ShiftInput("dave-override", dave.email, MONDAY + day, MONDAY + 2 * day, role="override"),
        ShiftInput("dave-next-week", dave.email, MONDAY + week, MONDAY + 2 * week),
    ]  # fmt: skip
    shifts.upsert_shifts(db_session, schedule, items, NOW)

    def also(external_id: str) -> list[tuple[str, str, str]] | None:
        entries = shifts.get_shift(db_session, schedule, external_id).also_on_call
        return None if entries is None else [(e["name"], e["role"], e["email"]) for e in entries]

    assert also("alice-week") == [
        ("Bob", "secondary", "bob@example.com"),
        ("Carol", "escalation", "carol@example.com"),
    ]
    # The override stands in for Alice's primary week; the secondary is on call beside it.
    assert also("dave-override") == [("Bob", "secondary", "bob@example.com")]
    assert also("dave-next-week") is None  # touching is not overlapping
    assert also("carol-escalation") == [
        ("Bob", "secondary", "bob@example.com"),
        ("Alice", "primary", "alice@example.com"),
    ]

    later = NOW + timedelta(hours=1)
    before = shifts.get_shift(db_session, schedule, "alice-week").revision
    shifts.delete_shift(db_session, schedule, "carol-escalation", later)
    assert also("alice-week") == [("Bob", "secondary", "bob@example.com")]
    accounts.update_user(db_session, bob, UserInput(email="robert@example.com"), later)
    assert also("alice-week") == [("Bob", "secondary", "robert@example.com")]
    accounts.update_user(db_session, bob, UserInput(display_name="Robert"), later)
    assert also("alice-week") == [("Robert", "secondary", "robert@example.com")]
    assert shifts.get_shift(db_session, schedule, "alice-week").revision == before + 3


def test_a_crowded_shift_names_at_most_six_others(db_session: Session, team) -> None:
    """Ten people on call beside Alice's week: her event names the first six by start."""
    schedule, alice, _ = team
    others = [make_user(db_session, f"p{n}@example.com", f"Person {n}") for n in range(10)]
    items = [ShiftInput("alice-week", alice.email, MONDAY, MONDAY + timedelta(days=7))]
    items += [
        ShiftInput(f"p{n}", person.email, MONDAY + timedelta(hours=n), MONDAY + timedelta(days=1),
                   role="secondary")
        for n, person in enumerate(others)
    ]  # fmt: skip
    shifts.upsert_shifts(db_session, schedule, items, NOW)
    named = shifts.get_shift(db_session, schedule, "alice-week").also_on_call or []
    assert [entry["name"] for entry in named] == [f"Person {n}" for n in range(6)]
