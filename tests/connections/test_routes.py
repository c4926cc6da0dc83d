"""The /api/calendar routes: sign-in, configuration, listing, sync-now, unknown providers."""

from __future__ import annotations

import io
import logging
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy.orm import Session

from oncal_feed import accounts, create_app
from oncal_feed.connections.vault import get_vault
from oncal_feed.db import get_database, utcnow
from oncal_feed.models import User
from oncal_feed.validation import parse_user
from tests.connections.flows import (
    authorization_url,
    connect,
    connection_row,
    secrets_in,
    state_of,
)
from tests.fakes.fixtures import sign_in_client
from tests.fakes.google import FakeGoogle
from tests.fakes.microsoft import FakeMicrosoft

PROTECTED = [
    ("GET", "/api/calendar/connections"),
    ("POST", "/api/calendar/google/connect"),
    ("POST", "/api/calendar/microsoft/connect"),
    ("GET", "/api/calendar/google/callback?code=x&state=y"),
    ("GET", "/api/calendar/microsoft/callback?code=x&state=y"),
    ("POST", "/api/calendar/sync?days=7"),
    ("DELETE", "/api/calendar/google"),
    ("DELETE", "/api/calendar/microsoft"),
]


@pytest.fixture
def bare_app(app_config: dict[str, Any]) -> Iterator[Flask]:
    """An app with neither provider configured (on the same test database)."""
    unset = {
        "GOOGLE_CLIENT_ID": None,
        "GOOGLE_CLIENT_SECRET": None,
        "MICROSOFT_CLIENT_ID": None,
        "MICROSOFT_CLIENT_SECRET": None,
    }
    application = create_app({**app_config, **unset})
    yield application
    get_database(application).dispose()


@pytest.mark.parametrize(("method", "path"), PROTECTED)
def test_signed_out_requests_get_401_json(client: FlaskClient, method: str, path: str) -> None:
    response = client.open(path, method=method)
    assert response.status_code == 401
    assert response.get_json()["error"] == "unauthorized"


def test_a_session_for_a_deleted_user_counts_as_signed_out(
    app: Flask, client: FlaskClient, user: User, db_session: Session
) -> None:
    sign_in_client(client, user)
    db_session.delete(db_session.get(User, user.id))
    db_session.commit()
    assert client.get("/api/calendar/connections").status_code == 401


def test_status_says_which_providers_are_configured(client: FlaskClient, bare_app: Flask) -> None:
    assert client.get("/api/calendar/status").get_json() == {
        "google": True,
        "microsoft": True,
        "demo": False,
    }
    assert bare_app.test_client().get("/api/calendar/status").get_json() == {
        "google": False,
        "microsoft": False,
        "demo": False,
    }


@pytest.mark.parametrize("provider", ["google", "microsoft"])
def test_connect_without_configuration_is_a_clear_error(
    bare_app: Flask, user: User, provider: str
) -> None:
    client = sign_in_client(bare_app.test_client(), user)
    response = client.post(f"/api/calendar/{provider}/connect")
    assert response.status_code == 409
    body = response.get_json()
    assert body["error"] == "provider_not_configured"
    assert "not set up on this server" in body["message"]


def test_production_app_starts_without_provider_settings(
    app_config: dict[str, Any],
) -> None:
    settings = {
        **app_config,
        "ONCAL_MODE": "production",
        "TOKEN_ENCRYPTION_KEYS": None,
        "GOOGLE_CLIENT_ID": None,
        "GOOGLE_CLIENT_SECRET": None,
        "MICROSOFT_CLIENT_ID": None,
        "MICROSOFT_CLIENT_SECRET": None,
    }
    application = create_app(settings)
    try:
        status = application.test_client().get("/api/calendar/status")
        assert status.get_json() == {"google": False, "microsoft": False, "demo": False}
    finally:
        get_database(application).dispose()


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("DELETE", "/api/calendar/yahoo"),
        ("DELETE", "/api/calendar/status"),
        ("POST", "/api/calendar/yahoo/connect"),
        ("GET", "/api/calendar/yahoo/callback?code=x&state=y"),
    ],
)
def test_unknown_provider_is_404(signed_in: FlaskClient, method: str, path: str) -> None:
    response = signed_in.open(path, method=method)
    assert response.status_code == 404
    assert response.get_json()["error"] == "not_found"


def test_disconnect_when_not_connected_is_204(signed_in: FlaskClient) -> None:
    assert signed_in.delete("/api/calendar/google").status_code == 204


def test_bad_flag_value_is_422(signed_in: FlaskClient) -> None:
    response = signed_in.post("/api/calendar/google/connect?primary=maybe")
    assert response.status_code == 422
    assert response.get_json()["errors"] == [{"field": "primary", "problem": "must be 1 or 0"}]


def test_connections_listing_never_contains_token_material(
    app: Flask,
    signed_in: FlaskClient,
    fake_google: FakeGoogle,
    fake_microsoft: FakeMicrosoft,
    db_session: Session,
) -> None:
    assert connect(signed_in, fake_google, "google").status_code == 200
    assert connect(signed_in, fake_microsoft, "microsoft").status_code == 200
    response = signed_in.get("/api/calendar/connections")
    assert response.status_code == 200
    text = response.get_data(as_text=True)
    vault = get_vault(app)
    for provider in ("google", "microsoft"):
        row = connection_row(db_session, provider)
        assert row is not None
        assert row.token_ciphertext
        assert row.token_ciphertext not in text
        for secret in secrets_in(vault.decrypt(row.token_ciphertext)):
            assert secret not in text
    listed = response.get_json()["connections"]
    assert {tuple(sorted(c)) for c in listed} == {
        (
            "account_email",
            "calendar_name",
            "connected_at",
            "last_counts",
            "last_error",
            "last_error_at",
            "last_success_at",
            "last_sync_at",
            "next_retry_at",
            "provider",
            "schedule_pushes",
            "status",
            "use_primary",
        )
    }


def test_listing_says_when_a_failed_sync_is_retried(
    app: Flask, db_session: Session, signed_in: FlaskClient, fake_google: FakeGoogle
) -> None:
    """A connection waiting to retry shows the time of the next attempt and the error."""
    assert connect(signed_in, fake_google, "google").status_code == 200
    row = connection_row(db_session, "google")
    assert row is not None
    row.last_error = "Google Calendar is not answering; will try again."
    row.next_retry_at = datetime(2030, 1, 2, 3, 4, 5, tzinfo=UTC)
    db_session.commit()
    listed = signed_in.get("/api/calendar/connections").get_json()["connections"]
    assert listed[0]["next_retry_at"] == "2030-01-02T03:04:05Z"
    assert listed[0]["last_error"] == "Google Calendar is not answering; will try again."


def test_connections_are_the_signed_in_users_only(
    app: Flask, signed_in: FlaskClient, fake_google: FakeGoogle
) -> None:
    assert connect(signed_in, fake_google, "google").status_code == 200
    with get_database(app).session() as session:
        bob = accounts.create_user(
            session, parse_user({"email": "bob@example.com", "display_name": "Bob"}), utcnow()
        )
    other = sign_in_client(app.test_client(), bob)
    assert other.get("/api/calendar/connections").get_json() == {"connections": []}


def test_sync_now_answers_counts(signed_in: FlaskClient) -> None:
    response = signed_in.post("/api/calendar/sync?days=7")
    assert response.status_code == 200
    assert response.get_json() == {
        "connections": [], "created": 0, "updated": 0, "deleted": 0, "failed": 0,
    }  # fmt: skip


@pytest.mark.parametrize("days", ["0", "-3", "abc", "3651"])
def test_sync_now_rejects_bad_days(signed_in: FlaskClient, days: str) -> None:
    response = signed_in.post(f"/api/calendar/sync?days={days}")
    assert response.status_code == 422
    assert response.get_json()["errors"][0]["field"] == "days"


def test_google_endpoints_over_plain_http_are_refused_outside_loopback(
    app_config: dict[str, Any], user: User
) -> None:
    settings = {**app_config, "GOOGLE_TOKEN_URI": "http://oauth.example.test/token"}
    application = create_app(settings)
    try:
        client = sign_in_client(application.test_client(), user)
        response = client.post("/api/calendar/google/connect")
        assert response.status_code == 400
        assert response.get_json()["error"] == "insecure_endpoint"
    finally:
        get_database(application).dispose()


@pytest.mark.parametrize(
    ("method", "path"),
    [("POST", "/api/calendar/google/connect"), ("GET", "/api/calendar/connections")],
)
def test_cookie_authenticated_json_is_not_stored_by_caches(
    signed_in: FlaskClient, method: str, path: str
) -> None:
    """Issue 13.13: a live OAuth state and account emails must stay out of every cache."""
    response = signed_in.open(path, method=method)
    assert response.status_code == 200
    assert response.headers["Cache-Control"] == "no-store"


def test_a_forged_line_in_the_callback_error_stays_on_one_log_line(
    signed_in: FlaskClient, fake_google: FakeGoogle
) -> None:
    """Issue 13.5: `error=x%0A2099 CRITICAL fake` wrote a line of its own to the log."""
    state = state_of(authorization_url(signed_in, "google"))
    handler = next(h for h in logging.getLogger("oncal_feed").handlers if getattr(h, "_oncal", 0))
    captured = io.StringIO()
    previous = handler.setStream(captured)  # type: ignore[attr-defined]
    try:
        response = signed_in.get(
            f"/api/calendar/google/callback?state={state}&error=x%0A2099%20CRITICAL%20fake%E2%80%A8y"
        )
    finally:
        handler.setStream(previous)  # type: ignore[attr-defined]
    assert response.status_code == 400
    lines = captured.getvalue().splitlines()
    assert len(lines) == 1, lines
    assert "authorization ended with error x\\x0a2099 CRITICAL fake\\u2028y" in lines[0]
