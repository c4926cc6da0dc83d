"""Drive the connect flows through the app and the fakes, as a browser would."""

from __future__ import annotations

from typing import Any
from urllib.parse import parse_qs, urlsplit

from flask.testing import FlaskClient
from sqlalchemy import select, text
from sqlalchemy.orm import Session
from werkzeug.test import TestResponse

from oncal_feed.db import Base
from oncal_feed.models import CalendarConnection
from tests.fakes.fixtures import app_path
from tests.fakes.google import FakeGoogle
from tests.fakes.microsoft import FakeMicrosoft

ALICE = "alice@example.com"


def authorization_url(client: FlaskClient, provider: str, query: str = "") -> str:
    """Ask the app to start connecting; return where it sends the browser."""
    response = client.post(f"/api/calendar/{provider}/connect{query}")
    assert response.status_code == 200, response.get_json()
    return str(response.get_json()["authorization_url"])


def consent(fake: FakeGoogle | FakeMicrosoft, url: str, *, allow: bool = True) -> str:
    """Consent at the fake; return the absolute redirect to our callback."""
    return fake.consent(url, email=ALICE, allow=allow)


def connect(
    client: FlaskClient,
    fake: FakeGoogle | FakeMicrosoft,
    provider: str,
    query: str = "",
    *,
    allow: bool = True,
) -> TestResponse:
    """Connect → consent at the fake → follow the redirect into our callback."""
    location = consent(fake, authorization_url(client, provider, query), allow=allow)
    return client.get(app_path(location))


def code_of(location: str) -> str:
    """The `code` parameter of a callback URL."""
    return parse_qs(urlsplit(location).query)["code"][0]


def state_of(url: str) -> str:
    """The `state` parameter of an authorization URL or a callback URL."""
    return parse_qs(urlsplit(url).query)["state"][0]


def connection_row(session: Session, provider: str) -> CalendarConnection | None:
    """The stored account connection (fresh from the database)."""
    session.expire_all()
    return session.scalar(
        select(CalendarConnection).where(
            CalendarConnection.provider == provider, CalendarConnection.parent_id.is_(None)
        )
    )


def database_text(session: Session) -> str:
    """Every row of every table, as the database renders it in text."""
    chunks = []
    for table in Base.metadata.sorted_tables:
        if session.bind is not None and session.bind.dialect.name == "postgresql":
            # Table names come from our own metadata, not from input.
            rows = session.execute(text(f'SELECT t::text FROM "{table.name}" t'))  # noqa: S608
        else:
            rows = session.execute(table.select())
        chunks += [str(tuple(row)) for row in rows]
    return "\n".join(chunks)


def secrets_in(document: dict[str, Any]) -> list[str]:
    """Token strings inside a decrypted vault document (Google tokens or an msal cache)."""
    import json

    found = [document[k] for k in ("access_token", "refresh_token") if document.get(k)]
    if document.get("cache"):
        cache = json.loads(document["cache"])
        for section in ("AccessToken", "RefreshToken", "IdToken"):
            found += [entry["secret"] for entry in (cache.get(section) or {}).values()]
    assert all(len(secret) > 20 for secret in found)
    return found
