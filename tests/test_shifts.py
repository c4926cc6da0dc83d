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
