"""Pytest fixtures around the fake Google and Microsoft servers, plus session helpers.

Loaded for the whole suite through `pytest_plugins` in tests/conftest.py.

Fixtures (all function-scoped):

``oauth_base_url``
    The app's BASE_URL the fakes accept redirects for (``https://oncal.example.test``,
    as in the ``app_config`` fixture). Override it in a conftest when the app runs
    elsewhere (a live server for browser tests).
``fake_google`` / ``fake_microsoft``
    A started fake with the OAuth client ``test-client`` / ``test-secret`` registered
    for ``{oauth_base_url}/api/calendar/<provider>/callback``; stopped afterwards, and
    the test fails if the fake itself crashed.
``oauth_settings``
    The app settings that point Google and Microsoft at the two fakes (including
    ``MSAL_CLIENT_OPTIONS`` that route msal to loopback).
``oauth_app_config``
    ``app_config`` updated with ``oauth_settings``. Request it *before* ``app`` in a
    test's arguments, or, for a whole folder, override ``app_config`` in its conftest::

        @pytest.fixture
        def app_config(app_config, oauth_settings):
            return {**app_config, **oauth_settings}

``user`` / ``signed_in``
    A user in the database, and a test client with that user signed in.

Helpers: ``sign_in_client(client, user)`` signs any user in through
``client.session_transaction()`` and makes the client send its CSRF token;
``app_path(location)`` turns the redirect a fake answers
(``https://oncal.example.test/api/...?code=...``) into a path for the test client,
which keeps its session cookie on its own host.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any
from urllib.parse import urlsplit

import pytest
from flask import Flask
from flask.testing import FlaskClient

from oncal_feed import accounts
from oncal_feed.auth import SESSION_USER_KEY
from oncal_feed.db import get_database, utcnow
from oncal_feed.models import User
from oncal_feed.validation import parse_user
from tests.fakes.google import FakeGoogle
from tests.fakes.microsoft import FakeMicrosoft

__all__ = [
    "CLIENT_ID",
    "CLIENT_SECRET",
    "app_path",
    "sign_in_client",
]

CLIENT_ID = "test-client"
CLIENT_SECRET = "test-secret"
DEFAULT_BASE_URL = "https://oncal.example.test"


def app_path(location: str) -> str:
    """The path and query of an absolute URL, for `client.get()`."""
    split = urlsplit(location)
    return f"{split.path}?{split.query}" if split.query else split.path


def sign_in_client(client: FlaskClient, user: User) -> FlaskClient:
    """Put `user` in the client's session, as a successful sign-in would.

    The client then sends the session's CSRF token (read from the settings page, as
    the page's script does) in `X-CSRFToken` with every request, so POST and DELETE on
    the session-authenticated routes pass CSRF protection.
    """
    with client.session_transaction() as session:
        session.clear()
        session[SESSION_USER_KEY] = user.public_id
    page = client.get("/settings")
    assert page.status_code == 200, page.status_code
    token = re.search(r'<meta name="csrf-token" content="([^"]+)"', page.text)
    assert token is not None, "the settings page carries no CSRF token"
    client.environ_base["HTTP_X_CSRFTOKEN"] = token.group(1)
    return client


@pytest.fixture
def oauth_base_url() -> str:
    """The BASE_URL whose callback URLs the fakes accept."""
    return DEFAULT_BASE_URL


@pytest.fixture
def fake_google(oauth_base_url: str) -> Iterator[FakeGoogle]:
    """A running fake Google with the app's OAuth client registered."""
    with FakeGoogle() as fake:
        fake.register_client(
            CLIENT_ID, CLIENT_SECRET, [f"{oauth_base_url}/api/calendar/google/callback"]
        )
        yield fake
    assert fake.server_errors == [], fake.server_errors[0][1]


@pytest.fixture
def fake_microsoft(oauth_base_url: str) -> Iterator[FakeMicrosoft]:
    """A running fake Microsoft identity platform + Graph with the app registered."""
    with FakeMicrosoft() as fake:
        fake.register_client(
            CLIENT_ID, CLIENT_SECRET, [f"{oauth_base_url}/api/calendar/microsoft/callback"]
        )
        yield fake
    assert fake.server_errors == [], fake.server_errors[0][1]


@pytest.fixture
def fakes(fake_google: FakeGoogle, fake_microsoft: FakeMicrosoft) -> dict[str, Any]:
    """Both fakes by provider name."""
    return {"google": fake_google, "microsoft": fake_microsoft}


@pytest.fixture
def oauth_settings(
    fake_google: FakeGoogle, fake_microsoft: FakeMicrosoft, oauth_base_url: str
) -> Iterator[dict[str, Any]]:
    """App settings pointing both providers at the fakes."""
    http_client = fake_microsoft.loopback_http_client()
    yield {
        "BASE_URL": oauth_base_url,
        "GOOGLE_CLIENT_ID": CLIENT_ID,
        "GOOGLE_CLIENT_SECRET": CLIENT_SECRET,
        "GOOGLE_AUTH_URI": fake_google.auth_uri,
        "GOOGLE_TOKEN_URI": fake_google.token_uri,
        "GOOGLE_REVOKE_URI": fake_google.revoke_uri,
        "GOOGLE_API_ENDPOINT": fake_google.api_endpoint,
        "GOOGLE_BATCH_URI": fake_google.batch_uri,
        "MICROSOFT_CLIENT_ID": CLIENT_ID,
        "MICROSOFT_CLIENT_SECRET": CLIENT_SECRET,
        "MICROSOFT_TENANT_ID": "common",
        "MICROSOFT_AUTHORITY_HOST": fake_microsoft.authority_host,
        "GRAPH_ENDPOINT": fake_microsoft.graph_endpoint,
        "MSAL_CLIENT_OPTIONS": {
            "instance_discovery": False,
            "validate_authority": False,
            "http_client": http_client,
        },
        "PROVIDER_TIMEOUT": 10,
    }
    http_client.close()


@pytest.fixture
def oauth_app_config(app_config: dict[str, Any], oauth_settings: dict[str, Any]) -> dict[str, Any]:
    """`app_config` pointed at the fakes (request it before `app`)."""
    app_config.update(oauth_settings)
    return app_config


@pytest.fixture
def user(app: Flask) -> User:
    """A committed user, alice@example.com."""
    data = parse_user(
        {"email": "alice@example.com", "display_name": "Alice", "time_zone": "Europe/Berlin"}
    )
    with get_database(app).session() as session:
        return accounts.create_user(session, data, utcnow())


@pytest.fixture
def signed_in(client: FlaskClient, user: User) -> FlaskClient:
    """The test client with `user` signed in."""
    return sign_in_client(client, user)
