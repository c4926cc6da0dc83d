"""No token, code, verifier or client secret in any log line, response or error message.

The flows run end to end (connect, refresh, revoke, reauth failure, disconnect) for both
providers with every logger at DEBUG, including the client libraries'.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy.orm import Session
from werkzeug.test import TestResponse

from oncal_feed.connections.credentials import provider_for
from oncal_feed.connections.vault import get_vault
from oncal_feed.db import utcnow
from oncal_feed.models import mark_needs_reauth
from oncal_feed.providers.base import AuthorizationLost
from tests.connections.flows import (
    ALICE,
    authorization_url,
    code_of,
    connection_row,
    consent,
    secrets_in,
)
from tests.fakes.fixtures import CLIENT_SECRET, app_path
from tests.fakes.google import FakeGoogle
from tests.fakes.microsoft import FakeMicrosoft


@pytest.fixture
def every_log(caplog: pytest.LogCaptureFixture) -> Iterator[pytest.LogCaptureFixture]:
    """Capture all records at DEBUG, including our own logger (which doesn't propagate)."""
    ours = logging.getLogger("oncal_feed")
    ours.addHandler(caplog.handler)
    old_level = ours.level
    ours.setLevel(logging.DEBUG)
    caplog.set_level(logging.DEBUG)
    yield caplog
    ours.removeHandler(caplog.handler)
    ours.setLevel(old_level)


@pytest.mark.parametrize("provider", ["google", "microsoft"])
def test_flows_leak_no_secret(
    app: Flask,
    signed_in: FlaskClient,
    provider: str,
    fake_google: FakeGoogle,
    fake_microsoft: FakeMicrosoft,
    db_session: Session,
    every_log: pytest.LogCaptureFixture,
) -> None:
    fake: Any = fake_google if provider == "google" else fake_microsoft
    fake.access_token_lifetime = 120  # every token is due for refresh: more traffic to log
    secrets: set[str] = {CLIENT_SECRET}
    responses: list[TestResponse] = []
    errors: list[str] = []

    location = consent(fake, authorization_url(signed_in, provider))
    secrets.add(code_of(location))
    responses.append(signed_in.get(app_path(location)))
    row = connection_row(db_session, provider)
    assert row is not None
    secrets.update(secrets_in(get_vault(app).decrypt(row.token_ciphertext or "")))
    row.token_expires_at = utcnow() + timedelta(minutes=1)
    db_session.commit()

    with app.app_context(), provider_for(row) as remote:
        remote.calendar_exists(row.calendar_id or "")
    db_session.commit()
    secrets.update(secrets_in(get_vault(app).decrypt(row.token_ciphertext or "")))

    fake.revoke_grants(ALICE)
    fake.expire_access_tokens(ALICE)
    with app.app_context(), pytest.raises(AuthorizationLost) as lost, provider_for(row) as remote:
        remote.calendar_exists(row.calendar_id or "")
    errors.append(str(lost.value))
    mark_needs_reauth(row, lost.value)
    db_session.commit()
    responses.append(signed_in.get("/api/calendar/connections"))
    responses.append(signed_in.delete(f"/api/calendar/{provider}?remove_events=1"))
    responses.append(signed_in.delete(f"/api/calendar/{provider}"))
    # A replayed callback (refused) and a garbage one.
    responses.append(signed_in.get(app_path(location)))
    responses.append(signed_in.get(f"/api/calendar/{provider}/callback?code=abc&state=def"))

    assert [r.status_code for r in responses] == [200, 200, 409, 204, 400, 400]
    assert len(secrets) >= 4
    assert every_log.records, "nothing was logged: the capture is broken"
    logged = every_log.text + "\n".join(str(r.__dict__) for r in every_log.records)
    answered = "\n".join(r.get_data(as_text=True) for r in responses)
    answered += "\n".join(str(dict(r.headers)) for r in responses)
    for secret in secrets:
        assert secret not in logged
        assert secret not in answered
        assert all(secret not in error for error in errors)
