"""The real Google client libraries set up against the fake, for the fake's own tests."""

from __future__ import annotations

import urllib.parse
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import google_auth_httplib2
import httplib2
import pytest
from google.oauth2.credentials import Credentials
from google_auth_oauthlib.flow import Flow
from googleapiclient.discovery import build

from tests.fakes.google import (
    SCOPE_CALENDAR,
    FakeGoogle,
)

CLIENT_ID = "test-client"


CLIENT_SECRET = "test-secret"


REDIRECT_URI = "http://127.0.0.1:8000/api/calendar/google/callback"


ALICE = "alice@example.com"


REPO_ROOT = Path(__file__).resolve().parents[3]


@pytest.fixture
def fake() -> Iterator[FakeGoogle]:
    """A started fake with the default client registered."""
    with FakeGoogle() as server:
        server.register_client(CLIENT_ID, CLIENT_SECRET, [REDIRECT_URI])
        yield server
    assert server.server_errors == [], server.server_errors[0][1]


@pytest.fixture
def insecure_transport(monkeypatch: pytest.MonkeyPatch) -> None:
    """oauthlib refuses http:// token URLs without this; the app needs it for loopback too."""
    monkeypatch.setenv("OAUTHLIB_INSECURE_TRANSPORT", "1")


def make_credentials(fake: FakeGoogle, token: dict[str, Any]) -> Credentials:
    """Credentials as the app would rebuild them from stored tokens."""
    expiry = datetime.now(UTC).replace(tzinfo=None) + timedelta(seconds=token["expires_in"])
    return Credentials(
        token=token["access_token"],
        expiry=expiry,  # google-auth wants naive UTC
        refresh_token=token.get("refresh_token"),
        token_uri=fake.token_uri,
        client_id=CLIENT_ID,
        client_secret=CLIENT_SECRET,
        scopes=token["scope"].split(),
    )


@pytest.fixture
def service_factory(fake: FakeGoogle) -> Iterator[Callable[..., Any]]:
    """Build googleapiclient services (static discovery) that are closed afterwards."""
    services: list[Any] = []

    def factory(
        creds: Credentials | None = None,
        *,
        scopes: tuple[str, ...] = (SCOPE_CALENDAR,),
        email: str = ALICE,
        timeout: float = 5,
    ) -> Any:
        if creds is None:
            creds = make_credentials(fake, fake.issue_token(email, scopes))
        http = google_auth_httplib2.AuthorizedHttp(creds, http=httplib2.Http(timeout=timeout))
        service = build(
            "calendar",
            "v3",
            http=http,
            static_discovery=True,
            client_options={"api_endpoint": fake.api_endpoint},
        )
        services.append(service)
        return service

    yield factory
    for service in services:
        service.close()


def event_body(event_id: str | None = None, **extra: Any) -> dict[str, Any]:
    """A one-hour timed event."""
    body: dict[str, Any] = {
        "summary": "On call",
        "start": {"dateTime": "2026-03-09T09:00:00Z"},
        "end": {"dateTime": "2026-03-09T10:00:00Z"},
    }
    if event_id is not None:
        body["id"] = event_id
    body.update(extra)
    return body


def new_flow(fake: FakeGoogle, scopes: list[str] | None = None) -> Flow:
    """A Flow pointed at the fake, as the app would configure it."""
    return Flow.from_client_config(
        fake.client_config(CLIENT_ID),
        scopes=scopes or [SCOPE_CALENDAR],
        redirect_uri=REDIRECT_URI,
    )


def query_of(location: str) -> dict[str, str]:
    """The query parameters of a redirect Location."""
    return dict(urllib.parse.parse_qsl(urllib.parse.urlsplit(location).query))
