"""The demo calendar end to end in one process: connect through its authorization page,
sync into it with the real engine, see it on /demo/calendar, delete there, get it back."""

from __future__ import annotations

import html
import re
from collections.abc import Callable, Iterator
from datetime import UTC, date, datetime, time, timedelta
from typing import Any
from urllib.parse import parse_qs, urlsplit
from zoneinfo import ZoneInfo

import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import select

from oncal_feed import accounts
from oncal_feed.db import get_database, utcnow
from oncal_feed.models import CalendarConnection, DemoEvent
from oncal_feed.providers.demo import DemoEventView
from oncal_feed.sync.service import run_sync
from oncal_feed.validation import UserInput
from oncal_feed.web.demo_grid import grid, grid_range
from tests.web.conftest import PASSWORD, add_shift, csrf_token, form_token, log_in

EMAIL = "robin@example.com"
_HIDDEN = re.compile(r'<input type="hidden" name="([^"]+)" value="([^"]*)">')


@pytest.fixture
def app_config(app_config: dict[str, Any]) -> dict[str, Any]:
    """Demo mode: the only mode with the demo calendar."""
    return {**app_config, "ONCAL_MODE": "demo"}


@pytest.fixture
def other_app(app_config: dict[str, Any]) -> Iterator[Callable[..., Flask]]:
    """Make apps with other settings on the same database; their pools closed after."""
    from oncal_feed import create_app

    made: list[Flask] = []

    def make(**settings: Any) -> Flask:
        made.append(create_app({**app_config, **settings}))
        return made[-1]

    yield make
    for one in made:
        get_database(one).dispose()


@pytest.fixture
def signed_in(app: Flask) -> FlaskClient:
    """A client signed in as Robin (Europe/Berlin)."""
    with get_database(app).session() as session:
        user = accounts.create_user(session, UserInput(EMAIL, "Robin", "Europe/Berlin"), utcnow())
        accounts.set_password(user, PASSWORD)
    client = app.test_client()
    assert log_in(client, EMAIL).status_code == 303
    return client


def connect(client: FlaskClient, decision: str = "allow") -> str:
    """Settings page -> authorization page -> Allow/Cancel -> callback; the final URL."""
    settings = client.get("/settings")
    assert 'id="connect-demo"' in settings.text
    target = urlsplit(start(client))
    assert target.path == "/demo/authorize"
    page = client.get(f"{target.path}?{target.query}")
    assert page.status_code == 200
    assert "Let oncal-feed use your demo calendar?" in page.text
    fields = dict(_HIDDEN.findall(page.text))
    answered = client.post("/demo/authorize", data={**fields, "decision": decision})
    assert answered.status_code == 303
    back = urlsplit(answered.headers["Location"])
    assert back.path == "/api/calendar/demo/callback"
    finished = client.get(f"{back.path}?{back.query}")
    assert finished.status_code in (302, 303)
    return finished.headers["Location"]


def start(client: FlaskClient) -> str:
    """Press "Connect Demo calendar"; the authorization URL the next page moves on to."""
    started = client.post(
        "/settings/connect/demo", data={"csrf_token": csrf_token(client, "/settings")}
    )
    assert started.status_code == 200
    found = re.search(r'id="continue" href="([^"]+)"', started.text)
    assert found is not None, started.text
    return html.unescape(found.group(1))


def connection_id(app: Flask) -> int:
    """The id of Robin's demo connection."""
    with get_database(app).session() as session:
        found = session.scalar(
            select(CalendarConnection.id).where(CalendarConnection.provider == "demo")
        )
    assert found is not None
    return found


def _fingerprint(html: str) -> str:
    found = re.search(r'data-fingerprint="([0-9a-f]{16})"', html)
    assert found, "the calendar section carries no data-fingerprint"
    return found.group(1)


def test_connect_sync_show_delete_restore(app: Flask, signed_in: FlaskClient) -> None:
    """The whole tour: the shift appears, moves, is deleted on the page and comes back."""
    # Tomorrow morning in Berlin, so that the move below stays on the same day's page.
    tomorrow = datetime.now(ZoneInfo("Europe/Berlin")).date() + timedelta(days=1)
    start = datetime.combine(tomorrow, time(9), ZoneInfo("Europe/Berlin")).astimezone(UTC)
    add_shift(app, EMAIL, start, external_id="s1")
    connect(signed_in)
    report = run_sync(app, connection_id(app))
    assert report.created == 1

    zone = ZoneInfo("Europe/Berlin")
    day = start.astimezone(zone).date().isoformat()
    page = signed_in.get(f"/demo/calendar?date={day}")
    assert page.status_code == 200
    local = start.astimezone(zone)
    assert f"{local:%H:%M}" in page.text
    assert "On-call · Payments" in page.text

    # The page's refresh swaps its calendar in only when the digest of its events changes:
    # the same events give the same digest on every render, a move gives another.
    same = signed_in.get(f"/demo/calendar?date={day}")
    assert _fingerprint(same.text) == _fingerprint(page.text)

    add_shift(app, EMAIL, start + timedelta(hours=2), external_id="s1")
    assert run_sync(app, connection_id(app)).updated == 1
    moved = signed_in.get(f"/demo/calendar?date={day}")
    assert f"{local + timedelta(hours=2):%H:%M}" in moved.text
    assert _fingerprint(moved.text) != _fingerprint(page.text)

    with get_database(app).session() as session:
        remote_id = session.scalar(select(DemoEvent.remote_id))
    assert remote_id is not None
    deleted = signed_in.post(
        f"/demo/calendar/events/{remote_id}/delete?date={day}",
        data={"csrf_token": form_token(moved)},
    )
    assert deleted.status_code == 303
    assert "demo-event" not in signed_in.get(f"/demo/calendar?date={day}").text
    # The page asked for a full check; the next sync (the worker's) puts the event back.
    restored = run_sync(app, connection_id(app))
    assert restored.outcome == "ok", restored
    again = signed_in.get(f"/demo/calendar?date={day}")
    assert f'data-event="{remote_id}"' in again.text


def test_cancel_on_the_authorization_page_connects_nothing(
    app: Flask, signed_in: FlaskClient
) -> None:
    """Cancel answers access_denied, and the settings page says nothing was connected."""
    connect(signed_in, decision="deny")
    with get_database(app).session() as session:
        rows = session.scalars(select(CalendarConnection)).all()
    assert [row.status for row in rows] == []
    assert "Connecting Demo calendar was cancelled" in signed_in.get("/settings").text


def test_authorization_page_refuses_a_foreign_redirect_uri(signed_in: FlaskClient) -> None:
    """No redirect to an unchecked address: a 400, whatever the other parameters say."""
    page = signed_in.get(
        "/demo/authorize?response_type=code&client_id=oncal-feed&state=x"
        "&redirect_uri=https://evil.example/cb&code_challenge_method=S256"
        f"&code_challenge={'a' * 43}"
    )
    assert page.status_code == 400


def test_a_code_for_another_verifier_is_refused(app: Flask, signed_in: FlaskClient) -> None:
    """The code binds the PKCE challenge: one minted for another challenge is rejected."""
    from oncal_feed.connections.demo import authorization_code

    state = parse_qs(urlsplit(start(signed_in)).query)["state"][0]
    code = authorization_code(app, EMAIL, "b" * 43)
    answer = signed_in.get(f"/api/calendar/demo/callback?state={state}&code={code}")
    assert answer.status_code in (302, 303)
    assert "did not accept the sign-in" in signed_in.get("/settings").text
    with get_database(app).session() as session:
        assert session.scalars(select(CalendarConnection.token_ciphertext)).all() in ([], [None])


def test_outside_demo_mode_there_is_no_demo_calendar(
    app: Flask, other_app: Callable[..., Flask]
) -> None:
    """Production and test mode: no card, no pages, and connecting is refused.

    (`app`, in demo mode, is there to empty the shared database afterwards.)"""

    other = other_app(ONCAL_MODE="test")
    with get_database(other).session() as session:
        user = accounts.create_user(session, UserInput(EMAIL, "Robin", "UTC"), utcnow())
        accounts.set_password(user, PASSWORD)
    client = other.test_client()
    log_in(client, EMAIL)
    assert 'id="connection-demo"' not in client.get("/settings").text
    assert client.get("/demo/calendar").status_code == 404
    refused = client.post(
        "/settings/connect/demo", data={"csrf_token": csrf_token(client, "/settings")}
    )
    assert refused.status_code == 303
    assert client.get("/demo/authorize").status_code == 404


def test_week_grid_splits_an_overnight_event_over_two_days() -> None:
    """22:00-06:00 shows "from 22:00" on its first day and "until 06:00" on the next."""
    zone = ZoneInfo("Europe/Berlin")
    event = DemoEventView(
        "e1",
        "Night",
        "",
        datetime(2026, 12, 7, 21, tzinfo=UTC),
        datetime(2026, 12, 8, 5, tzinfo=UTC),
    )
    weeks = grid("week", date(2026, 12, 9), zone, [event], date(2026, 12, 9))
    assert len(weeks) == 1
    assert [cell.day.day for cell in weeks[0]] == list(range(7, 14))
    assert [[e.when for e in cell.events] for cell in weeks[0][:3]] == [
        ["from 22:00"], ["until 06:00"], [],
    ]  # fmt: skip
    assert weeks[0][2].today


def test_month_grid_covers_whole_weeks() -> None:
    """December 2026: Monday 30 November to Sunday 3 January, days outside marked."""
    first, last = grid_range("month", date(2026, 12, 15))
    assert (first, last) == (date(2026, 11, 30), date(2027, 1, 4))
    weeks = grid("month", date(2026, 12, 15), ZoneInfo("UTC"), [], date(2026, 12, 15))
    assert len(weeks) == 5
    assert not weeks[0][0].in_range
    assert weeks[0][1].in_range
    assert not weeks[-1][-1].in_range


@pytest.mark.parametrize(
    ("base_url", "warned"),
    [
        ("http://127.0.0.1:8000", True),
        ("http://localhost:8000", True),
        ("http://[::1]:8000", True),
        ("https://oncal.example.test", False),
    ],
)
def test_settings_page_warns_about_a_feed_address_only_this_machine_reaches(
    app: Flask, other_app: Callable[..., Flask], base_url: str, warned: bool
) -> None:
    """A loopback BASE_URL gets the warning naming BASE_URL; a public one does not."""

    other = other_app(BASE_URL=base_url)
    with get_database(other).session() as session:
        user = accounts.create_user(session, UserInput(EMAIL, "Robin", "UTC"), utcnow())
        accounts.set_password(user, PASSWORD)
    client = other.test_client()
    log_in(client, EMAIL)
    page = client.get("/settings").text
    assert ('id="feed-local-only"' in page) is warned
    if warned:
        assert "set <code>BASE_URL</code>" in page
        assert "Google Calendar and Outlook on the web" in page
