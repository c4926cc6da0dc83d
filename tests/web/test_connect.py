"""Connecting calendars from the settings page, through the fake Google and Microsoft.

The test client plays the browser: it follows the page's "Connect" link to the fake's
consent page, consents there over HTTP, and follows the redirect back into our callback.
"""

from __future__ import annotations

import html
import re
from datetime import timedelta
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import select
from sqlalchemy.orm import Session

from oncal_feed.db import utcnow
from oncal_feed.models import CalendarConnection, User
from tests.fakes.fixtures import app_path
from tests.fakes.google import FakeGoogle
from tests.fakes.microsoft import FakeMicrosoft
from tests.web.conftest import add_shift, csrf_token

LABELS = {"google": "Google Calendar", "microsoft": "Outlook"}


@pytest.fixture
def app_config(app_config: dict[str, Any], oauth_settings: dict[str, Any]) -> dict[str, Any]:
    """The shared test settings, pointed at the fake Google and Microsoft servers."""
    return {**app_config, **oauth_settings}


@pytest.fixture(params=["google", "microsoft"])
def provider(request: pytest.FixtureRequest) -> str:
    """Each test runs once per provider."""
    return str(request.param)


@pytest.fixture
def fake(provider: str, fake_google: FakeGoogle, fake_microsoft: FakeMicrosoft) -> Any:
    """The fake of this test's provider."""
    return fake_google if provider == "google" else fake_microsoft


def start(client: FlaskClient, provider: str) -> str:
    """Follow the page's Connect link; return the consent page URL it leads to."""
    page = client.get("/settings").text
    assert f'<form method="post" action="/settings/connect/{provider}"' in page
    assert f'id="connect-{provider}"' in page
    return follow_continue(
        client.post(
            f"/settings/connect/{provider}", data={"csrf_token": csrf_token(client, "/settings")}
        )
    )


def follow_continue(response: Any) -> str:
    """The consent URL of the page "Connect" answers with (a meta refresh and a link)."""
    assert response.status_code == 200, response.text
    found = re.search(r'<meta http-equiv="refresh" content="0; url=([^"]+)">', response.text)
    assert found, response.text
    url = html.unescape(found.group(1))
    assert f'id="continue" href="{found.group(1)}"' in response.text
    return url


def connect(
    client: FlaskClient, fake: Any, provider: str, *, allow: bool = True
) -> tuple[str, str]:
    """Connect through the page; return where the callback sent us and the page there."""
    back = fake.consent(start(client, provider), email="kim@example.com", allow=allow)
    response = client.get(app_path(back))
    assert response.status_code == 303, response.text
    return str(response.headers["Location"]), client.get("/settings").text


def row(session: Session, provider: str) -> CalendarConnection:
    """The stored connection, fresh."""
    session.expire_all()
    found = session.scalar(
        select(CalendarConnection).where(CalendarConnection.provider == provider)
    )
    assert found is not None
    return found


def card(page: str, provider: str) -> str:
    """The HTML of one provider's connection box."""
    found = re.search(rf'<article[^>]*id="connection-{provider}".*?</article>', page, re.S)
    assert found is not None
    return found.group(0)


def post(client: FlaskClient, path: str, **data: str) -> str:
    """Post a settings form with the token; return the settings page it leads back to."""
    response = client.post(path, data={"csrf_token": csrf_token(client, "/settings"), **data})
    assert response.status_code == 303, response.text
    assert response.headers["Location"] == "/settings#connections"
    return client.get("/settings").text


def test_connecting_lands_on_the_page_with_a_message(
    member_client: FlaskClient, fake: Any, provider: str, db_session: Session
) -> None:
    consent_url = start(member_client, provider)
    assert consent_url.startswith(fake.url)
    where, page = connect_from(member_client, fake, consent_url)
    assert where == "/settings#connections"
    assert f"{LABELS[provider]} is connected (On-call shifts)." in page
    box = card(page, provider)
    assert "Connected" in box
    assert "On-call shifts" in box
    assert "Not yet: the first sync starts in a moment" in box
    assert 'data-poll="/api/calendar/connections"' in page
    assert row(db_session, provider).status == "active"


def connect_from(client: FlaskClient, fake: Any, consent_url: str) -> tuple[str, str]:
    """Consent at `consent_url` and follow the way back."""
    back = fake.consent(consent_url, email="kim@example.com")
    response = client.get(app_path(back))
    assert response.status_code == 303, response.text
    return str(response.headers["Location"]), client.get("/settings").text


def test_declining_consent_says_cancelled(
    member_client: FlaskClient, fake: Any, provider: str
) -> None:
    where, page = connect(member_client, fake, provider, allow=False)
    assert where == "/settings#connections"
    assert f"Connecting {LABELS[provider]} was cancelled. Nothing was changed." in page
    assert f'id="connect-{provider}"' in page


def test_a_callback_that_fails_says_what_went_wrong(
    member_client: FlaskClient, fake: Any, provider: str
) -> None:
    back = fake.consent(start(member_client, provider), email="kim@example.com")
    tampered = re.sub(r"state=[^&]+", "state=forged", app_path(back))
    response = member_client.get(tampered)
    assert response.status_code == 303
    page = member_client.get("/settings").text
    assert f"{LABELS[provider]} could not be connected. This sign-in link is not valid" in page


def test_the_json_callback_is_unchanged_for_api_clients(
    member_client: FlaskClient, fake: Any, provider: str
) -> None:
    url = member_client.post(
        f"/api/calendar/{provider}/connect",
        headers={"X-CSRFToken": csrf_token(member_client, "/settings")},
    ).get_json()["authorization_url"]
    response = member_client.get(app_path(fake.consent(url, email="kim@example.com")))
    assert response.status_code == 200
    assert response.get_json()["connected"] == provider


def test_sync_now_writes_events_and_shows_the_counts(
    app: Flask, member: User, member_client: FlaskClient, fake: Any, provider: str
) -> None:
    add_shift(app, member.email, utcnow() + timedelta(days=1))
    add_shift(app, member.email, utcnow() + timedelta(days=2))
    connect(member_client, fake, provider)
    page = post(member_client, "/settings/sync")
    assert f"{LABELS[provider]} is up to date (2 added, 0 changed, 0 removed)." in page
    box = card(page, provider)
    assert "2 added, 0 changed, 0 removed" in box
    assert "just now" in box
    assert len(fake.events("kim@example.com")) == 2


def test_a_failing_sync_shows_the_error_in_plain_words(
    app: Flask, member: User, member_client: FlaskClient, fake: Any, provider: str,
    db_session: Session,
) -> None:  # fmt: skip
    add_shift(app, member.email, utcnow() + timedelta(days=1))
    connect(member_client, fake, provider)
    fake.fail_next(20, 500)
    page = post(member_client, "/settings/sync")
    assert f"{LABELS[provider]} could not be synced." in page
    box = card(page, provider)
    assert "Sync failing" in box
    assert "The last sync failed:" in box
    assert "tries again" in box
    assert row(db_session, provider).status == "error"
    assert "Traceback" not in page


def test_a_revoked_grant_asks_to_reconnect_and_reconnecting_works(
    app: Flask, member: User, member_client: FlaskClient, fake: Any, provider: str,
    db_session: Session,
) -> None:  # fmt: skip
    add_shift(app, member.email, utcnow() + timedelta(days=1))
    connect(member_client, fake, provider)
    post(member_client, "/settings/sync")
    fake.revoke_grants("kim@example.com")
    fake.expire_access_tokens()
    add_shift(app, member.email, utcnow() + timedelta(days=3))
    page = post(member_client, "/settings/sync")
    assert f"{LABELS[provider]} needs you to reconnect it." in page
    box = card(page, provider)
    assert "Needs re-authorisation" in box
    assert "Syncing is paused." in box
    assert f'<form method="post" action="/settings/connect/{provider}"' in box
    assert f'id="reconnect-{provider}"' in box
    assert row(db_session, provider).status == "needs_reauth"

    _, page = connect_from(member_client, fake, start_reconnect(member_client, provider))
    assert f"{LABELS[provider]} is connected" in page
    page = post(member_client, "/settings/sync")
    assert "Connected" in card(page, provider)
    assert len(fake.events("kim@example.com")) == 2


def start_reconnect(client: FlaskClient, provider: str) -> str:
    """Follow the Reconnect button."""
    return follow_continue(
        client.post(
            f"/settings/connect/{provider}", data={"csrf_token": csrf_token(client, "/settings")}
        )
    )


@pytest.mark.parametrize(("events", "left"), [("keep", 1), ("remove", 0)])
def test_disconnect_asks_then_keeps_or_removes_the_events(
    app: Flask, member: User, member_client: FlaskClient, fake: Any, provider: str,
    db_session: Session, events: str, left: int,
) -> None:  # fmt: skip
    add_shift(app, member.email, utcnow() + timedelta(days=1))
    connect(member_client, fake, provider)
    post(member_client, "/settings/sync")
    assert len(fake.events("kim@example.com")) == 1
    path = f"/settings/connections/{provider}/disconnect"

    token = csrf_token(member_client, "/settings")
    confirm = member_client.post(path, data={"csrf_token": token, "events": events})
    assert confirm.status_code == 200
    assert f"Disconnect {LABELS[provider]}?" in confirm.text
    assert f'name="events" value="{events}"' in confirm.text
    assert row(db_session, provider).status == "active"

    page = post(member_client, path, events=events, confirm="yes")
    assert f"{LABELS[provider]} is disconnected" in page
    assert f'id="connect-{provider}"' in page
    assert row(db_session, provider).status == "disconnected"
    assert len(fake.events("kim@example.com")) == left


def test_unknown_providers_are_turned_away(member_client: FlaskClient) -> None:
    token = csrf_token(member_client, "/settings")
    assert (
        member_client.post("/settings/connect/myspace", data={"csrf_token": token}).status_code
        == 303
    )
    response = member_client.post(
        "/settings/connections/myspace/disconnect", data={"csrf_token": token, "confirm": "yes"}
    )
    assert response.status_code == 303


def test_starting_a_connection_is_a_post_with_the_csrf_token(
    member_client: FlaskClient, provider: str
) -> None:
    """Issue 13.7: a cross-site link (a GET, or a POST without the token) starts nothing."""
    assert member_client.get(f"/settings/connect/{provider}").status_code == 405
    refused = member_client.post(f"/settings/connect/{provider}")
    assert refused.status_code == 400
    assert "did not come from this site" in refused.text
    api = member_client.get(f"/api/calendar/{provider}/connect")
    assert api.status_code == 405
    with member_client.session_transaction() as session:
        assert not any(key.startswith("oauth") for key in session), dict(session)


def test_the_consent_page_is_reached_without_a_redirect_after_the_form(
    member_client: FlaskClient, provider: str
) -> None:
    """Browsers check redirects after a form against CSP form-action ('self'), so the
    answer is our own page, which moves on by itself."""
    response = member_client.post(
        f"/settings/connect/{provider}",
        data={"csrf_token": csrf_token(member_client, "/settings")},
    )
    assert "form-action 'self'" in response.headers["Content-Security-Policy"]
    assert "Location" not in response.headers
    assert follow_continue(response).startswith("http://127.0.0.1:")
