"""Invitation and reset links: `/password?token=...` through the test client."""

from __future__ import annotations

from datetime import timedelta

import pytest
from flask import Flask
from flask.testing import FlaskClient
from freezegun import freeze_time

from oncal_feed import accounts
from oncal_feed.db import get_database, utcnow
from oncal_feed.logs import redact
from oncal_feed.models import User
from oncal_feed.validation import UserInput
from tests.web.conftest import csrf_token, log_in

NEW_PASSWORD = "a brand new passphrase"


@pytest.fixture
def kim(app: Flask) -> User:
    """A user the API made: no password."""
    with get_database(app).session() as session:
        return accounts.create_user(
            session, UserInput("kim@example.com", "Kim Lee", "Europe/Berlin"), utcnow()
        )


def make_link(app: Flask, user: User, kind: str = "invite", hours: int = 72) -> str:
    with get_database(app).session() as session:
        row = session.get(User, user.id)
        assert row is not None
        _, secret = accounts.create_password_link(
            session, row, kind, utcnow(), timedelta(hours=hours)
        )
    return secret


def submit(client: FlaskClient, secret: str, password: str, confirm: str | None = None) -> object:
    token = csrf_token(client, f"/password?token={secret}")
    return client.post(
        "/password",
        data={
            "csrf_token": token,
            "token": secret,
            "password": password,
            "confirm_password": password if confirm is None else confirm,
        },
    )


def test_an_invitation_sets_the_password_and_signs_in(
    app: Flask, client: FlaskClient, kim: User
) -> None:
    """The page names the account; the password works afterwards; the link is spent."""
    secret = make_link(app, kim)
    page = client.get(f"/password?token={secret}")
    assert page.status_code == 200
    assert "Welcome to oncal-feed" in page.text
    assert "kim@example.com" in page.text
    response = submit(client, secret, NEW_PASSWORD)
    assert response.status_code == 303
    assert client.get("/settings").status_code == 200
    assert log_in(app.test_client(), "kim@example.com", NEW_PASSWORD).status_code == 303
    again = app.test_client().get(f"/password?token={secret}")
    assert again.status_code == 404
    assert "expired or has already been used" in again.text


def test_bad_passwords_are_explained_and_keep_the_link(
    app: Flask, client: FlaskClient, kim: User
) -> None:
    """Too short, too long or not the same twice: 422 with words; nothing is spent."""
    secret = make_link(app, kim)
    short = submit(client, secret, "short")
    assert short.status_code == 422
    assert "at least 10 characters" in short.text
    long = submit(client, secret, "x" * 1025)
    assert long.status_code == 422
    assert "at most 1024 characters" in long.text
    mismatch = submit(client, secret, NEW_PASSWORD, "something else entirely")
    assert mismatch.status_code == 422
    assert "not the same" in mismatch.text
    assert submit(client, secret, NEW_PASSWORD).status_code == 303


def test_dead_links_are_one_404_page(app: Flask, client: FlaskClient, kim: User) -> None:
    """Unknown, forged, overlong, expired and replaced links all get the same page."""
    with freeze_time(utcnow() - timedelta(hours=73)):
        expired = make_link(app, kim)
    replaced = make_link(app, kim)
    current = make_link(app, kim)
    for secret in ("", "nope", "x" * 5000, expired, replaced):
        page = client.get("/password", query_string={"token": secret})
        assert page.status_code == 404, secret[:10]
        assert page.mimetype == "text/html"
        post = client.post("/password", data={"csrf_token": csrf_token(client), "token": secret,
                                              "password": NEW_PASSWORD,
                                              "confirm_password": NEW_PASSWORD})  # fmt: skip
        assert post.status_code == 404
    assert client.get(f"/password?token={current}").status_code == 200


def test_a_reset_ends_the_users_other_sessions(app: Flask, kim: User) -> None:
    """A new password through a reset link signs out every other device."""
    with get_database(app).session() as session:
        row = session.get(User, kim.id)
        assert row is not None
        accounts.set_password(row, "the old password here")
    other = app.test_client()
    assert log_in(other, "kim@example.com", "the old password here").status_code == 303
    secret = make_link(app, kim, "reset")
    assert "Choose a new password" in app.test_client().get(f"/password?token={secret}").text
    assert submit(app.test_client(), secret, NEW_PASSWORD).status_code == 303
    assert other.get("/settings").status_code == 302


def test_link_secrets_are_redacted_from_log_lines() -> None:
    """The secret rides in `token=`, which the log redaction (app and gunicorn) removes."""
    line = 'GET /password?token=abcDEF123-_x HTTP/1.1" 200'
    assert "abcDEF123" not in redact(line)
    assert "/password?token=[redacted]" in redact(line)
