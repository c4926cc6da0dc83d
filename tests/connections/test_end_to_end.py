"""End to end, for Google and Microsoft alike, against the fake servers:

connect → consent at the fake → callback → connection stored encrypted → refresh →
grant revoked at the fake → needs_reauth → reconnect (same row, same calendar, records
kept), and disconnect with and without removing events.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
import requests
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import func, select
from sqlalchemy.engine import make_url
from sqlalchemy.orm import Session

from oncal_feed.connections.credentials import provider_for
from oncal_feed.connections.google import SCOPE_APP_CREATED, SCOPE_EVENTS
from oncal_feed.connections.vault import get_vault
from oncal_feed.db import get_database, utcnow
from oncal_feed.models import (
    CalendarConnection,
    OAuthFlow,
    Schedule,
    Shift,
    SyncRecord,
    User,
    mark_needs_reauth,
)
from oncal_feed.providers.base import CALENDAR_NAME, AuthorizationLost
from oncal_feed.rendering.event import EventSpec
from tests.connections.flows import (
    ALICE,
    authorization_url,
    connect,
    connection_row,
    consent,
    database_text,
    secrets_in,
)
from tests.fakes.fixtures import app_path
from tests.fakes.google import FakeGoogle
from tests.fakes.microsoft import FakeMicrosoft


@dataclass
class World:
    """One provider's fake, seen through what these tests need to ask it."""

    provider: str
    fake: Any

    def our_calendars(self) -> list[str]:
        """Ids of the calendars that are not the user's default one."""
        if self.provider == "google":
            return [c["id"] for c in self.fake.calendars(ALICE) if not c["primary"]]
        return [c["id"] for c in self.fake.calendars(ALICE) if not c["isDefaultCalendar"]]

    def calendar_names(self) -> list[str]:
        """Names of the non-default calendars."""
        if self.provider == "google":
            return [c["summary"] for c in self.fake.calendars(ALICE) if not c["primary"]]
        return [c["name"] for c in self.fake.calendars(ALICE) if not c["isDefaultCalendar"]]

    def refreshes(self) -> int:
        """How many refresh-token grants the fake served."""
        return int(self.fake.stats["token:refresh_token"])

    def make_refresh_due(self, session: Session, row: CalendarConnection) -> None:
        """Bring the access token within the refresh margin of its expiry."""
        if self.provider == "google":
            row.token_expires_at = utcnow() + timedelta(minutes=2)
            session.commit()
        else:
            # msal decides from its own cache: tokens it got with under five minutes
            # to live count as expired, so the next connect yields a due token.
            self.fake.access_token_lifetime = 120


@pytest.fixture(params=["google", "microsoft"])
def world(request: pytest.FixtureRequest) -> World:
    """Each test runs once per provider."""
    provider = request.param
    fake = request.getfixturevalue("fake_google" if provider == "google" else "fake_microsoft")
    return World(provider, fake)


@pytest.fixture
def alice(db_session: Session, user: User) -> User:
    """The signed-in user, attached to the test's session."""
    return db_session.get(User, user.id)  # type: ignore[return-value]


def assert_not_stored(app: Flask, session: Session, secrets: list[str]) -> None:
    """No secret appears in any row, nor (SQLite) anywhere in the database files."""
    assert secrets
    rows = database_text(session)
    for secret in secrets:
        assert secret not in rows
    url = make_url(get_database(app).url)
    if url.get_backend_name() == "sqlite":
        path = Path(str(url.database))
        blobs = [p.read_bytes() for p in (path, Path(f"{path}-wal")) if p.exists()]
        for secret in secrets:
            assert all(secret.encode() not in blob for blob in blobs)


def stored_document(app: Flask, row: CalendarConnection) -> dict[str, Any]:
    """Decrypt a connection's token document with the app's vault."""
    assert row.token_ciphertext
    return get_vault(app).decrypt(row.token_ciphertext)


def add_sync_record(session: Session, row: CalendarConnection, user: User) -> int:
    """A shift plus a record saying the remote calendar holds it; returns the record id."""
    now = utcnow()
    schedule = Schedule(key="payments", name="Payments", time_zone="UTC")
    session.add(schedule)
    session.flush()
    shift = Shift(
        schedule_id=schedule.id,
        external_id="s1",
        user_id=user.id,
        starts_at=now,
        ends_at=now + timedelta(hours=8),
    )
    session.add(shift)
    session.flush()
    record = SyncRecord(
        connection_id=row.id,
        shift_id=shift.id,
        shift_uid=shift.uid,
        remote_id="abcdefgh0123",
        state="synced",
    )
    session.add(record)
    session.commit()
    return record.id


def test_connect_stores_the_grant_encrypted_and_creates_one_calendar(
    app: Flask, signed_in: FlaskClient, world: World, db_session: Session
) -> None:
    url = authorization_url(signed_in, world.provider)
    query = parse_qs(urlsplit(url).query)
    assert query["code_challenge_method"] == ["S256"]
    assert "code_verifier" not in query
    if world.provider == "google":
        assert query["scope"] == [SCOPE_APP_CREATED]
        assert query["access_type"] == ["offline"]
    else:
        assert "Calendars.ReadWrite" in query["scope"][0].split()
    flow = db_session.scalar(select(OAuthFlow))
    assert flow is not None
    flow_secret = get_vault(app).decrypt(flow.secret_ciphertext)
    verifier = flow_secret.get("code_verifier") or flow_secret["flow"]["code_verifier"]
    assert verifier not in url

    location = consent(world.fake, url)
    code = parse_qs(urlsplit(location).query)["code"][0]
    response = signed_in.get(app_path(location))

    assert response.status_code == 200, response.get_json()
    body = response.get_json()
    assert body["connection"]["status"] == "active"
    assert body["connection"]["calendar_name"] == CALENDAR_NAME
    assert db_session.scalar(select(func.count()).select_from(OAuthFlow)) == 0
    row = connection_row(db_session, world.provider)
    assert row is not None
    assert row.status == "active"
    assert row.owns_calendar
    assert not row.use_primary
    assert row.dirty_since is not None  # the first sync is due
    assert world.our_calendars() == [row.calendar_id]
    assert world.calendar_names() == [CALENDAR_NAME]
    assert row.token_expires_at is not None
    assert row.token_expires_at > utcnow()
    secrets = [*secrets_in(stored_document(app, row)), verifier, code]
    assert_not_stored(app, db_session, secrets)
    if world.provider == "microsoft":
        assert row.account_email == ALICE


def test_refresh_before_expiry_is_stored_encrypted(
    app: Flask, signed_in: FlaskClient, world: World, db_session: Session
) -> None:
    if world.provider == "microsoft":
        world.make_refresh_due(db_session, None)  # type: ignore[arg-type]
    assert connect(signed_in, world.fake, world.provider).status_code == 200
    row = connection_row(db_session, world.provider)
    assert row is not None
    if world.provider == "google":
        world.make_refresh_due(db_session, row)
    before_ciphertext = row.token_ciphertext
    before = secrets_in(stored_document(app, row))
    refreshes = world.refreshes()

    with app.app_context(), provider_for(row) as remote:
        assert remote.calendar_exists(row.calendar_id or "")
    db_session.commit()

    assert world.refreshes() > refreshes
    assert row.token_ciphertext != before_ciphertext
    after = secrets_in(stored_document(app, row))
    assert set(after) != set(before)
    assert_not_stored(app, db_session, after)
    if world.provider == "google":
        assert row.token_expires_at is not None
        assert row.token_expires_at > utcnow() + timedelta(minutes=50)


def test_revoked_grant_needs_reauth_and_reconnect_reuses_everything(
    app: Flask, signed_in: FlaskClient, world: World, db_session: Session, alice: User
) -> None:
    assert connect(signed_in, world.fake, world.provider).status_code == 200
    row = connection_row(db_session, world.provider)
    assert row is not None
    connection_id, calendar_id = row.id, row.calendar_id
    record_id = add_sync_record(db_session, row, alice)

    world.fake.revoke_grants(ALICE)
    world.make_refresh_due(db_session, row)
    if world.provider == "microsoft":
        # The cached token is still "fresh" to msal: the 401 from Graph forces a refresh.
        world.fake.expire_access_tokens(ALICE)
    with app.app_context(), pytest.raises(AuthorizationLost) as lost, provider_for(row) as remote:
        remote.calendar_exists(row.calendar_id or "")
    mark_needs_reauth(row, lost.value)
    row.overdue_since = utcnow() - timedelta(days=3)  # claimed by a sweep before the loss
    db_session.commit()

    listed = signed_in.get("/api/calendar/connections").get_json()["connections"]
    assert [(c["provider"], c["status"]) for c in listed] == [(world.provider, "needs_reauth")]
    assert "reconnect" in listed[0]["last_error"].lower()

    response = connect(signed_in, world.fake, world.provider)
    assert response.status_code == 200, response.get_json()
    row = connection_row(db_session, world.provider)
    assert row is not None
    assert (row.id, row.calendar_id, row.status) == (connection_id, calendar_id, "active")
    assert row.last_error is None
    assert row.overdue_since is None  # that old wait would show as days of queue lag
    assert world.our_calendars() == [calendar_id]
    assert db_session.get(SyncRecord, record_id) is not None
    assert db_session.scalar(select(func.count()).select_from(CalendarConnection)) == 1
    with app.app_context(), provider_for(row) as remote:
        assert remote.calendar_exists(calendar_id or "")


def test_reconnect_after_the_user_deleted_our_calendar_makes_a_new_one(
    app: Flask, signed_in: FlaskClient, world: World, db_session: Session, alice: User
) -> None:
    assert connect(signed_in, world.fake, world.provider).status_code == 200
    row = connection_row(db_session, world.provider)
    assert row is not None
    add_sync_record(db_session, row, alice)
    generation = row.id_generation
    with app.app_context(), provider_for(row) as remote:
        remote.delete_calendar(row.calendar_id or "")

    assert connect(signed_in, world.fake, world.provider).status_code == 200
    row = connection_row(db_session, world.provider)
    assert row is not None
    assert world.our_calendars() == [row.calendar_id]
    # Records described the deleted calendar; new event ids avoid old ones.
    assert db_session.scalar(select(func.count()).select_from(SyncRecord)) == 0
    assert row.id_generation == generation + 1


def test_primary_calendar_option(
    app: Flask, signed_in: FlaskClient, world: World, db_session: Session
) -> None:
    url = authorization_url(signed_in, world.provider, "?primary=1")
    if world.provider == "google":
        assert parse_qs(urlsplit(url).query)["scope"] == [SCOPE_EVENTS]
    response = signed_in.get(app_path(consent(world.fake, url)))
    assert response.status_code == 200, response.get_json()
    row = connection_row(db_session, world.provider)
    assert row is not None
    assert (row.calendar_id, row.use_primary, row.owns_calendar) == ("primary", True, False)
    assert world.our_calendars() == []
    # A plain reconnect keeps the choice.
    assert connect(signed_in, world.fake, world.provider).status_code == 200
    row = connection_row(db_session, world.provider)
    assert row is not None
    assert row.use_primary


def test_disconnect_keeps_the_calendar_and_forgets_the_grant(
    app: Flask, signed_in: FlaskClient, world: World, db_session: Session
) -> None:
    assert connect(signed_in, world.fake, world.provider).status_code == 200
    row = connection_row(db_session, world.provider)
    assert row is not None
    tokens = secrets_in(stored_document(app, row))

    response = signed_in.delete(f"/api/calendar/{world.provider}")

    assert response.status_code == 204
    row = connection_row(db_session, world.provider)
    assert row is not None
    assert (row.status, row.token_ciphertext) == ("disconnected", None)
    assert world.our_calendars() == [row.calendar_id]
    assert signed_in.get("/api/calendar/connections").get_json()["connections"] == []
    if world.provider == "google":
        assert [r["token"] for r in world.fake.revocations] == [
            t for t in tokens if t.startswith("1//")
        ]
        assert all(grant["revoked"] for grant in world.fake.grants(ALICE))
    # Connecting again continues in the same calendar.
    assert connect(signed_in, world.fake, world.provider).status_code == 200
    again = connection_row(db_session, world.provider)
    assert again is not None
    assert (again.id, again.calendar_id, again.status) == (row.id, row.calendar_id, "active")


def test_disconnect_with_remove_events_deletes_our_calendar(
    app: Flask, signed_in: FlaskClient, world: World, db_session: Session, alice: User
) -> None:
    assert connect(signed_in, world.fake, world.provider).status_code == 200
    row = connection_row(db_session, world.provider)
    assert row is not None
    add_sync_record(db_session, row, alice)

    response = signed_in.delete(f"/api/calendar/{world.provider}?remove_events=1")

    assert response.status_code == 204
    assert world.our_calendars() == []
    row = connection_row(db_session, world.provider)
    assert row is not None
    assert (row.status, row.calendar_id, row.token_ciphertext) == ("disconnected", None, None)
    assert db_session.scalar(select(func.count()).select_from(SyncRecord)) == 0
    if world.provider == "google":
        assert len(world.fake.revocations) == 1


def test_disconnect_with_remove_events_in_the_primary_calendar_deletes_only_ours(
    app: Flask, signed_in: FlaskClient, world: World, db_session: Session
) -> None:
    response = connect(signed_in, world.fake, world.provider, "?primary=1")
    assert response.status_code == 200, response.get_json()
    row = connection_row(db_session, world.provider)
    assert row is not None
    now = utcnow().replace(microsecond=0)
    spec = EventSpec(
        uid="shift-1@oncal-feed",
        summary="On-call",
        description="",
        starts_at=now,
        ends_at=now + timedelta(hours=1),
        cancelled=False,
        sequence=1,
        created=now,
        last_modified=now,
        transparent=True,
        url="https://oncal.example.test/settings",
    )
    with app.app_context(), provider_for(row) as remote:
        remote.insert_event("primary", spec, "ours00000001")
    if world.provider == "google":
        body = {
            "summary": "Dentist",
            "start": {"dateTime": "2026-03-09T09:00:00Z"},
            "end": {"dateTime": "2026-03-09T10:00:00Z"},
        }
        token = world.fake.issue_token(ALICE, (SCOPE_EVENTS,))["access_token"]
        requests.post(
            f"{world.fake.api_endpoint}calendars/primary/events",
            json=body,
            headers={"Authorization": f"Bearer {token}"},
            timeout=5,
        ).raise_for_status()
        names = lambda: [e["summary"] for e in world.fake.events(ALICE, "primary")]  # noqa: E731
    else:
        world.fake.put_event(
            ALICE,
            {
                "subject": "Dentist",
                "start": {"dateTime": "2026-03-09T09:00:00", "timeZone": "UTC"},
                "end": {"dateTime": "2026-03-09T10:00:00", "timeZone": "UTC"},
            },
        )
        names = lambda: [e["subject"] for e in world.fake.events(ALICE)]  # noqa: E731
    assert sorted(names()) == ["Dentist", "On-call"]

    response = signed_in.delete(f"/api/calendar/{world.provider}?remove_events=1")

    assert response.status_code == 204
    assert names() == ["Dentist"]


def test_remove_events_after_the_grant_was_revoked_says_to_reconnect(
    app: Flask, signed_in: FlaskClient, world: World, db_session: Session
) -> None:
    assert connect(signed_in, world.fake, world.provider).status_code == 200
    world.fake.revoke_grants(ALICE)
    row = connection_row(db_session, world.provider)
    assert row is not None
    world.make_refresh_due(db_session, row)
    if world.provider == "microsoft":
        world.fake.expire_access_tokens(ALICE)

    response = signed_in.delete(f"/api/calendar/{world.provider}?remove_events=1")

    assert response.status_code == 409
    assert response.get_json()["error"] == "reconnect_to_remove"
    row = connection_row(db_session, world.provider)
    assert row is not None
    assert row.status == "needs_reauth"
    assert world.our_calendars() == [row.calendar_id]
    # A plain disconnect still works.
    assert signed_in.delete(f"/api/calendar/{world.provider}").status_code == 204


def test_both_providers_side_by_side(
    signed_in: FlaskClient, fake_google: FakeGoogle, fake_microsoft: FakeMicrosoft
) -> None:
    assert connect(signed_in, fake_google, "google").status_code == 200
    assert connect(signed_in, fake_microsoft, "microsoft").status_code == 200
    listed = signed_in.get("/api/calendar/connections").get_json()["connections"]
    assert [(c["provider"], c["status"]) for c in listed] == [
        ("google", "active"),
        ("microsoft", "active"),
    ]
