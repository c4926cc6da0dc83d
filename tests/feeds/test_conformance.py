"""Feeds with awkward content, served by the real view, parsed by icalendar and vobject.

Every feed lands in the artifacts folder (see tests/rendering/ics_checks.py) for
`../shared/tools/ics-check`, which runs about ten more parsers over them.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest

from oncal_feed.feeds.store import FeedSettings, create_feed
from oncal_feed.feeds.tokens import feed_links
from oncal_feed.models import Feed
from tests.feeds.conftest import TODAY, Fetched, World

Fetch = Callable[..., Fetched]
ALICE = "alice@example.com"
BOB = "bob@example.com"
NASTY_NOTES = (
    'Escalate: call +1 555 0100, then page; if silent, "wake" the lead.\n'
    "Path: C:\\oncall\\runbook;v2\\n (that backslash-n is literal)\n"
    "\n"
    "Second paragraph, with a tab\there and a trailing comma,"
)


def check_utc_only(body: bytes) -> None:
    """Instants are UTC (Z), so no VTIMEZONE or TZID is needed or present."""
    text = body.decode()
    assert "TZID" not in text
    assert "VTIMEZONE" not in text
    stamps = re.findall(r"^(?:DTSTART|DTEND|DTSTAMP|CREATED|LAST-MODIFIED):(.*)\r$", text, re.M)
    assert stamps
    assert all(re.fullmatch(r"\d{8}T\d{6}Z", s) for s in stamps)


def test_non_ascii_names(world: World, fetch: Fetch) -> None:
    """Non-ASCII person and schedule names survive both parsers, in title and calendar name."""
    world.schedule("sud", "Zahlungsverkehr — Süd/Øst (日本, Алиса)")
    world.user(ALICE, "Zoë Ångström-Ørsted 李小龍")
    uid = world.shift("sud", "s", ALICE, TODAY + timedelta(days=1, hours=8))
    got = fetch(world.path(ALICE))
    check_utc_only(got.body)
    assert got.feed.text("X-WR-CALNAME") == "On-call — Zoë Ångström-Ørsted 李小龍"
    assert str(got.feed.event(uid)["SUMMARY"]) == (
        "On-call · Zahlungsverkehr — Süd/Øst (日本, Алиса)"
    )


def test_emoji(world: World, fetch: Fetch) -> None:
    """Four-octet characters and ZWJ sequences fold between characters and come back whole."""
    world.schedule("fire", "🚨 Pager 🔥 " + "👩🏽‍💻" * 12)
    world.user(ALICE, "Alice 🦊")
    uid = world.shift("fire", "e", ALICE, TODAY + timedelta(hours=20), notes="☎️ 👩🏽‍💻 " * 40)
    got = fetch(world.path(ALICE))
    event = got.feed.event(uid)
    assert str(event["SUMMARY"]) == "On-call · 🚨 Pager 🔥 " + "👩🏽‍💻" * 12
    assert ("☎️ 👩🏽‍💻 " * 40).strip() in str(event["DESCRIPTION"])
    assert got.feed.text("NAME") == "On-call — Alice 🦊"


def test_commas_semicolons_backslashes_and_newlines_in_notes(world: World, fetch: Fetch) -> None:
    """TEXT escaping: the notes come back exactly, line breaks and all."""
    world.schedule("payments", "Payments, EU; \\ main")
    world.user(ALICE, "O'Neil, Alice; Jr. \\")
    uid = world.shift("payments", "n", ALICE, TODAY + timedelta(days=2), notes=NASTY_NOTES)
    got = fetch(world.path(ALICE))
    event = got.feed.event(uid)
    assert f"\n\n{NASTY_NOTES}\n\n" in str(event["DESCRIPTION"])
    assert str(event["SUMMARY"]) == "On-call · Payments, EU; \\ main"
    assert got.feed.text("X-WR-CALNAME") == "On-call — O'Neil, Alice; Jr. \\"
    assert b"\\, EU\\; \\\\ main" in got.body


def test_200_character_names(world: World, fetch: Fetch) -> None:
    """The longest allowed schedule and display names fold over several lines."""
    schedule_name = ("Infrastructure-Platform-Reliability-" * 6)[:199] + "Ω"
    display_name = "É" * 200
    assert len(schedule_name) == len(display_name) == 200
    world.schedule("infra", schedule_name)
    world.user(ALICE, display_name)
    uid = world.shift("infra", "long", ALICE, TODAY + timedelta(days=1))
    got = fetch(world.path(ALICE))
    assert str(got.feed.event(uid)["SUMMARY"]) == f"On-call · {schedule_name}"
    assert got.feed.text("NAME") == f"On-call — {display_name}"


@pytest.mark.parametrize(
    ("zone", "local_start", "local_end", "hours"),
    [
        ("Europe/Berlin", (2026, 3, 28, 9), (2026, 3, 30, 9), 47),  # spring forward
        ("Europe/Berlin", (2026, 10, 24, 9), (2026, 10, 26, 9), 49),  # fall back
        ("America/New_York", (2026, 3, 7, 18), (2026, 3, 9, 6), 35),
        ("Australia/Lord_Howe", (2026, 4, 4, 12), (2026, 4, 5, 12), 24.5),  # half an hour
    ],
    ids=["berlin-spring", "berlin-autumn", "new-york-spring", "lord-howe-half-hour"],
)
def test_shifts_across_dst_changes(
    world: World, fetch: Fetch, zone: str, local_start: tuple[int, ...],
    local_end: tuple[int, ...], hours: float,
) -> None:  # fmt: skip
    """Instants are exact across a DST change; the text shows both offsets."""
    start = datetime(*local_start, tzinfo=ZoneInfo(zone))
    end = datetime(*local_end, tzinfo=ZoneInfo(zone))
    starts_at, ends_at = start.astimezone(UTC), end.astimezone(UTC)
    assert ends_at - starts_at == timedelta(hours=hours)
    world.schedule("dst", "DST", zone=zone)
    world.user(ALICE, "Alice")
    uid = world.shift("dst", "d", ALICE, starts_at, ends_at - starts_at)
    got = fetch(world.path(ALICE) + "?past_days=366&future_days=366")
    check_utc_only(got.body)
    event = got.feed.event(uid)
    assert (event.decoded("DTSTART"), event.decoded("DTEND")) == (starts_at, ends_at)
    assert start.tzname() != end.tzname()
    description = str(event["DESCRIPTION"])
    assert f"{start:%H:%M} {start.tzname()}\nto " in description
    assert f"{end:%H:%M} {end.tzname()} ({zone})" in description


def test_overnight_and_multi_week_shifts(world: World, fetch: Fetch) -> None:
    """22:00-06:00 local, three weeks, and the longest allowed (31 days) shift."""
    berlin = ZoneInfo("Europe/Berlin")
    world.schedule("payments", "Payments")
    world.user(ALICE, "Alice")
    night = datetime(2026, 3, 12, 22, tzinfo=berlin).astimezone(UTC)
    lengths = {
        "night": (night, timedelta(hours=8)),
        "three-weeks": (TODAY + timedelta(days=20), timedelta(weeks=3)),
        "month": (TODAY + timedelta(days=60), timedelta(days=31)),
    }
    uids = {
        name: world.shift("payments", name, ALICE, start, length)
        for name, (start, length) in lengths.items()
    }
    got = fetch(world.path(ALICE))
    for name, (start, length) in lengths.items():
        event = got.feed.event(uids[name])
        assert (event.decoded("DTSTART"), event.decoded("DTEND")) == (start, start + length)
    text = str(got.feed.event(uids["night"])["DESCRIPTION"])
    assert "From Thu 12 Mar 2026 22:00 CET\nto Fri 13 Mar 2026 06:00 CET" in text


def test_cancelled_shifts(world: World, fetch: Fetch) -> None:
    """Tombstones render as STATUS:CANCELLED with their higher SEQUENCE beside live events."""
    world.schedule("payments", "Payments")
    world.user(ALICE, "Alice")
    live = world.shift("payments", "live", ALICE, TODAY + timedelta(days=1))
    gone = world.shift("payments", "gone", ALICE, TODAY + timedelta(days=2), notes="x")
    world.shift("payments", "gone", ALICE, TODAY + timedelta(days=2), notes="changed")
    world.delete("payments", "gone")
    got = fetch(world.path(ALICE))
    statuses = {uid: (str(e["STATUS"]), int(e["SEQUENCE"])) for uid, e in got.feed.events.items()}
    assert statuses == {live: ("CONFIRMED", 1), gone: ("CANCELLED", 3)}
    assert "This shift was cancelled." in str(got.feed.event(gone)["DESCRIPTION"])


def test_empty_feed(world: World, fetch: Fetch) -> None:
    """No shifts: still a well-formed calendar with its name."""
    world.user(ALICE, "Alice")
    got = fetch(world.path(ALICE))
    assert got.feed.events == {}
    assert got.feed.text("NAME") == "On-call — Alice"


def test_everything_at_once_gzipped(world: World, fetch: Fetch) -> None:
    """All of the above in one feed, fetched gzipped, with control characters thrown in."""
    world.schedule("a", "Zahlungen 🚨, Süd; \\ " + "x" * 150, zone="Europe/Berlin")
    world.schedule("b", "Night\x07 watch", zone="America/New_York", url="https://w.example/a b")
    world.user(ALICE, "Zoë 🦊, Jr.;\\")
    world.user("bob@example.com", "Bob")
    berlin = ZoneInfo("Europe/Berlin")
    spring = datetime(2026, 3, 28, 9, tzinfo=berlin).astimezone(UTC)
    world.shift("a", "dst", ALICE, spring, timedelta(hours=47), notes=NASTY_NOTES)
    world.shift("a", "handover", "bob@example.com", spring + timedelta(hours=47))
    world.shift("b", "night", ALICE, TODAY + timedelta(hours=2), notes="bell\x07 and\r\nCRLF")
    world.shift("b", "weeks", ALICE, TODAY + timedelta(days=9), timedelta(weeks=3))
    world.delete("b", "weeks")
    got = fetch(world.path(ALICE), headers={"Accept-Encoding": "gzip"})
    assert got.response.headers["Content-Encoding"] == "gzip"
    assert len(got.feed.events) == 3
    assert b"\x07" not in got.body
    check_utc_only(got.body)
    urls = {str(e["URL"]) for e in got.feed.events.values()}
    assert "https://w.example/a%20b" in urls


def _feed_path(world: World, feed: Feed) -> str:
    with world.app.app_context():
        return feed_links(feed).https.removeprefix(world.app.config["BASE_URL"])


def test_a_schedule_feed_with_reminder_cancellation_and_override(
    world: World, fetch: Fetch
) -> None:
    """A whole schedule's feed: everyone's shifts titled by person, the owner's alone with a
    VALARM, a cancelled shift marked in its title, an override naming its hand-overs."""
    world.schedule("pay", "Payments API")
    alice = world.user(ALICE, "Alice Ångström")
    world.user(BOB, "Bob Stone")
    start = TODAY + timedelta(days=1, hours=9)
    mine = world.shift("pay", "a1", ALICE, start)
    bobs = world.shift("pay", "b1", BOB, start + timedelta(hours=8))
    gone = world.shift("pay", "a2", ALICE, start + timedelta(hours=16))
    world.delete("pay", "a2")
    cover = world.shift("pay", "o1", BOB, start + timedelta(hours=2), timedelta(hours=2),
                        role="override")  # fmt: skip
    team = create_feed(
        world.session, alice,
        FeedSettings("Team", reminder_minutes=15, handoff_reminder_minutes=10), TODAY,
        world.schedules["pay"],
    )  # fmt: skip
    world.session.commit()
    got = fetch(_feed_path(world, team))
    check_utc_only(got.body)
    assert got.feed.text("X-WR-CALNAME") == "On-call — Payments API"
    events = got.feed.events
    assert str(events[f"schedule-{mine}"]["SUMMARY"]) == "Alice Ångström · primary"
    assert str(events[f"schedule-{bobs}"]["SUMMARY"]) == "Bob Stone · primary"
    assert str(events[f"schedule-{gone}"]["SUMMARY"]) == "Cancelled: Alice Ångström · primary"
    assert str(events[f"schedule-{gone}"]["STATUS"]) == "CANCELLED"
    override = events[f"schedule-{cover}"]
    assert str(override["SUMMARY"]) == "Bob Stone · override"
    assert "Takes over from Alice Ångström." in str(override["DESCRIPTION"])
    assert "Hands over to Alice Ångström." in str(override["DESCRIPTION"])
    alarms = {uid: len(event.walk("VALARM")) for uid, event in events.items()}
    assert alarms == {
        f"schedule-{mine}": 2, f"schedule-{bobs}": 0, f"schedule-{gone}": 0,
        f"schedule-{cover}": 0,
    }  # fmt: skip
    start_alarm, handoff_alarm = events[f"schedule-{mine}"].walk("VALARM")
    assert start_alarm["TRIGGER"].dt == -timedelta(minutes=15)
    assert handoff_alarm["TRIGGER"].dt == -timedelta(minutes=10)
    assert handoff_alarm["TRIGGER"].params["RELATED"] == "END"


def test_a_second_named_feed_has_options_of_its_own(world: World, fetch: Fetch) -> None:
    """A person's second feed: its own reminder and busy time, the first one unchanged."""
    world.schedule("pay", "Payments API")
    alice = world.user(ALICE, "Alice")
    uid = world.shift("pay", "a1", ALICE, TODAY + timedelta(days=1, hours=9))
    phone = create_feed(
        world.session, alice,
        FeedSettings("Phone", reminder_minutes=60, handoff_reminder_minutes=0, busy=True), TODAY,
    )  # fmt: skip
    world.session.commit()
    second = fetch(_feed_path(world, phone), "phone").feed.event(uid)
    before_start, at_handoff = second.walk("VALARM")
    assert before_start["TRIGGER"].dt == -timedelta(hours=1)
    assert (at_handoff["TRIGGER"].dt, at_handoff["TRIGGER"].params["RELATED"]) == (
        timedelta(0), "END"
    )  # fmt: skip
    assert str(second["TRANSP"]) == "OPAQUE"
    first = fetch(world.path(ALICE), "first").feed.event(uid)
    assert first.walk("VALARM") == []
    assert str(first["TRANSP"]) == "TRANSPARENT"
