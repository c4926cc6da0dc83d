"""Demo data for `oncal-feed demo`: a small team with realistic rotations.

The rotation generators are pure: the same arguments always give the same shifts. Who is on
call in a given week depends only on that week (counted from `ROTATION_EPOCH`), never on the
window asked for, and external ids come from the hand-off's local date, so seeding again on
the same day changes nothing and seeding on a later day keeps every shift's UID.

Hand-offs are wall-clock times in a zone, computed with zoneinfo on local dates: a week that
crosses a DST change is 167 or 169 hours long, not 168.
"""

from __future__ import annotations

import secrets
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

from sqlalchemy.orm import Session

from oncal_feed import accounts, shifts
from oncal_feed.config import _instance_secret
from oncal_feed.errors import NotFound
from oncal_feed.models import User
from oncal_feed.shifts import WriteResult
from oncal_feed.validation import ScheduleInput, ShiftInput, UserInput

__all__ = [
    "DEMO_EMAIL",
    "PEOPLE",
    "ROTATION_EPOCH",
    "DemoSchedule",
    "Person",
    "SeedReport",
    "Site",
    "demo_password",
    "demo_schedules",
    "demo_window",
    "follow_the_sun",
    "seed",
    "weekly_rotation",
]

# A Monday. Week n of every rotation is counted from here, so assignments are a function of
# the calendar alone.
ROTATION_EPOCH = date(2024, 1, 1)
# The demo covers the past month and the next three months.
DEMO_PAST_DAYS = 31
DEMO_FUTURE_DAYS = 92


@dataclass(frozen=True)
class Person:
    """A demo user."""

    email: str
    display_name: str
    time_zone: str


@dataclass(frozen=True)
class Site:
    """One office of a follow-the-sun rotation.

    `starts` is the site's daily hand-off time in the *schedule's* zone; the site's own
    `time_zone` decides where its weeks begin (its people rotate weekly, Monday to Sunday
    local time).
    """

    key: str
    name: str
    time_zone: str
    starts: time
    emails: tuple[str, ...]


@dataclass(frozen=True)
class DemoSchedule:
    """A schedule to create and the complete set of its shifts in the demo window."""

    key: str
    data: ScheduleInput
    shifts: list[ShiftInput]


@dataclass
class SeedReport:
    """What `seed` did."""

    user: User
    users_created: int
    schedules_created: int
    password_changed: bool
    window: tuple[datetime, datetime]
    # One result per schedule write and one per schedule's shift import.
    schedule_results: list[WriteResult] = field(default_factory=list)
    shift_results: list[WriteResult] = field(default_factory=list)

    @property
    def touched_user_ids(self) -> set[int]:
        """Users whose calendars changed, for `notify.shifts_changed`."""
        touched: set[int] = set()
        for result in self.schedule_results + self.shift_results:
            touched |= result.touched_user_ids
        return touched


DEMO_EMAIL = "demo@oncal.example"
PEOPLE = (
    Person(DEMO_EMAIL, "Robin Demo", "Europe/Berlin"),
    Person("amara.okafor@oncal.example", "Amara Okafor", "Europe/Berlin"),
    Person("jonas.weber@oncal.example", "Jonas Weber", "Europe/Berlin"),
    Person("lea.martin@oncal.example", "Léa Martin", "Europe/Paris"),
    Person("liam.chen@oncal.example", "Liam Chen", "Australia/Sydney"),
    Person("grace.wu@oncal.example", "Grace Wu", "Australia/Sydney"),
    Person("maya.johnson@oncal.example", "Maya Johnson", "America/New_York"),
    Person("carlos.diaz@oncal.example", "Carlos Díaz", "America/New_York"),
)

_WEEKDAYS = ("Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday")


def _at(day: date, wall_clock: time, zone: ZoneInfo) -> datetime:
    """The UTC instant at which clocks in `zone` show `wall_clock` on `day`.

    In a spring-forward gap zoneinfo reads the time with the offset from before the change
    (02:30 becomes 03:30), the usual choice of scheduling tools.
    """
    return datetime.combine(day, wall_clock, tzinfo=zone).astimezone(UTC)


def _week_number(day: date) -> int:
    return (day - ROTATION_EPOCH).days // 7


def weekly_rotation(
    emails: Sequence[str],
    *,
    zone: str,
    weekday: int,
    at: time,
    start: datetime,
    end: datetime,
    id_prefix: str,
    role: str = "primary",
    offset: int = 0,
    notes: str = "",
) -> list[ShiftInput]:
    """Return the week-long shifts overlapping [start, end) of a rotation through `emails`.

    Hand-offs happen on `weekday` (0 = Monday) at wall-clock time `at` in `zone`. The
    person on call in the week starting on hand-off day D is
    `emails[(weeks from ROTATION_EPOCH to D + offset) % len(emails)]`; `offset=1` gives a
    secondary who is next week's primary.
    """
    if not emails:
        raise ValueError("a rotation needs at least one person")
    tz = ZoneInfo(zone)
    first = start.astimezone(tz).date()
    # Start one hand-off early so the shift already running at `start` is included.
    day = first - timedelta(days=(first.weekday() - weekday) % 7 + 7)
    found = []
    while (begins := _at(day, at, tz)) < end:
        ends = _at(day + timedelta(weeks=1), at, tz)
        if ends > start:
            email = emails[(_week_number(day) + offset) % len(emails)]
            external_id = f"{id_prefix}-{day.isoformat()}"
            found.append(ShiftInput(external_id, email, begins, ends, role, notes))
        day += timedelta(weeks=1)
    return found


def follow_the_sun(
    sites: Sequence[Site],
    *,
    zone: str,
    start: datetime,
    end: datetime,
    id_prefix: str,
    role: str = "primary",
) -> list[ShiftInput]:
    """Return the daily shifts overlapping [start, end) of sites that hand over in turn.

    Every day each site starts at its `starts` time (wall clock in `zone`) and hands over
    when the next site starts; the last site of the day hands over to the first one of the
    next day. Within a site, people take turns week by week in the site's own zone.
    """
    ordered = sorted(sites, key=lambda site: site.starts)
    if not ordered or len({site.starts for site in ordered}) != len(ordered):
        raise ValueError("sites need distinct start times")
    if any(not site.emails for site in ordered):
        raise ValueError("every site needs at least one person")
    tz = ZoneInfo(zone)
    day = start.astimezone(tz).date() - timedelta(days=1)
    found = []
    while _at(day, ordered[0].starts, tz) < end:
        for index, site in enumerate(ordered):
            following = ordered[(index + 1) % len(ordered)]
            handover_day = day if index + 1 < len(ordered) else day + timedelta(days=1)
            begins = _at(day, site.starts, tz)
            ends = _at(handover_day, following.starts, tz)
            if begins < end and ends > start:
                local_day = begins.astimezone(ZoneInfo(site.time_zone)).date()
                email = site.emails[_week_number(local_day) % len(site.emails)]
                notes = f"Follow the sun: {site.name} hands over to {following.name}."
                external_id = f"{id_prefix}-{day.isoformat()}-{site.key}"
                found.append(ShiftInput(external_id, email, begins, ends, role, notes))
        day += timedelta(days=1)
    return found


def _handoff_note(weekday: int, at: time, zone: str) -> str:
    return f"Hand-off every {_WEEKDAYS[weekday]} at {at:%H:%M} ({zone})."


def demo_window(now: datetime) -> tuple[datetime, datetime]:
    """Return the demo's [start, end): whole UTC days from a month ago to three months ahead."""
    today = now.astimezone(UTC).date()
    return (
        datetime.combine(today - timedelta(days=DEMO_PAST_DAYS), time(), UTC),
        datetime.combine(today + timedelta(days=DEMO_FUTURE_DAYS), time(), UTC),
    )


def demo_schedules(start: datetime, end: datetime) -> list[DemoSchedule]:
    """Return the demo schedules with their shifts overlapping [start, end).

    The demo user is in every rotation: primary and secondary of a Berlin team (Monday
    09:00 hand-offs), a weekly New York rotation (Wednesday 10:00), and the Berlin slot of
    a follow-the-sun rotation between Sydney, Berlin and New York.
    """
    payments_team = [p.email for p in PEOPLE[:4]]
    database_team = [PEOPLE[6].email, PEOPLE[7].email, DEMO_EMAIL]
    monday, nine = 0, time(9)
    wednesday, ten = 2, time(10)
    # Hand-offs in UTC make every shift exactly 8 hours long; each office's local start
    # moves by an hour when its own clocks change (Sydney 09:00/08:00, Berlin 07:00/08:00,
    # New York 09:00/10:00).
    sites = (
        Site("syd", "Sydney", "Australia/Sydney", time(22), (PEOPLE[4].email, PEOPLE[5].email)),
        Site("ber", "Berlin", "Europe/Berlin", time(6), (DEMO_EMAIL, PEOPLE[2].email)),
        Site("nyc", "New York", "America/New_York", time(14), (PEOPLE[6].email, PEOPLE[7].email)),
    )
    berlin, new_york = "Europe/Berlin", "America/New_York"
    return [
        DemoSchedule(
            "payments",
            ScheduleInput("Payments API", berlin),
            weekly_rotation(
                payments_team, zone=berlin, weekday=monday, at=nine, start=start, end=end,
                id_prefix="primary", notes=_handoff_note(monday, nine, berlin),
            )
            + weekly_rotation(
                payments_team, zone=berlin, weekday=monday, at=nine, start=start, end=end,
                id_prefix="secondary", role="secondary", offset=1,
                notes="Secondary: next week's primary. " + _handoff_note(monday, nine, berlin),
            ),
        ),
        DemoSchedule(
            "database",
            ScheduleInput("Database platform", new_york),
            weekly_rotation(
                database_team, zone=new_york, weekday=wednesday, at=ten, start=start, end=end,
                id_prefix="database", notes=_handoff_note(wednesday, ten, new_york),
            ),
        ),
        DemoSchedule(
            "incident-command",
            ScheduleInput("Incident command (follow the sun)", "UTC"),
            follow_the_sun(sites, zone="UTC", start=start, end=end, id_prefix="ic"),
        ),
    ]  # fmt: skip


def demo_password(instance_path: Path) -> str:
    """Return the demo user's password, made on first use and kept in the instance folder.

    Keeping it (rather than resetting it on every run) means a second `oncal-feed demo`
    leaves a signed-in browser signed in and prints the same password again.
    """
    return _instance_secret(instance_path / "demo_password", lambda: secrets.token_urlsafe(12))


def seed(session: Session, now: datetime, password: str) -> SeedReport:
    """Create or refresh the demo users, schedules and shifts; the caller commits.

    Existing users and schedules are reused, and each schedule's shifts are written with
    `import_window` over the demo window, so running this twice on the same day reports
    every shift unchanged: same rows, same UIDs, same revisions.
    """
    users_created = 0
    for person in PEOPLE:
        try:
            accounts.get_user_by_email(session, person.email)
        except NotFound:
            data = UserInput(person.email, person.display_name, person.time_zone)
            accounts.create_user(session, data, now)
            users_created += 1
    user = accounts.get_user_by_email(session, DEMO_EMAIL)
    # The demo user is the admin of a demo install (the admin area is part of the tour).
    accounts.set_role(user, "admin", now)
    password_changed = not accounts.check_password(user, password)
    if password_changed:
        accounts.set_password(user, password)

    window = demo_window(now)
    report = SeedReport(user, users_created, 0, password_changed, window)
    for plan in demo_schedules(*window):
        schedule, created, result = shifts.upsert_schedule(session, plan.key, plan.data, now)
        report.schedules_created += created
        report.schedule_results.append(result)
        report.shift_results.append(
            shifts.import_window(session, schedule, *window, plan.shifts, now)
        )
    return report
