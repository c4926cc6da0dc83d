"""Fixtures of the admin tests: an admin signed in through the real form, and a
connection row in a chosen state."""

from __future__ import annotations

from datetime import timedelta

import pytest
from flask import Flask
from flask.testing import FlaskClient

from oncal_feed import accounts
from oncal_feed.db import get_database, utcnow
from oncal_feed.models import CalendarConnection, User
from oncal_feed.validation import UserInput
from tests.web.conftest import PASSWORD, csrf_token, log_in, member, member_client  # noqa: F401

ADMIN_EMAIL = "ada@example.com"


@pytest.fixture
def admin(app: Flask) -> User:
    """ada@example.com, an admin with a password."""
    with get_database(app).session() as session:
        user = accounts.create_user(session, UserInput(ADMIN_EMAIL, "Ada Admin", "UTC"), utcnow())
        accounts.set_role(user, "admin", utcnow())
        accounts.set_password(user, PASSWORD)
    return user


@pytest.fixture
def admin_client(app: Flask, admin: User) -> FlaskClient:
    """A test client signed in as `admin`."""
    client = app.test_client()
    assert log_in(client, ADMIN_EMAIL).status_code == 303
    return client


def add_connection(app: Flask, email: str, provider: str, status: str, **fields: object) -> None:
    """A calendar connection row for the user with `email` (no tokens: nothing syncs)."""
    with get_database(app).session() as session:
        user = accounts.get_user_by_email(session, email)
        session.add(
            CalendarConnection(
                user_id=user.id,
                provider=provider,
                status=status,
                account_email=email,
                calendar_name="On-call shifts",
                **fields,
            )
        )


def stale(minutes: int) -> object:
    """An instant `minutes` ago."""
    return utcnow() - timedelta(minutes=minutes)


def form(client: FlaskClient, path: str = "/admin") -> dict[str, str]:
    """The CSRF field of a page's forms."""
    return {"csrf_token": csrf_token(client, path)}
