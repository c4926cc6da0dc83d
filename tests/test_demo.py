"""Demo rotations (pure generators) and seeding the demo through the shift store."""

from __future__ import annotations

import stat
from datetime import UTC, date, datetime, time, timedelta
from itertools import pairwise
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from oncal_feed import accounts, demo
from oncal_feed.models import Schedule, Shift, User
from oncal_feed.validation import ShiftInput, parse_shift

BERLIN = ZoneInfo("Europe/Berlin")
TEAM = ["a@example.com", "b@example.com", "c@example.com"]


def utc(*args: int) -> datetime:
    """An aware UTC datetime."""
    return datetime(*args, tzinfo=UTC)


def berlin_weekly(start: datetime, end: datetime, **extra: object) -> list[ShiftInput]:
    """The Monday 09:00 Europe/Berlin rotation through TEAM."""
    return demo.weekly_rotation(
        TEAM, zone="Europe/Berlin", weekday=0, at=time(9), start=start, end=end,
        id_prefix="p", **extra,  # type: ignore[arg-type]
    )  # fmt: skip


def assert_contiguous(found: list[ShiftInput]) -> None:
    """Each shift starts exactly when the previous one ends."""
    for before, after in pairwise(found):
        assert before.ends_at == after.starts_at


# ---------------------------------------------------------------- weekly rotation


def test_weekly_handoffs_stay_at_monday_0900_local_across_spring_dst() -> None:
    """Clocks go forward on Sunday 29 March 2026: that week is 167 hours, hand-offs stay 09:00."""
    found = berlin_weekly(utc(2026, 3, 16), utc(2026, 4, 13))
    assert [s.external_id for s in found] == [
        "p-2026-03-09", "p-2026-03-16", "p-2026-03-23", "p-2026-03-30", "p-2026-04-06",
    ]  # fmt: skip
    for shift in found:
        local = shift.starts_at.astimezone(BERLIN)
        assert (local.weekday(), local.time()) == (0, time(9))
    assert [s.starts_at.hour for s in found] == [8, 8, 8, 7, 7]  # CET, then CEST, in UTC
    lengths = {s.external_id: s.ends_at - s.starts_at for s in found}
    assert lengths["p-2026-03-23"] == timedelta(hours=167)
    assert lengths["p-2026-03-16"] == lengths["p-2026-03-30"] == timedelta(hours=168)
    assert_contiguous(found)


def test_weekly_autumn_dst_week_is_169_hours() -> None:
    """Clocks go back on Sunday 25 October 2026."""
    found = berlin_weekly(utc(2026, 10, 20), utc(2026, 10, 27))
    week = next(s for s in found if s.external_id == "p-2026-10-19")
    assert (week.starts_at, week.ends_at) == (utc(2026, 10, 19, 7), utc(2026, 10, 26, 8))
    assert week.ends_at - week.starts_at == timedelta(hours=169)


def test_weekly_window_edges() -> None:
    """The shift running at the window start is included; one starting at the end is not."""
    found = berlin_weekly(utc(2026, 3, 4), utc(2026, 3, 16, 8))
    assert [s.external_id for s in found] == ["p-2026-03-02", "p-2026-03-09"]


def test_weekly_assignment_depends_only_on_the_week() -> None:
    """Two overlapping windows agree on every shared shift; people take turns in order."""
    wide = berlin_weekly(utc(2026, 1, 1), utc(2026, 7, 1))
    narrow = berlin_weekly(utc(2026, 3, 20), utc(2026, 4, 20))
    by_id = {s.external_id: s for s in wide}
    assert narrow
    assert all(by_id[s.external_id] == s for s in narrow)
    emails = [s.user_email for s in wide]
    assert len(set(emails)) == 3
    assert all(emails[i] == emails[i + 3] for i in range(len(emails) - 3))
    assert all(emails[i] != emails[i + 1] for i in range(len(emails) - 1))


def test_secondary_is_next_weeks_primary() -> None:
    """offset=1: the secondary of week n is the primary of week n + 1, never the same person."""
    start, end = utc(2026, 3, 1), utc(2026, 6, 1)
    primary = berlin_weekly(start, end)
    secondary = berlin_weekly(start, end, role="secondary", offset=1)
    assert [s.starts_at for s in primary] == [s.starts_at for s in secondary]
    assert {s.role for s in secondary} == {"secondary"}
    for this_week, next_week, backup in zip(primary, primary[1:], secondary, strict=False):
        assert backup.user_email == next_week.user_email != this_week.user_email


def test_weekly_needs_people() -> None:
    """An empty rotation is a programming error, said plainly."""
    with pytest.raises(ValueError, match="at least one person"):
        demo.weekly_rotation(
            [], zone="UTC", weekday=0, at=time(9), start=utc(2026, 1, 1), end=utc(2026, 2, 1),
            id_prefix="x",
        )  # fmt: skip


# ---------------------------------------------------------------- follow the sun


SITES = (
    demo.Site("syd", "Sydney", "Australia/Sydney", time(22), ("s1@example.com", "s2@example.com")),
    demo.Site("ber", "Berlin", "Europe/Berlin", time(6), ("b1@example.com",)),
    demo.Site(
        "nyc", "New York", "America/New_York", time(14), ("n1@example.com", "n2@example.com")
    ),
)


def local_start(shift: ShiftInput, zone: str) -> time:
    """The shift's start on the wall clock in `zone`."""
    return shift.starts_at.astimezone(ZoneInfo(zone)).time()


def test_follow_the_sun_three_eight_hour_shifts_a_day() -> None:
    """Hand-offs at 22:00, 06:00 and 14:00 UTC: contiguous 8-hour shifts, three per day."""
    found = demo.follow_the_sun(
        SITES, zone="UTC", start=utc(2026, 5, 1), end=utc(2026, 5, 8), id_prefix="ic"
    )
    assert found[0].starts_at <= utc(2026, 5, 1) < found[0].ends_at
    assert found[-1].ends_at >= utc(2026, 5, 8)
    assert_contiguous(found)
    assert {s.ends_at - s.starts_at for s in found} == {timedelta(hours=8)}
    assert [s.external_id for s in found[:4]] == [
        "ic-2026-04-30-syd", "ic-2026-05-01-ber", "ic-2026-05-01-nyc", "ic-2026-05-01-syd",
    ]  # fmt: skip
    assert found[1].notes == "Follow the sun: Berlin hands over to New York."
    assert len({s.external_id for s in found}) == len(found)


@pytest.mark.parametrize(
    ("day", "sydney", "berlin", "new_york"),
    [
        (date(2026, 1, 14), time(9), time(7), time(9)),  # AEDT, CET, EST
        (date(2026, 7, 15), time(8), time(8), time(10)),  # AEST, CEST, EDT
    ],
)
def test_follow_the_sun_local_start_times_follow_each_citys_dst(
    day: date, sydney: time, berlin: time, new_york: time
) -> None:
    """With UTC hand-offs each office's local start moves by an hour with its own clocks."""
    start = datetime.combine(day, time(), UTC)
    found = demo.follow_the_sun(
        SITES, zone="UTC", start=start, end=start + timedelta(days=1), id_prefix="ic"
    )
    by_site = {s.external_id.rsplit("-", 1)[1]: s for s in found if s.starts_at >= start}
    assert local_start(by_site["syd"], "Australia/Sydney") == sydney
    assert local_start(by_site["ber"], "Europe/Berlin") == berlin
    assert local_start(by_site["nyc"], "America/New_York") == new_york


def test_follow_the_sun_sites_rotate_on_their_own_monday() -> None:
    """Sydney's 09:00 Monday shift (Sunday 22:00 UTC) already belongs to the new week."""
    found = demo.follow_the_sun(
        SITES, zone="UTC", start=utc(2026, 3, 6), end=utc(2026, 3, 10), id_prefix="ic"
    )
    sydney = {s.starts_at: s.user_email for s in found if s.external_id.endswith("-syd")}
    # Sunday 8 March 2026 22:00 UTC is Monday 9 March 09:00 in Sydney.
    assert sydney[utc(2026, 3, 7, 22)] != sydney[utc(2026, 3, 8, 22)]
    assert sydney[utc(2026, 3, 8, 22)] == sydney[utc(2026, 3, 9, 22)]


def test_follow_the_sun_in_a_dst_zone_keeps_wall_clock_handoffs() -> None:
    """Hand-offs fixed in Europe/Berlin: the night the clocks go forward is an hour shorter."""
    sites = [
        demo.Site("a", "Early", "Europe/Berlin", time(7), ("a@example.com",)),
        demo.Site("b", "Late", "Europe/Berlin", time(15), ("b@example.com",)),
        demo.Site("c", "Night", "Europe/Berlin", time(23), ("c@example.com",)),
    ]
    found = demo.follow_the_sun(
        sites, zone="Europe/Berlin", start=utc(2026, 3, 28), end=utc(2026, 3, 30), id_prefix="x"
    )
    assert_contiguous(found)
    night = next(s for s in found if s.external_id == "x-2026-03-28-c")
    assert night.ends_at - night.starts_at == timedelta(hours=7)
    assert {local_start(s, "Europe/Berlin") for s in found} == {time(7), time(15), time(23)}


def test_follow_the_sun_refuses_clashing_sites() -> None:
    """Two sites starting at the same time make no rotation."""
    clash = [SITES[0], demo.Site("x", "X", "UTC", time(22), ("x@example.com",))]
    with pytest.raises(ValueError, match="distinct start times"):
        demo.follow_the_sun(
            clash, zone="UTC", start=utc(2026, 1, 1), end=utc(2026, 1, 2), id_prefix="x"
        )


# ---------------------------------------------------------------- the demo plan and seeding


NOW = utc(2026, 3, 25, 12)


def test_demo_window_is_a_month_back_and_three_months_ahead() -> None:
    """Whole UTC days, so every run on the same day asks for the same window."""
    assert demo.demo_window(NOW) == (utc(2026, 2, 22), utc(2026, 6, 25))
    assert demo.demo_window(NOW + timedelta(hours=11)) == demo.demo_window(NOW)


def test_demo_user_is_on_every_schedule_and_every_shift_is_valid() -> None:
    """The demo user has shifts in each schedule, past and future; rows pass validation."""
    plans = demo.demo_schedules(*demo.demo_window(NOW))
    assert [p.key for p in plans] == ["payments", "database", "incident-command"]
    for plan in plans:
        mine = [s for s in plan.shifts if s.user_email == demo.DEMO_EMAIL]
        assert any(s.ends_at <= NOW for s in mine), plan.key
        assert any(s.starts_at >= NOW for s in mine), plan.key
        assert len({s.external_id for s in plan.shifts}) == len(plan.shifts)
        for shift in plan.shifts:
            raw = {
                "external_id": shift.external_id,
                "user_email": shift.user_email,
                "starts_at": shift.starts_at.isoformat(),
                "ends_at": shift.ends_at.isoformat(),
                "role": shift.role,
                "notes": shift.notes,
            }
            assert parse_shift(raw) == shift
    roles = {s.role for s in plans[0].shifts if s.user_email == demo.DEMO_EMAIL}
    assert roles == {"primary", "secondary"}


def test_demo_password_is_kept_in_the_instance_folder(tmp_path: Path) -> None:
    """Made once, owner-only, the same on every later call."""
    first = demo.demo_password(tmp_path)
    assert len(first) >= 16
    assert demo.demo_password(tmp_path) == first
    assert stat.S_IMODE((tmp_path / "demo_password").stat().st_mode) == 0o600


Snapshot = dict[tuple[str, str], tuple[str, int, datetime, datetime | None, datetime]]


def snapshot(session: Session) -> Snapshot:
    """(schedule, external id) -> (uid, revision, updated_at, deleted_at, starts_at) of each row."""
    rows = session.execute(
        select(Schedule.key, Shift.external_id, Shift.uid, Shift.revision, Shift.updated_at,
               Shift.deleted_at, Shift.starts_at).join(Schedule, Schedule.id == Shift.schedule_id)
    )  # fmt: skip
    return {(row[0], row[1]): tuple(row[2:]) for row in rows}  # type: ignore[misc]


def test_seeding_twice_changes_nothing(db_session: Session) -> None:
    """The second run reuses users and schedules, and every shift keeps UID and revision."""
    first = demo.seed(db_session, NOW, "pw-one-two-three")
    db_session.commit()
    assert (first.users_created, first.schedules_created, first.password_changed) == (8, 3, True)
    before = snapshot(db_session)
    created = sum(r.created for r in first.shift_results)
    assert created == len(before) > 300

    second = demo.seed(db_session, NOW + timedelta(hours=1), "pw-one-two-three")
    db_session.commit()
    assert (second.users_created, second.schedules_created, second.password_changed) == (
        0,
        0,
        False,
    )
    assert [r.as_dict() for r in second.shift_results] == [
        {"created": 0, "updated": 0, "unchanged": len(plan.shifts), "deleted": 0}
        for plan in demo.demo_schedules(*demo.demo_window(NOW))
    ]
    assert second.touched_user_ids == set()
    assert snapshot(db_session) == before
    assert db_session.scalar(select(func.count()).select_from(User)) == len(demo.PEOPLE)
    user = accounts.get_user_by_email(db_session, demo.DEMO_EMAIL)
    assert accounts.check_password(user, "pw-one-two-three")
    # The demo user is the demo's admin; the rest of the team are members.
    roles = dict(db_session.execute(select(User.email, User.role)).all())
    assert roles.pop(demo.DEMO_EMAIL) == "admin"
    assert set(roles.values()) == {"member"}


def test_seeding_a_week_later_keeps_every_uid(db_session: Session) -> None:
    """A later run slides the window: shared shifts keep their rows, nothing is duplicated."""
    demo.seed(db_session, NOW, "pw")
    db_session.commit()
    before = snapshot(db_session)
    later = demo.seed(db_session, NOW + timedelta(days=7), "pw")
    db_session.commit()
    after = snapshot(db_session)
    assert sum(r.deleted for r in later.shift_results) == 0
    assert sum(r.created for r in later.shift_results) == len(after) - len(before) > 0
    assert all(after[key][0] == value[0] for key, value in before.items())
    # Away from the edges of both windows, where hand-over names may change, rows are as
    # they were: same revision, same updated_at.
    _old_start, old_end = demo.demo_window(NOW)
    new_start, _new_end = demo.demo_window(NOW + timedelta(days=7))
    inner = {
        key: value
        for key, value in before.items()
        if new_start + timedelta(days=8) <= value[4] <= old_end - timedelta(days=8)
    }
    assert len(inner) > 200
    assert all(after[key] == value for key, value in inner.items())
