"""The settings page's plain-value builders: days and times, links, connection boxes."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from types import SimpleNamespace
from typing import Any
from urllib.parse import parse_qs, urlsplit
from zoneinfo import ZoneInfo

import pytest

from oncal_feed.feeds.tokens import FeedLinks
from oncal_feed.web import page

BERLIN = ZoneInfo("Europe/Berlin")
# Saturday 28 March 2026, 12:00 UTC: Berlin moves its clocks forward the next night.
NOW = datetime(2026, 3, 28, 12, tzinfo=UTC)


def shift(start: datetime, hours: float, **fields: Any) -> Any:
    """A stand-in for a Shift row with its schedule loaded (only what the page reads)."""
    values = {
        "starts_at": start,
        "ends_at": start + timedelta(hours=hours),
        "role": "primary",
        "notes": "",
        "handover_from": None,
        "handover_to": None,
        "also_on_call": None,
        "schedule": SimpleNamespace(name="Payments"),
        **fields,
    }
    return SimpleNamespace(**values)


def test_days_are_local_and_survive_a_clock_change() -> None:
    shifts = [
        # Sat 20:00 to Sun 08:00 Berlin: 11 real hours, across the switch to summer time.
        shift(datetime(2026, 3, 28, 19, tzinfo=UTC), 11),
        # Sun 23:30 UTC is already Monday in Berlin.
        shift(datetime(2026, 3, 29, 23, 30, tzinfo=UTC), 1, role="shadow"),
    ]
    days = page.upcoming_days(shifts, BERLIN, NOW)
    assert [(d.label, d.iso) for d in days] == [
        ("Today", "2026-03-28"),
        ("Mon 30 Mar", "2026-03-30"),
    ]
    assert days[0].shifts[0].when == "20:00 \u2013 Sun 29 Mar, 08:00"
    assert days[1].shifts[0].when == "01:30\u201302:30"
    assert days[1].shifts[0].role == "Shadow"


def test_a_shift_under_way_is_listed_today_since_its_start() -> None:
    days = page.upcoming_days([shift(NOW - timedelta(days=2), 72)], BERLIN, NOW)
    assert days[0].label == "Today"
    line = days[0].shifts[0]
    assert line.ongoing
    assert line.when == "since Thu 26 Mar, 13:00 \u2013 Sun 29 Mar, 14:00"


def test_tomorrow_and_other_years_are_named() -> None:
    late = datetime(2026, 12, 31, 12, tzinfo=UTC)
    days = page.upcoming_days(
        [shift(late + timedelta(days=1), 2), shift(late + timedelta(days=2), 2)], BERLIN, late
    )
    assert [d.label for d in days] == ["Tomorrow", "Sat 2 Jan 2027"]


@pytest.mark.parametrize(
    ("delta", "phrase"),
    [
        (timedelta(seconds=5), "just now"),
        (timedelta(minutes=1), "1 minute ago"),
        (timedelta(minutes=59), "59 minutes ago"),
        (timedelta(hours=2, minutes=5), "2 hours ago"),
        (timedelta(days=3), "3 days ago"),
        (-timedelta(minutes=5), "in 5 minutes"),
        (-timedelta(seconds=10), "in under a minute"),
    ],
)
def test_moments_read_naturally(delta: timedelta, phrase: str) -> None:
    found = page.moment(NOW - delta, BERLIN, NOW)
    assert found is not None
    assert found.relative == phrase


def test_moment_text_is_local() -> None:
    found = page.moment(datetime(2026, 3, 27, 22, 5, tzinfo=UTC), BERLIN, NOW)
    assert found is not None
    assert found.text == "Fri 27 Mar, 23:05"
    assert found.iso == "2026-03-27T22:05:00+00:00"
    assert page.moment(None, BERLIN, NOW) is None


def test_subscribe_links_encode_the_feed_url() -> None:
    links = FeedLinks(
        https="https://oncal.example/feeds/a.b-c_d.ics",
        webcal="webcal://oncal.example/feeds/a.b-c_d.ics",
    )
    found = page.subscribe_links(links, "On-call — Kim & Co")
    google = urlsplit(found.google)
    assert google.netloc == "calendar.google.com"
    assert parse_qs(google.query) == {"cid": [links.webcal]}
    assert "webcal%3A%2F%2F" in found.google
    for url, host in ((found.outlook_personal, "outlook.live.com"),
                      (found.outlook_work, "outlook.office.com")):  # fmt: skip
        parts = urlsplit(url)
        assert parts.netloc == host
        assert parse_qs(parts.query) == {"url": [links.https], "name": ["On-call — Kim & Co"]}
        assert "&name=On-call%20%E2%80%94%20Kim%20%26%20Co" in url


def connection(**fields: Any) -> Any:
    """A stand-in for a CalendarConnection row."""
    values = {
        "id": 1,
        "provider": "google",
        "status": "active",
        "account_email": None,
        "calendar_name": "On-call shifts",
        "last_sync_at": NOW - timedelta(minutes=3),
        "last_success_at": NOW - timedelta(minutes=3),
        "next_retry_at": None,
        "last_created": 2,
        "last_updated": 1,
        "last_deleted": 0,
        "last_error": None,
        "dirty_since": None,
        "busy": False,
        "reminder_minutes": None,
        "schedule_keys": None,
        **fields,
    }
    return SimpleNamespace(**values)


def test_connection_boxes_cover_every_state() -> None:
    configured = {"google": True, "microsoft": False}
    cards = page.connection_cards(configured, [], BERLIN, NOW)
    assert [(c.provider, c.state) for c in cards] == [
        ("google", "none"),
        ("microsoft", "unavailable"),
    ]
    rows = [
        connection(status="error", last_error="Google answered 500",
                   next_retry_at=NOW + timedelta(minutes=4)),
        connection(id=2, provider="microsoft", status="needs_reauth", last_error="revoked",
                   dirty_since=NOW),
    ]  # fmt: skip
    google, microsoft = page.connection_cards(
        {"google": True, "microsoft": True}, rows, BERLIN, NOW
    )
    assert (google.state, google.last_error) == ("error", "Google answered 500")
    assert google.next_retry is not None
    assert google.next_retry.relative == "in 4 minutes"
    assert google.last_sync is not None
    assert google.last_sync.relative == "3 minutes ago"
    assert (google.created, google.updated, google.deleted) == (2, 1, 0)
    assert microsoft.state == "needs_reauth"
    assert microsoft.connected
    assert not microsoft.pending  # paused: nothing will sync until reconnected


def test_an_active_connection_hides_an_old_error_and_shows_a_pending_change() -> None:
    (card, _) = page.connection_cards(
        {"google": True, "microsoft": False},
        [connection(last_error="old", dirty_since=NOW, last_sync_at=None)],
        BERLIN,
        NOW,
    )
    assert card.last_error is None
    assert card.pending
    assert card.never_synced


def test_a_card_lists_its_schedule_pushes_and_offers_the_other_schedules() -> None:
    """Each push says its calendar and state; the choice leaves out what is pushed."""
    payments = SimpleNamespace(key="payments", name="Payments")
    search = SimpleNamespace(key="search", name="Search")
    pushes = {
        1: [
            (connection(id=5, calendar_name="Payments on-call", dirty_since=NOW), payments),
            (connection(id=6, calendar_name="Search on-call", status="needs_reauth",
                        last_error="revoked"), search),
        ]
    }  # fmt: skip
    followable = [("checkout", "Checkout"), ("payments", "Payments"), ("search", "Search")]
    (card, _) = page.connection_cards(
        {"google": True, "microsoft": False}, [connection()], BERLIN, NOW, pushes, followable
    )
    first, second = card.pushes
    assert (first.schedule_key, first.calendar_name, first.state) == (
        "payments", "Payments on-call", "active"
    )  # fmt: skip
    assert first.pending
    assert first.last_sync is not None
    assert first.last_sync.relative == "3 minutes ago"
    assert first.last_error is None
    assert (second.state, second.last_error, second.pending) == ("needs_reauth", "revoked", False)
    assert card.push_choices == (("checkout", "Checkout"),)
    # The page watches a push with changes waiting, and one whose first sync is not done.
    assert first.watched
    assert not second.watched


def test_a_push_whose_first_sync_is_not_done_is_watched() -> None:
    """Just added (or its first attempt fell short): the page polls until it syncs."""
    payments = SimpleNamespace(key="payments", name="Payments")
    fresh = connection(id=5, last_sync_at=None, last_success_at=None)
    synced = connection(id=6)
    (card, _) = page.connection_cards(
        {"google": True, "microsoft": False}, [connection()], BERLIN, NOW,
        {1: [(fresh, payments), (synced, payments)]}, [],
    )  # fmt: skip
    assert [push.watched for push in card.pushes] == [True, False]


def test_sync_summaries_speak_per_calendar() -> None:
    result = {
        "connections": [
            {"provider": "google", "outcome": "ok", "created": 3, "updated": 0, "deleted": 1},
            {"provider": "microsoft", "outcome": "failed", "error": "Graph answered 503."},
        ]
    }
    assert page.sync_summary(result) == [
        ("Google Calendar is up to date (3 added, 0 changed, 1 removed).", "success"),
        ("Outlook could not be synced. Graph answered 503.", "error"),
    ]
    push = {"provider": "google", "schedule_calendar": "Payments on-call", "outcome": "ok"}
    assert page.sync_summary({"connections": [push]}) == [
        ("Google Calendar “Payments on-call” is up to date (0 added, 0 changed, 0 removed).",
         "success")
    ]  # fmt: skip
    assert page.sync_summary({"connections": []}) == [
        ("There is no connected calendar to sync.", "info")
    ]
    assert page.sync_summary(
        {"connections": [{"provider": "google", "outcome": "needs_reauth"}]}
    ) == [("Google Calendar needs you to reconnect it.", "error")]


def test_time_zones_offered_are_the_ones_the_api_accepts() -> None:
    zones = page.time_zone_names()
    assert "Europe/Berlin" in zones
    assert "UTC" in zones
    assert list(zones) == sorted(zones)


def test_the_client_kind_is_named() -> None:
    assert page.client_label("apple") == "Apple Calendar"
    assert page.client_label("something new") == "another app"
    assert page.client_label(None) is None


def test_on_call_now_says_until_the_end_of_back_to_back_shifts() -> None:
    """A week split into daily shifts is one stretch on call: "until" is its end."""
    start = NOW - timedelta(hours=3)
    days = [shift(start + timedelta(days=n), 24) for n in range(3)]
    status = page.on_call_status(days, BERLIN, NOW)
    assert status is not None
    assert status.now
    assert (status.schedule, status.role, status.more) == ("Payments", "Primary", 0)
    assert status.until.text == "Tue 31 Mar, 11:00"  # three days on, in summer time
    assert status.until.relative == "in 2 days"


def test_on_call_now_counts_other_shifts_under_way() -> None:
    both = [
        shift(NOW - timedelta(hours=1), 4),
        shift(NOW - timedelta(hours=2), 10, role="secondary"),
    ]
    status = page.on_call_status(both, BERLIN, NOW)
    assert status is not None
    assert (status.role, status.more, status.until.text) == ("Secondary", 1, "Sat 28 Mar, 21:00")


def test_next_shift_when_not_on_call_and_nothing_when_none_is_ahead() -> None:
    later = shift(NOW + timedelta(days=3), 8, role="override")
    status = page.on_call_status([later], BERLIN, NOW)
    assert status is not None
    assert not status.now
    assert (status.role, status.starts.text, status.starts.relative) == (
        "Override",
        "Tue 31 Mar, 14:00",
        "in 3 days",
    )
    assert page.on_call_status([], BERLIN, NOW) is None
    assert page.on_call_status([shift(NOW - timedelta(hours=9), 8)], BERLIN, NOW) is None


def test_a_daily_run_is_one_line_and_a_broken_one_is_not() -> None:
    """Eleven daily 07:00-15:00 shifts are one line saying how many more and until when;
    a day skipped, another time or another schedule starts a new line."""
    first = datetime(2026, 3, 29, 5, tzinfo=UTC)  # Sun 07:00 CEST
    daily = [shift(first + timedelta(days=n), 8) for n in range(11)]
    other = shift(first + timedelta(days=1, hours=10), 2, schedule=SimpleNamespace(name="Search"))
    two = [shift(first + timedelta(days=n, hours=-3), 1, role="shadow") for n in (0, 1)]
    days = page.upcoming_days(sorted([*daily, other, *two], key=lambda s: s.starts_at), BERLIN, NOW)
    lines = [
        (day.label, line.schedule, line.when, line.repeats) for day in days for line in day.shifts
    ]
    assert lines == [
        ("Tomorrow", "Payments", "04:00\u201305:00", None),
        ("Tomorrow", "Payments", "07:00\u201315:00", "daily · 10 more, until Wed 8 Apr"),
        ("Mon 30 Mar", "Payments", "04:00\u201305:00", None),  # two alike are shown as two
        ("Mon 30 Mar", "Search", "17:00\u201319:00", None),
    ]
    gap = [shift(first + timedelta(days=n), 8) for n in (0, 1, 2, 4, 5, 6)]
    days = page.upcoming_days(gap, BERLIN, NOW)
    assert [line.repeats for day in days for line in day.shifts] == [
        "daily · 2 more, until Tue 31 Mar",
        "daily · 2 more, until Sat 4 Apr",
    ]


def test_colleagues_on_call_are_listed_and_split_a_daily_run() -> None:
    """Each line names who else is on call, role as the page spells it; five days alike
    but for the colleague beside the last are a run and a line, not one run."""
    first = datetime(2026, 3, 29, 5, tzinfo=UTC)
    bob = [{"name": "Bob", "role": "secondary", "email": "bob@example.com"}]
    cem = [{"name": "Cem", "role": "escalation", "email": ""}]
    daily = [
        shift(first + timedelta(days=n), 8, also_on_call=who)
        for n, who in enumerate([bob, bob, bob, bob, cem])
    ]
    lines = [line for day in page.upcoming_days(daily, BERLIN, NOW) for line in day.shifts]
    assert [(line.colleagues, line.repeats) for line in lines] == [
        ((("Bob", "Secondary", "bob@example.com"),), "daily · 3 more, until Wed 1 Apr"),
        ((("Cem", "Escalation", ""),), None),
    ]


def test_the_month_view_marks_local_days_on_call() -> None:
    """March 2026 in Berlin, Monday first: a night shift marks both days it touches, a
    shift ending at midnight only its own, and one from last month its days in this one."""
    night = shift(datetime(2026, 3, 9, 21, tzinfo=UTC), 10)  # Mon 22:00 - Tue 08:00 local
    evening = shift(datetime(2026, 3, 20, 15, tzinfo=UTC), 8,  # Fri 16:00 - 24:00 local
                    schedule=SimpleNamespace(name="Search"))  # fmt: skip
    spill = shift(datetime(2026, 2, 27, 23, tzinfo=UTC), 48)  # Sat 28 Feb - Mon 2 Mar 00:00
    month = page.month_view([spill, night, evening], BERLIN, NOW)
    assert month.title == "March 2026"
    assert month.weekdays[0] == "Mon"
    days = {cell.day: cell for week in month.weeks for cell in week if cell is not None}
    assert len(days) == 31
    assert month.weeks[0][:6] == [None] * 6  # 1 March 2026 is a Sunday
    assert all(len(week) == 7 for week in month.weeks)
    on = {number: cell.schedules for number, cell in days.items() if cell.schedules}
    assert on == {1: ("Payments",), 9: ("Payments",), 10: ("Payments",), 20: ("Search",)}
    assert [n for n, cell in days.items() if cell.today] == [28]
    assert days[27].past
    assert not days[29].past


def test_month_bounds_are_local_midnights() -> None:
    start, end = page.month_bounds(BERLIN, NOW)
    assert (start, end) == (
        datetime(2026, 2, 28, 23, tzinfo=UTC), datetime(2026, 3, 31, 22, tzinfo=UTC),
    )  # fmt: skip
