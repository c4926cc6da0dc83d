"""The settings page: what it shows, and its forms (rotate, options, time zone)."""

from __future__ import annotations

import html
import re
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from urllib.parse import parse_qs, urlsplit

import pytest
from flask import Flask
from flask.testing import FlaskClient
from freezegun import freeze_time
from sqlalchemy import select
from sqlalchemy.orm import Session

from oncal_feed import accounts
from oncal_feed.db import get_database, utcnow
from oncal_feed.models import CalendarConnection, Feed, User
from oncal_feed.notify import add_listener
from oncal_feed.validation import UserInput
from tests.admin.conftest import add_connection
from tests.fakes.fixtures import app_path
from tests.web.conftest import add_shift, csrf_token

# Tuesday 10 March 2026, 08:00 UTC (09:00 in Berlin).
NOW = datetime(2026, 3, 10, 8, tzinfo=UTC)


@pytest.fixture
def clock(app: Flask) -> Iterator[None]:
    """Freeze time at NOW, once the app (and the C extensions it imports) is loaded.

    freezegun's `tick` keeps time moving from NOW, for session and token timestamps.
    """
    with freeze_time(NOW, tick=True):
        yield


def feed_url(page: str, suffix: str = "") -> str:
    """The address of the page's first feed (or the one with `suffix`: "-2" the second)."""
    found = re.search(rf'id="feed-url{suffix}"[^>]* value="([^"]+)"', page)
    assert found is not None
    return html.unescape(found.group(1))


def link(page: str, element_id: str) -> str:
    """The href of the element with this id."""
    found = re.search(rf'id="{element_id}" href="([^"]+)"', page)
    assert found is not None, element_id
    return html.unescape(found.group(1))


# -------------------------------------------------------------------- content


def test_the_page_lists_the_next_two_weeks_by_local_day(
    clock: None, app: Flask, member: User, member_client: FlaskClient
) -> None:
    # Under way now (since yesterday 22:00 Berlin), later today, next week, and too late.
    add_shift(app, member.email, NOW - timedelta(hours=11), timedelta(hours=12))
    add_shift(
        app, member.email, NOW + timedelta(hours=9), timedelta(hours=3), role="secondary",
        schedule="checkout", schedule_name="Checkout",
    )  # fmt: skip
    add_shift(app, member.email, NOW + timedelta(days=7), timedelta(days=7))
    add_shift(app, member.email, NOW + timedelta(days=15))
    page = member_client.get("/settings").text

    assert "Times in Europe/Berlin." in page
    assert page.count('class="day"') == 2
    today, next_week = re.findall(r'<time datetime="([\d-]+)">([^<]+)</time>', page)[:2]
    assert today == ("2026-03-10", "Today")
    assert next_week == ("2026-03-17", "Tue 17 Mar")
    assert "since Mon 9 Mar, 22:00 \u2013 10:00" in page
    assert "On call now" in page
    assert "18:00\u201321:00" in page
    assert "<strong>Checkout</strong> · Secondary" in page
    assert "09:00 \u2013 Tue 24 Mar, 09:00" in page
    assert "Wed 25 Mar" not in page


def test_hand_overs_and_notes_are_shown(
    clock: None, app: Flask, member: User, member_client: FlaskClient
) -> None:
    with get_database(app).session() as session:
        accounts.create_user(session, UserInput("sam@example.com", "Sam", "UTC"), utcnow())
    add_shift(app, "sam@example.com", NOW, timedelta(days=1), external_id="a")
    add_shift(app, member.email, NOW + timedelta(days=1), timedelta(days=1), external_id="b",
              notes="Bridge: +49 30 1234")  # fmt: skip
    add_shift(app, "sam@example.com", NOW + timedelta(days=2), timedelta(days=1), external_id="c")
    page = member_client.get("/settings").text
    assert "Takes over from Sam · Hands over to Sam" in page
    assert "Bridge: +49 30 1234" in page


def status_line(page: str) -> str:
    """The first line's text, tags and runs of white space removed."""
    found = re.search(r'<p class="status[^"]*" id="on-call-status">(.*?)</p>', page, re.S)
    assert found is not None
    return " ".join(html.unescape(re.sub(r"<[^>]+>", "", found.group(1))).split())


def test_the_first_line_says_on_call_now_until_when_then_the_feed_comes(
    clock: None, app: Flask, member: User, member_client: FlaskClient
) -> None:
    """On call now, until the end of back-to-back shifts; the feed card comes before the
    list of shifts, so the address is on the first screen."""
    add_shift(app, member.email, NOW - timedelta(hours=1), timedelta(days=1), external_id="a")
    add_shift(app, member.email, NOW + timedelta(hours=23), timedelta(days=2), external_id="b")
    page = member_client.get("/settings").text
    assert status_line(page) == "On call now · Payments, until Fri 13 Mar, 08:00 (in 2 days)"
    assert page.index('id="on-call-status"') < page.index('id="feed"') < page.index('id="shifts"')


def test_the_first_line_names_the_next_shift_even_beyond_the_fortnight(
    clock: None, app: Flask, member: User, member_client: FlaskClient
) -> None:
    add_shift(app, member.email, NOW + timedelta(days=20, hours=2), role="secondary")
    page = member_client.get("/settings").text
    assert status_line(page) == "Next · Payments (Secondary), Mon 30 Mar, 12:00 (in 20 days)"
    assert "You have no on-call shifts in the next two weeks." in page


def test_an_empty_fortnight_says_so(member_client: FlaskClient) -> None:
    page = member_client.get("/settings").text
    assert "You have no on-call shifts in the next two weeks." in page
    assert status_line(page) == "You have no on-call shifts ahead."


def test_user_data_is_escaped_everywhere(app: Flask, member_client: FlaskClient) -> None:
    evil = '<script>alert("x")</script>'
    with get_database(app).session() as session:
        user = accounts.get_user_by_email(session, "kim@example.com")
        user.display_name = f"Kim {evil}"
    add_shift(
        app, "kim@example.com", utcnow() + timedelta(hours=1), schedule="evil",
        schedule_name=f"Ops {evil}", notes=f"call {evil}",
    )  # fmt: skip
    page = member_client.get("/settings").text
    assert evil not in page
    assert "&lt;script&gt;alert(&#34;x&#34;)&lt;/script&gt;" in page
    # The calendar name in the Outlook link is URL-encoded, not raw.
    assert "%3Cscript%3E" in link(page, "add-outlook")


def test_the_feed_links_and_refresh_notes(member: User, member_client: FlaskClient) -> None:
    page = member_client.get("/settings").text
    https = feed_url(page)
    assert https.startswith("https://oncal.example.test/feeds/")
    assert https.endswith(".ics")
    webcal = "webcal://" + https.removeprefix("https://")
    assert link(page, "add-webcal") == webcal

    google = urlsplit(link(page, "add-google"))
    assert (google.scheme, google.netloc, google.path) == (
        "https",
        "calendar.google.com",
        "/calendar/r",
    )
    assert parse_qs(google.query) == {"cid": [webcal]}

    for element_id, host in (("add-outlook", "outlook.live.com"),
                             ("add-outlook-work", "outlook.office.com")):  # fmt: skip
        outlook = urlsplit(link(page, element_id))
        assert (outlook.netloc, outlook.path) == (host, "/calendar/0/addfromweb")
        assert parse_qs(outlook.query) == {"url": [https], "name": ["On-call — Kim Lee"]}

    assert "every 12 to 24 hours" in page
    assert "every few hours" in page
    assert "Apple Calendar" in page
    assert "No calendar app has fetched this feed yet." in page
    assert 'data-copy="feed-url"' in page


def test_the_page_says_when_and_by_what_the_feed_was_fetched(
    member_client: FlaskClient,
) -> None:
    url = feed_url(member_client.get("/settings").text)
    response = member_client.get(app_path(url), headers={"User-Agent": "Google-Calendar-Importer"})
    assert response.status_code == 200
    page = member_client.get("/settings").text
    assert re.search(r"Last fetched <time [^>]+>just now</time> by Google Calendar\.", page)


def test_connect_buttons_are_disabled_with_a_reason_when_not_configured(
    member_client: FlaskClient,
) -> None:
    page = member_client.get("/settings").text
    assert "Google Calendar hasn't been set up on this server" in page
    assert "Outlook hasn't been set up on this server" in page
    assert page.count('disabled aria-describedby="connection-') == 2
    assert 'id="connect-google"' not in page
    assert 'id="sync-now"' not in page
    response = member_client.post(
        "/settings/connect/google", data={"csrf_token": csrf_token(member_client, "/settings")}
    )
    assert response.status_code == 303
    assert "is not set up on this server" in member_client.get("/settings").text


def test_the_page_states_the_rule_for_edits_in_the_connected_calendar(
    member_client: FlaskClient,
) -> None:
    """Users learn that edits and deletions in our calendar are put back, and when."""
    page = member_client.get("/settings").text
    assert 'id="connections-rule"' in page
    assert "if you edit or delete one of its events, it is put back" in page
    assert "at the next daily check, or at once when that shift changes" in page


def test_the_month_view_fills_the_days_on_call(
    clock: None, app: Flask, member: User, member_client: FlaskClient
) -> None:
    """This month at a glance (Berlin time): the days with a shift are marked, by name."""
    add_shift(app, member.email, datetime(2026, 3, 12, 8, tzinfo=UTC), timedelta(hours=8),
              external_id="m1")  # fmt: skip
    page = member_client.get("/settings").text
    assert "Month view: March 2026" in page
    marked = re.findall(
        r'class="month__day month__day--on[^"]*"[^>]*>\s*<time datetime="([^"]+)"', page
    )
    assert marked == ["2026-03-12"]


# ------------------------------------------------------------ feeds: rotate, revoke


def stored_feed(db_session: Session, user: User, public_id: str | None = None) -> Feed:
    """The user's feed (the first one unless `public_id` is given) as stored now."""
    db_session.expire_all()
    feed = db_session.scalar(
        select(Feed).where(Feed.user_id == user.id, Feed.public_id == (public_id or user.public_id))
    )
    assert feed is not None
    return feed


def test_rotate_asks_first_then_kills_the_old_url(member: User, member_client: FlaskClient) -> None:
    old = feed_url(member_client.get("/settings").text)
    assert member_client.get(app_path(old)).status_code == 200
    token = csrf_token(member_client, "/settings")
    action = f"/settings/feeds/{member.public_id}/rotate"

    confirm = member_client.post(action, data={"csrf_token": token})
    assert confirm.status_code == 200
    assert "Replace the address of “My shifts”?" in confirm.text
    assert 'name="confirm" value="yes"' in confirm.text
    assert member_client.get(app_path(old)).status_code == 200  # not yet

    response = member_client.post(action, data={"csrf_token": token, "confirm": "yes"})
    assert response.status_code == 303
    assert response.headers["Location"] == f"/settings#feed-{member.public_id}"
    page = member_client.get("/settings").text
    assert "“My shifts” has a new address." in page
    new = feed_url(page)
    assert new != old
    assert member_client.get(app_path(old)).status_code == 404
    assert member_client.get(app_path(new)).status_code == 200


def create_feed_form(client: FlaskClient, **fields: str | list[str]) -> dict[str, object]:
    """The new-feed form with `fields` filled in."""
    data: dict[str, object] = {"csrf_token": csrf_token(client, "/settings"), "past_days": "30",
                               "future_days": "365", "busy": "0", "reminder": ""}  # fmt: skip
    return data | fields


def test_a_second_feed_has_its_own_url_and_is_revoked_alone(
    member: User, member_client: FlaskClient, db_session: Session
) -> None:
    """Named feeds: created with a name, listed with their own address and fetch line,
    revoked one at a time while the others keep working."""
    first = feed_url(member_client.get("/settings").text)
    response = member_client.post(
        "/settings/feeds", data=create_feed_form(member_client, name=" Phone  ")
    )
    assert response.status_code == 303
    phone = db_session.scalar(select(Feed).where(Feed.user_id == member.id, Feed.name == "Phone"))
    assert phone is not None
    assert response.headers["Location"] == f"/settings#feed-{phone.public_id}"
    page = member_client.get("/settings").text
    assert "Feed “Phone” created" in page
    second = feed_url(page, "-2")
    assert second != first
    assert member_client.get(app_path(second)).status_code == 200
    assert 'id="revoke-2"' in page
    assert 'id="revoke"' in page

    action = f"/settings/feeds/{phone.public_id}/revoke"
    confirm = member_client.post(
        action, data={"csrf_token": csrf_token(member_client, "/settings")}
    )
    assert "Revoke “Phone”?" in confirm.text
    member_client.post(
        action, data={"csrf_token": csrf_token(member_client, "/settings"), "confirm": "yes"}
    )
    page = member_client.get("/settings").text
    assert "“Phone” is revoked" in page
    assert 'id="feed-url-2"' not in page
    assert member_client.get(app_path(second)).status_code == 404
    assert member_client.get(app_path(first)).status_code == 200
    assert 'id="revoke"' not in page  # the last feed stays: replace its address instead


def test_a_feed_needs_a_name(member: User, member_client: FlaskClient, db_session: Session) -> None:
    member_client.post("/settings/feeds", data=create_feed_form(member_client, name="  "))
    assert "Give the feed a name" in member_client.get("/settings").text
    assert len(db_session.scalars(select(Feed).where(Feed.user_id == member.id)).all()) == 1


def test_a_schedule_feed_shows_everyone_and_only_members_may_make_one(
    app: Flask, member: User, member_client: FlaskClient, db_session: Session
) -> None:
    """Someone on a schedule can subscribe to all of it: colleagues' shifts, by name."""
    add_shift(app, member.email, utcnow() + timedelta(days=1), schedule="payments")
    with get_database(app).session() as session:
        accounts.create_user(session, UserInput("ana@example.com", "Ana Lima", "UTC"), utcnow())
    add_shift(app, "ana@example.com", utcnow() + timedelta(days=2), schedule="payments",
              external_id="ana-1")  # fmt: skip
    add_shift(app, "ana@example.com", utcnow() + timedelta(days=2), schedule="search",
              schedule_name="Search", external_id="ana-2")  # fmt: skip
    page = member_client.get("/settings").text
    assert '<option value="payments">Everyone on Payments</option>' in page
    assert 'value="search">Everyone on Search' not in page  # not a member of it

    refused = member_client.post(
        "/settings/feeds", data=create_feed_form(member_client, name="Search team", shows="search")
    )
    assert refused.status_code == 303
    assert "Only people on this schedule" in member_client.get("/settings").text
    member_client.post(
        "/settings/feeds", data=create_feed_form(member_client, name="Team", shows="payments")
    )
    page = member_client.get("/settings").text
    assert "Everyone on Payments" in page
    body = member_client.get(app_path(feed_url(page, "-2"))).text
    assert "SUMMARY:Kim Lee · primary" in body
    assert "SUMMARY:Ana Lima · primary" in body
    assert "Search" not in body
    assert "X-WR-CALNAME:On-call — Payments" in body


# -------------------------------------------------------------------- options


def test_feed_options_are_saved_and_shape_the_feed(
    app: Flask, member: User, member_client: FlaskClient, db_session: Session
) -> None:
    add_shift(app, member.email, utcnow() + timedelta(days=1), schedule="payments")
    add_shift(app, member.email, utcnow() + timedelta(days=2), schedule="checkout",
              schedule_name="Checkout")  # fmt: skip
    page = member_client.get("/settings").text
    assert 'name="schedule" value="checkout"' in page
    assert 'name="schedule" value="payments"' in page

    response = member_client.post(
        f"/settings/feeds/{member.public_id}/options",
        data={
            "csrf_token": csrf_token(member_client, "/settings"),
            "name": "Laptop",
            "past_days": "7",
            "future_days": "90",
            "schedule": ["checkout"],
            "busy": "1",
            "reminder": "30",
            "handoff_reminder": "15",
        },
    )
    assert response.status_code == 303
    assert response.headers["Location"] == f"/settings#feed-{member.public_id}"
    stored = stored_feed(db_session, member)
    assert (stored.name, stored.past_days, stored.future_days) == ("Laptop", 7, 90)
    assert stored.schedule_keys == ["checkout"]
    assert stored.busy is True
    assert (stored.reminder_minutes, stored.handoff_reminder_minutes) == (30, 15)

    page = member_client.get("/settings").text
    assert "Options of “Laptop” saved." in page
    assert "Your Checkout shifts" in page
    assert re.search(r'value="checkout"[^>]*checked', page)
    assert not re.search(r'value="payments"[^>]*checked', page)
    feed = member_client.get(app_path(feed_url(page))).text
    assert "Checkout" in feed
    assert "Payments" not in feed
    assert "TRANSP:OPAQUE" in feed
    assert "TRIGGER:-PT30M" in feed
    assert "TRIGGER;RELATED=END:-PT15M" in feed
    assert '<option value="30" selected>30 minutes before</option>' in page
    assert '<option value="15" selected>15 minutes before it ends</option>' in page


@pytest.mark.parametrize(
    ("past", "future"),
    [("-1", "30"), ("7", "0"), ("x", "30"), ("7", "99999"), ("٣", "30"), ("9" * 5000, "30")],
)
def test_bad_option_values_are_refused(
    member: User, member_client: FlaskClient, db_session: Session, past: str, future: str
) -> None:
    token = csrf_token(member_client, "/settings")
    data = {"csrf_token": token, "past_days": past, "future_days": future}
    response = member_client.post(f"/settings/feeds/{member.public_id}/options", data=data)
    assert response.status_code == 303
    assert "Choose from" in member_client.get("/settings").text
    stored = stored_feed(db_session, member)
    assert (stored.past_days, stored.future_days) == (30, 365)


@pytest.mark.parametrize("field", ["reminder", "handoff_reminder"])
@pytest.mark.parametrize("reminder", ["-5", "2881", "soon", "15.5"])
def test_a_bad_reminder_is_refused_and_changes_nothing(
    member: User, member_client: FlaskClient, db_session: Session, field: str, reminder: str
) -> None:
    token = csrf_token(member_client, "/settings")
    data = {"csrf_token": token, "past_days": "7", "future_days": "90", field: reminder}
    member_client.post(f"/settings/feeds/{member.public_id}/options", data=data)
    assert "Choose a reminder from 0 to 2880 minutes before, or none." in (
        member_client.get("/settings").text
    )
    stored = stored_feed(db_session, member)
    assert (stored.past_days, stored.reminder_minutes, stored.handoff_reminder_minutes) == (
        30, None, None
    )  # fmt: skip


def test_no_reminder_again_takes_it_off(
    member: User, member_client: FlaskClient, db_session: Session
) -> None:
    """ "When it starts" is 0 minutes, a reminder; "No reminder" (empty) removes it."""
    for value, stored_value in (("0", 0), ("", None)):
        token = csrf_token(member_client, "/settings")
        data = {"csrf_token": token, "past_days": "30", "future_days": "365", "reminder": value}
        member_client.post(f"/settings/feeds/{member.public_id}/options", data=data)
        assert stored_feed(db_session, member).reminder_minutes == stored_value


def test_unknown_schedules_are_dropped(
    member: User, member_client: FlaskClient, db_session: Session
) -> None:
    token = csrf_token(member_client, "/settings")
    data = {"csrf_token": token, "past_days": "7", "future_days": "365",
            "schedule": ["nope", "../x"]}  # fmt: skip
    response = member_client.post(f"/settings/feeds/{member.public_id}/options", data=data)
    assert response.status_code == 303
    assert "Options of “My shifts” saved." in member_client.get("/settings").text
    stored = stored_feed(db_session, member)
    assert (stored.past_days, stored.schedule_keys) == (7, None)


def test_another_persons_feed_cannot_be_changed(
    app: Flask, member: User, member_client: FlaskClient, db_session: Session
) -> None:
    with get_database(app).session() as session:
        other = accounts.create_user(session, UserInput("ana@example.com", "Ana", "UTC"), utcnow())
        other_id, other_public_id = other.id, other.public_id
    token = csrf_token(member_client, "/settings")
    for action in ("options", "rotate", "revoke"):
        data = {"csrf_token": token, "confirm": "yes", "name": "Mine now", "past_days": "7",
                "future_days": "30"}  # fmt: skip
        response = member_client.post(f"/settings/feeds/{other_public_id}/{action}", data=data)
        assert response.status_code == 303
    assert "That feed no longer exists." in member_client.get("/settings").text
    db_session.expire_all()
    theirs = db_session.scalar(select(Feed).where(Feed.user_id == other_id))
    assert theirs is not None
    assert (theirs.name, theirs.generation) == ("My shifts", 1)


def test_each_connected_calendar_has_its_own_options(
    app: Flask, member: User, member_client: FlaskClient, db_session: Session
) -> None:
    """Schedules, busy/free and the reminder of a connection are its own, and pushed."""
    add_connection(app, member.email, "google", "active")
    nudged: list[set[int]] = []
    add_listener(app, nudged.append)
    data = {"csrf_token": csrf_token(member_client, "/settings"), "busy": "1", "reminder": "15"}
    response = member_client.post("/settings/connections/google/options", data=data)
    assert response.status_code == 303
    assert response.headers["Location"] == "/settings#connection-google"
    db_session.expire_all()
    connection = db_session.scalar(
        select(CalendarConnection).where(CalendarConnection.user_id == member.id)
    )
    assert connection is not None
    assert (connection.busy, connection.reminder_minutes) == (True, 15)
    assert nudged == [{member.id}]
    assert stored_feed(db_session, member).reminder_minutes is None  # the feed is apart
    page = member_client.get("/settings").text
    assert "Options of Google Calendar saved." in page
    assert re.search(r'id="connection-google-reminder".*?<option value="15" selected>', page, re.S)

    member_client.post("/settings/connections/google/options", data=data)
    assert nudged == [{member.id}]  # the same options again push nothing
    refused = member_client.post("/settings/connections/microsoft/options", data=data)
    assert refused.status_code == 303
    assert "That calendar is not connected." in member_client.get("/settings").text


# ------------------------------------------------------------------ time zone


def test_the_time_zone_is_saved(
    member: User, member_client: FlaskClient, db_session: Session
) -> None:
    page = member_client.get("/settings").text
    assert 'list="time-zone-names" value="Europe/Berlin"' in page
    token = csrf_token(member_client, "/settings")
    response = member_client.post(
        "/settings/time-zone", data={"csrf_token": token, "time_zone": "America/New_York"}
    )
    assert response.status_code == 303
    assert response.headers["Location"] == "/settings#time-zone"
    stored = db_session.get(User, member.id)
    assert stored is not None
    assert stored.time_zone == "America/New_York"
    page = member_client.get("/settings").text
    assert "Times are now shown in America/New_York." in page
    assert 'list="time-zone-names" value="America/New_York"' in page


@pytest.mark.parametrize(
    ("typed", "stored"),
    [
        ("new york", "America/New_York"),
        ("  BERLIN ", "Europe/Berlin"),
        ("asia/tokyo", "Asia/Tokyo"),
    ],
)
def test_the_time_zone_field_takes_a_city_or_any_case(
    member: User, member_client: FlaskClient, db_session: Session, typed: str, stored: str
) -> None:
    """The field is searchable text, so what people type is read kindly: a city alone
    when one zone has it, any case, spaces for underscores."""
    token = csrf_token(member_client, "/settings")
    member_client.post("/settings/time-zone", data={"csrf_token": token, "time_zone": typed})
    assert f"Times are now shown in {stored}." in member_client.get("/settings").text
    user = db_session.get(User, member.id)
    assert user is not None
    assert user.time_zone == stored


@pytest.mark.parametrize("zone", ["Mars/Olympus", "", "<b>", "x" * 100, "Berlin Wall"])
def test_an_unknown_time_zone_is_refused(
    member: User, member_client: FlaskClient, db_session: Session, zone: str
) -> None:
    token = csrf_token(member_client, "/settings")
    member_client.post("/settings/time-zone", data={"csrf_token": token, "time_zone": zone})
    assert "Choose a time zone from the list (type a city, e.g. Berlin)." in (
        member_client.get("/settings").text
    )
    stored = db_session.get(User, member.id)
    assert stored is not None
    assert stored.time_zone == "Europe/Berlin"


def test_forms_of_signed_out_visitors_go_to_sign_in(client: FlaskClient, member: User) -> None:
    token = csrf_token(client)
    response = client.post("/settings/time-zone", data={"csrf_token": token, "time_zone": "UTC"})
    assert response.status_code == 302
    assert response.headers["Location"] == "/login"
