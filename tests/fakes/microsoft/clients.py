"""Real msal apps and Graph sessions set up against the fake, for the fake's own tests."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import msal
import pytest
import requests

from tests.fakes.microsoft import FakeMicrosoft

CLIENT_ID = "test-client"


CLIENT_SECRET = "test-secret"


REDIRECT_URI = "http://127.0.0.1:8000/api/calendar/microsoft/callback"


SCOPES = ["Calendars.ReadWrite"]


ALICE = "alice@example.com"


UID_PROP = "String {6f1c3b0e-6a43-4d6b-9a77-0c2f1d0e5a11} Name oncalFeedUid"


REPO_ROOT = Path(__file__).resolve().parents[3]


MakeApp = Callable[..., msal.ConfidentialClientApplication]


@pytest.fixture
def fake() -> Iterator[FakeMicrosoft]:
    """A started fake with the default client registered."""
    with FakeMicrosoft(seed=7) as server:
        server.register_client(CLIENT_ID, CLIENT_SECRET, [REDIRECT_URI])
        yield server
    assert server.server_errors == [], server.server_errors[0][1]


@pytest.fixture
def make_app(fake: FakeMicrosoft) -> Iterator[MakeApp]:
    """Build real msal apps against the fake; their HTTP clients are closed afterwards."""
    apps: list[msal.ConfidentialClientApplication] = []

    def make(
        cache: msal.SerializableTokenCache | None = None, secret: str = CLIENT_SECRET
    ) -> msal.ConfidentialClientApplication:
        app = msal.ConfidentialClientApplication(
            CLIENT_ID, client_credential=secret, token_cache=cache, **fake.msal_kwargs("common")
        )
        apps.append(app)
        return app

    yield make
    for app in apps:
        app.http_client.close()


@pytest.fixture
def graph(fake: FakeMicrosoft) -> Iterator[requests.Session]:
    """A requests session carrying a valid Graph token for Alice."""
    with requests.Session() as session:
        session.trust_env = False
        session.headers["Authorization"] = f"Bearer {fake.access_token(ALICE)}"
        yield session


def sign_in(
    fake: FakeMicrosoft, app: msal.ConfidentialClientApplication, email: str = ALICE
) -> dict[str, Any]:
    """Run the whole auth code flow over HTTP and return msal's result."""
    flow = app.initiate_auth_code_flow(SCOPES, redirect_uri=REDIRECT_URI, response_mode="form_post")
    params = fake.consent_params(flow["auth_uri"], email=email)
    return app.acquire_token_by_auth_code_flow(flow, params)


def new_event(subject: str = "On call", **extra: Any) -> dict[str, Any]:
    """An event body shaped like the app's `graph_event`."""
    body = {
        "subject": subject,
        "body": {"contentType": "text", "content": "Primary on-call\nPager: 555"},
        "start": {"dateTime": "2026-03-08T09:00:00", "timeZone": "UTC"},
        "end": {"dateTime": "2026-03-08T17:00:00", "timeZone": "UTC"},
        "showAs": "busy",
        "isReminderOn": False,
        "singleValueExtendedProperties": [{"id": UID_PROP, "value": "shift-1@oncal"}],
    }
    body.update(extra)
    return body
