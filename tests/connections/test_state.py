"""OAuth state: signed, ten minutes, single use, bound to the user and browser session.

Every refused callback must store nothing: no connection, no tokens.
"""

from __future__ import annotations

from datetime import timedelta
from urllib.parse import urlencode

import pytest
from flask import Flask
from flask.testing import FlaskClient
from freezegun import freeze_time
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from oncal_feed import accounts
from oncal_feed.connections.errors import OAuthError
from oncal_feed.connections.state import read_state, sign_state
from oncal_feed.db import get_database, utcnow
from oncal_feed.models import CalendarConnection, OAuthFlow, User
from oncal_feed.validation import parse_user
from tests.connections.flows import authorization_url, code_of, consent, state_of
from tests.fakes.fixtures import app_path, sign_in_client
from tests.fakes.google import FakeGoogle
from tests.fakes.microsoft import FakeMicrosoft

SECRET = "k" * 40


def stored_connections(session: Session) -> int:
    """How many connections exist."""
    session.expire_all()
    return int(session.scalar(select(func.count()).select_from(CalendarConnection)) or 0)


def callback(client: FlaskClient, provider: str, **params: str) -> tuple[int, dict[str, str]]:
    """Call our callback with these query parameters; return status and JSON."""
    response = client.get(f"/api/calendar/{provider}/callback?{urlencode(params)}")
    return response.status_code, response.get_json()


@pytest.fixture
def bob(app: Flask) -> User:
    """A second user."""
    with get_database(app).session() as session:
        return accounts.create_user(
            session, parse_user({"email": "bob@example.com", "display_name": "Bob"}), utcnow()
        )


# ------------------------------------------------------------------ the token itself


def test_state_round_trip_carries_only_the_flow_id() -> None:
    state = sign_state(SECRET, "flow-123", "google")
    assert read_state(SECRET, state, "google") == "flow-123"
    assert "u_" not in state  # no user id rides along


@pytest.mark.parametrize(
    "state",
    [None, "", "garbage", sign_state("another-secret-key-" + "x" * 30, "flow-123", "google")],
)
def test_missing_or_forged_state_is_refused(state: str | None) -> None:
    with pytest.raises(OAuthError) as refused:
        read_state(SECRET, state, "google")
    assert refused.value.code == "invalid_state"


def test_tampered_state_is_refused() -> None:
    state = sign_state(SECRET, "flow-123", "google")
    payload, _, signature = state.rpartition(".")
    # Change a middle character: the last one of a base64 signature may carry only
    # padding bits, and changing those can decode to the very same bytes.
    middle = len(signature) // 2
    flipped = (
        signature[:middle] + ("A" if signature[middle] != "A" else "B") + signature[middle + 1 :]
    )
    with pytest.raises(OAuthError) as refused:
        read_state(SECRET, f"{payload}.{flipped}", "google")
    assert refused.value.code == "invalid_state"


def test_state_for_the_other_provider_is_refused() -> None:
    with pytest.raises(OAuthError):
        read_state(SECRET, sign_state(SECRET, "flow-123", "google"), "microsoft")


def test_state_expires_after_ten_minutes() -> None:
    with freeze_time("2026-03-01 12:00:00"):
        state = sign_state(SECRET, "flow-123", "google")
    with freeze_time("2026-03-01 12:09:59"):
        assert read_state(SECRET, state, "google") == "flow-123"
    with freeze_time("2026-03-01 12:10:02"), pytest.raises(OAuthError) as refused:
        read_state(SECRET, state, "google")
    assert refused.value.code == "expired_state"


# ------------------------------------------------------------- through the callback


@pytest.mark.parametrize("provider", ["google", "microsoft"])
def test_callback_without_or_with_bad_state_stores_nothing(
    signed_in: FlaskClient,
    provider: str,
    db_session: Session,
    fake_google: FakeGoogle,
    fake_microsoft: FakeMicrosoft,
) -> None:
    fake = fake_google if provider == "google" else fake_microsoft
    url = authorization_url(signed_in, provider)
    code = code_of(consent(fake, url))
    for params in ({"code": code}, {"code": code, "state": state_of(url) + "x"}):
        status, body = callback(signed_in, provider, **params)
        assert (status, body["error"]) == (400, "invalid_state")
        assert "start connecting your calendar again" in body["message"].lower()
    assert stored_connections(db_session) == 0
    # The real state still works afterwards: the refusals consumed nothing.
    status, _ = callback(signed_in, provider, code=code, state=state_of(url))
    assert status == 200


def test_expired_flow_is_refused_and_stores_nothing(
    signed_in: FlaskClient, fake_google: FakeGoogle, db_session: Session
) -> None:
    with freeze_time(utcnow() + timedelta(minutes=1)) as clock:
        url = authorization_url(signed_in, "google")
        location = consent(fake_google, url)
        clock.tick(timedelta(minutes=10, seconds=5))
        response = signed_in.get(app_path(location))
    assert response.status_code == 400
    assert response.get_json()["error"] == "expired_state"
    assert "ten minutes" in response.get_json()["message"]
    assert stored_connections(db_session) == 0


def test_another_users_state_is_refused_and_their_flow_survives(
    app: Flask,
    client: FlaskClient,
    user: User,
    bob: User,
    fake_google: FakeGoogle,
    db_session: Session,
) -> None:
    """The attack the bare-user-id plan allowed: a callback link made by someone else."""
    attacker = app.test_client()
    sign_in_client(attacker, bob)
    url = authorization_url(attacker, "google")
    location = fake_google.consent(url, email="mallory@example.com")

    sign_in_client(client, user)  # the victim opens the attacker's link
    response = client.get(app_path(location))

    assert response.status_code == 400
    assert response.get_json()["error"] == "invalid_state"
    assert stored_connections(db_session) == 0
    assert db_session.scalar(select(func.count()).select_from(OAuthFlow)) == 1


def test_same_user_in_another_browser_session_is_refused(
    app: Flask, signed_in: FlaskClient, user: User, fake_google: FakeGoogle, db_session: Session
) -> None:
    location = consent(fake_google, authorization_url(signed_in, "google"))
    other_browser = sign_in_client(app.test_client(), user)
    response = other_browser.get(app_path(location))
    assert response.status_code == 400
    assert stored_connections(db_session) == 0


def test_state_is_single_use(
    signed_in: FlaskClient, fake_google: FakeGoogle, db_session: Session
) -> None:
    location = consent(fake_google, authorization_url(signed_in, "google"))
    assert signed_in.get(app_path(location)).status_code == 200
    replay = signed_in.get(app_path(location))
    assert replay.status_code == 400
    assert replay.get_json()["error"] == "invalid_state"


def test_a_new_connect_supersedes_the_pending_one(
    signed_in: FlaskClient, fake_google: FakeGoogle, db_session: Session
) -> None:
    first = consent(fake_google, authorization_url(signed_in, "google"))
    second = consent(fake_google, authorization_url(signed_in, "google"))
    assert db_session.scalar(select(func.count()).select_from(OAuthFlow)) == 1
    assert signed_in.get(app_path(first)).status_code == 400
    assert signed_in.get(app_path(second)).status_code == 200


@pytest.mark.parametrize("provider", ["google", "microsoft"])
def test_denied_consent_stores_nothing(
    signed_in: FlaskClient,
    provider: str,
    db_session: Session,
    fake_google: FakeGoogle,
    fake_microsoft: FakeMicrosoft,
) -> None:
    fake = fake_google if provider == "google" else fake_microsoft
    location = consent(fake, authorization_url(signed_in, provider), allow=False)
    response = signed_in.get(app_path(location))
    assert response.status_code == 400
    body = response.get_json()
    assert body["error"] == "access_denied"
    assert "declined" in body["message"]
    assert stored_connections(db_session) == 0
    assert db_session.scalar(select(func.count()).select_from(OAuthFlow)) == 0


@pytest.mark.parametrize("provider", ["google", "microsoft"])
def test_callback_without_code_stores_nothing(
    signed_in: FlaskClient,
    provider: str,
    db_session: Session,
    fake_google: FakeGoogle,
    fake_microsoft: FakeMicrosoft,
) -> None:
    url = authorization_url(signed_in, provider)
    status, body = callback(signed_in, provider, state=state_of(url))
    assert (status, body["error"]) == (400, "missing_code")
    assert stored_connections(db_session) == 0


def test_other_provider_errors_are_reported_plainly(
    signed_in: FlaskClient, fake_google: FakeGoogle, db_session: Session
) -> None:
    url = authorization_url(signed_in, "google")
    status, body = callback(signed_in, "google", state=state_of(url), error="server_error")
    assert (status, body["error"]) == (400, "authorization_failed")
    assert stored_connections(db_session) == 0


def test_code_replayed_with_a_fresh_state_is_rejected_by_pkce(
    signed_in: FlaskClient, fake_google: FakeGoogle, db_session: Session
) -> None:
    """A stolen code is useless with another flow: its PKCE verifier doesn't match."""
    stolen = consent(fake_google, authorization_url(signed_in, "google"))
    code = code_of(stolen)
    fresh = authorization_url(signed_in, "google")
    status, body = callback(signed_in, "google", code=code, state=state_of(fresh))
    assert (status, body["error"]) == (400, "code_rejected")
    assert stored_connections(db_session) == 0


def test_unticking_the_calendar_scope_is_a_denial(
    signed_in: FlaskClient, fake_google: FakeGoogle, db_session: Session
) -> None:
    url = authorization_url(signed_in, "google")
    # Google's granular consent: the user unticks the only scope we asked for.
    location = fake_google.consent(url, scopes=[])
    response = signed_in.get(app_path(location))
    assert (response.status_code, response.get_json()["error"]) == (400, "access_denied")
    assert stored_connections(db_session) == 0
