"""Fixtures of the web tests: a user with a password, sign-in through the real form,
CSRF tokens read from pages, and shifts written through the shift store."""

from __future__ import annotations

import re
from datetime import datetime, timedelta

import pytest
from flask import Flask
from flask.testing import FlaskClient
from werkzeug.test import TestResponse

from oncal_feed import accounts, shifts
from oncal_feed.db import get_database, utcnow
from oncal_feed.models import User
from oncal_feed.notify import shifts_changed
from oncal_feed.validation import ScheduleInput, ShiftInput, UserInput

__all__ = ["PASSWORD", "add_shift", "csrf_token", "form_token", "log_in"]

PASSWORD = "correct horse battery staple"
_META = re.compile(r'<meta name="csrf-token" content="([^"]+)"')
_FIELD = re.compile(r'name="csrf_token" value="([^"]+)"')


def csrf_token(client: FlaskClient, path: str = "/login") -> str:
    """The CSRF token of the client's session, as a page it loads carries it."""
    response = client.get(path)
    found = _META.search(response.text)
    assert found is not None, f"{path} answered {response.status_code} without a token"
    return found.group(1)


def form_token(page: TestResponse) -> str:
    """The CSRF token in a page's first form."""
    found = _FIELD.search(page.text)
    assert found is not None
    return found.group(1)


def log_in(client: FlaskClient, email: str, password: str = PASSWORD, **extra: str) -> TestResponse:
    """Sign in through the form, as a browser does (GET the form, POST it)."""
    token = csrf_token(client)
    return client.post(
        "/login", data={"email": email, "password": password, "csrf_token": token, **extra}
    )


def add_shift(
    app: Flask,
    email: str,
    starts_at: datetime,
    length: timedelta = timedelta(hours=8),
    *,
    schedule: str = "payments",
    schedule_name: str = "Payments",
    external_id: str | None = None,
    notes: str = "",
    role: str = "primary",
) -> None:
    """Create (or update) the schedule and one shift, commit, and tell push sync.

    The same steps as the API's shift PUT: the write, then `shifts_changed` for the
    users it touched, which marks their connected calendars for a sync.
    """
    with get_database(app).session() as session:
        found, _, _ = shifts.upsert_schedule(
            session, schedule, ScheduleInput(schedule_name, "Europe/Berlin"), utcnow()
        )
        result = shifts.upsert_shift(
            session,
            found,
            ShiftInput(
                external_id or f"{email}-{starts_at.isoformat()}",
                email,
                starts_at,
                starts_at + length,
                role,
                notes,
            ),
            utcnow(),
        )
    with app.app_context():
        shifts_changed(result.touched_user_ids)


@pytest.fixture
def member(app: Flask) -> User:
    """kim@example.com, in Berlin, with a password."""
    with get_database(app).session() as session:
        user = accounts.create_user(
            session, UserInput("kim@example.com", "Kim Lee", "Europe/Berlin"), utcnow()
        )
        accounts.set_password(user, PASSWORD)
    return user


@pytest.fixture
def member_client(client: FlaskClient, member: User) -> FlaskClient:
    """A test client signed in as `member` through the sign-in form."""
    response = log_in(client, member.email)
    assert response.status_code == 303, response.text
    return client
