"""shifts.shift_facts: the one conversion from a stored shift to what rendering needs."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from sqlalchemy.orm import Session

from oncal_feed import accounts, shifts
from oncal_feed.validation import ScheduleInput, ShiftInput, UserInput

NOW = datetime(2026, 3, 1, 12, tzinfo=UTC)
START = datetime(2026, 3, 2, 8, tzinfo=UTC)


def test_facts_fold_in_the_schedule(db_session: Session) -> None:
    """Fields copy over; renaming the schedule raises revision and updated_at of every shift."""
    schedule, _, _ = shifts.upsert_schedule(
        db_session,
        "payments",
        ScheduleInput("Payments", "Europe/Berlin", "https://rb.example"),
        NOW,
    )
    accounts.create_user(db_session, UserInput("alice@example.com", "Alice"), NOW)
    data = ShiftInput("w1", "alice@example.com", START, START + timedelta(days=7), "secondary", "n")
    shifts.upsert_shift(db_session, schedule, data, NOW)
    shift = shifts.get_shift(db_session, schedule, "w1")

    facts = shifts.shift_facts(shift)
    assert (facts.uid, facts.schedule_key, facts.schedule_name) == (
        shift.uid,
        "payments",
        "Payments",
    )
    assert (facts.schedule_zone, facts.schedule_url) == ("Europe/Berlin", "https://rb.example")
    assert (facts.role, facts.notes, facts.starts_at, facts.ends_at) == (
        "secondary", "n", START, START + timedelta(days=7),
    )  # fmt: skip
    assert (facts.revision, facts.created_at, facts.updated_at, facts.cancelled) == (
        1, NOW, NOW, False,
    )  # fmt: skip

    renamed_at = NOW + timedelta(hours=2)
    shifts.upsert_schedule(
        db_session,
        "payments",
        ScheduleInput("Billing", "Europe/Berlin", "https://rb.example"),
        renamed_at,
    )
    facts = shifts.shift_facts(shift)
    assert (facts.schedule_name, facts.revision, facts.updated_at) == ("Billing", 2, renamed_at)

    # A later change to the shift itself wins over the older schedule change.
    deleted_at = NOW + timedelta(days=1)
    shifts.delete_shift(db_session, schedule, "w1", deleted_at)
    facts = shifts.shift_facts(shifts.get_shift(db_session, schedule, "w1"))
    assert (facts.cancelled, facts.revision, facts.updated_at) == (True, 3, deleted_at)
