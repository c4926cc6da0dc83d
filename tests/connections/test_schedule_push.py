"""Schedule pushes end to end, for Google and Microsoft alike, against the fake servers:
a whole schedule pushed through an existing connection into a calendar of its own,
kept current by the same engine, and stopped, disconnected and reconnected with it."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from oncal_feed import accounts, shifts
from oncal_feed.db import get_database, utcnow
from oncal_feed.models import CalendarConnection, SyncRecord, User
from oncal_feed.notify import shifts_changed
from oncal_feed.sync.service import run_sync
from oncal_feed.validation import ScheduleInput, ShiftInput, UserInput
from tests.connections.flows import ALICE, connect, connection_row
from tests.web.conftest import csrf_token


@pytest.fixture(params=["google", "microsoft"])
def provider(request: pytest.FixtureRequest) -> tuple[str, Any]:
    """Each test runs once per provider: its name and its fake."""
    name = request.param
    return name, request.getfixturevalue("fake_google" if name == "google" else "fake_microsoft")


def put_shift(
    app: Flask, external_id: str, email: str, days: int, schedule: str = "payments"
) -> None:
    """Create or move one shift of `schedule` (eight hours from 09:00 UTC, `days` ahead)."""
    start = utcnow().replace(hour=9, minute=0, second=0, microsecond=0) + timedelta(days=days)
    with get_database(app).session() as session:
        found, _, _ = shifts.upsert_schedule(
            session, schedule, ScheduleInput(schedule.title(), "Europe/Berlin"), utcnow()
        )
        result = shifts.upsert_shift(
            session,
            found,
            ShiftInput(external_id, email, start, start + timedelta(hours=8)),
            utcnow(),
        )
    with app.app_context():
        shifts_changed(result.touched_user_ids)


@pytest.fixture
def team(app: Flask, user: User) -> None:
    """Alice (the signed-in user) and Bob share the Payments schedule; Bob alone is on
    Search, which Alice may therefore not push."""
    with get_database(app).session() as session:
        accounts.create_user(
            session, UserInput("bob@example.com", "Bob", "Europe/Berlin"), utcnow()
        )
    put_shift(app, "a1", ALICE, 1)
    put_shift(app, "b1", "bob@example.com", 2)
    put_shift(app, "b2", "bob@example.com", 3)
    put_shift(app, "s1", "bob@example.com", 1, schedule="search")


def calendars(name: str, fake: Any) -> dict[str, str]:
    """The user's non-default calendars, name -> id."""
    if name == "google":
        return {c["summary"]: c["id"] for c in fake.calendars(ALICE) if not c["primary"]}
    return {c["name"]: c["id"] for c in fake.calendars(ALICE) if not c["isDefaultCalendar"]}


def titles(name: str, fake: Any, calendar_id: str) -> list[str]:
    """The titles of a calendar's live events, sorted."""
    key = "summary" if name == "google" else "subject"
    return sorted(e[key] for e in fake.events(ALICE, calendar_id) if not e.get("isCancelled"))


def the_push(session: Session) -> CalendarConnection:
    """The one schedule push (fresh from the database)."""
    session.expire_all()
    return session.scalars(
        select(CalendarConnection).where(CalendarConnection.parent_id.is_not(None))
    ).one()


def sync(app: Flask, connection_id: int) -> str:
    """Run one sync of a connection; its outcome."""
    with app.app_context():
        return run_sync(app, connection_id).outcome


def push(client: FlaskClient, name: str, schedule: str) -> str:
    """Ask for a schedule push through the settings page; the page's message."""
    response = client.post(
        f"/settings/connections/{name}/schedules",
        data={"csrf_token": csrf_token(client, "/settings"), "schedule": schedule},
        follow_redirects=True,
    )
    assert response.status_code == 200
    return response.text


def test_a_schedule_goes_into_a_calendar_of_its_own_and_follows_every_change(
    app: Flask,
    signed_in: FlaskClient,
    db_session: Session,
    provider: tuple[str, Any],
    team: None,
) -> None:
    name, fake = provider
    assert connect(signed_in, fake, name).status_code == 200
    account = connection_row(db_session, name)
    assert account is not None
    assert sync(app, account.id) == "ok"

    page = push(signed_in, name, "payments")

    assert "Payments on-call" in page
    row = the_push(db_session)
    assert (row.parent_id, row.token_ciphertext, row.dirty_since is not None) == (
        account.id, None, True
    )  # fmt: skip
    assert sync(app, row.id) == "ok"
    found = calendars(name, fake)
    assert set(found) == {"On-call shifts", "Payments on-call"}
    assert titles(name, fake, found["Payments on-call"]) == [
        "Alice · primary", "Bob · primary", "Bob · primary"
    ]  # fmt: skip
    assert len(titles(name, fake, found["On-call shifts"])) == 1  # Alice's own stays hers
    assert (
        db_session.scalar(
            select(func.count()).select_from(SyncRecord).where(SyncRecord.connection_id == row.id)
        )
        == 3
    )

    # A colleague's shift moves: the push is marked at once and updated in place.
    put_shift(app, "b2", "bob@example.com", 5)
    assert the_push(db_session).dirty_since is not None
    assert sync(app, row.id) == "ok"
    assert the_push(db_session).last_updated == 1
    assert len(titles(name, fake, found["Payments on-call"])) == 3

    # The listing and "Sync now" name the push by its calendar.
    listed = signed_in.get("/api/calendar/connections").get_json()["connections"]
    assert [(c["provider"], [p["schedule"] for p in c["schedule_pushes"]]) for c in listed] == [
        (name, ["payments"])
    ]
    answer = signed_in.post("/api/calendar/sync").get_json()
    assert [c["schedule_calendar"] for c in answer["connections"]] == [None, "Payments on-call"]


def test_only_members_and_admins_push_a_schedule_and_each_once(
    app: Flask, signed_in: FlaskClient, db_session: Session, provider: tuple[str, Any], team: None
) -> None:
    name, fake = provider
    assert connect(signed_in, fake, name).status_code == 200

    assert "Only people on this schedule, and admins, can push all of it." in push(
        signed_in, name, "search"
    )
    assert "Choose one of the schedules listed." in push(signed_in, name, "nonesuch")
    push(signed_in, name, "payments")
    assert "Payments is pushed to its own calendar already." in push(signed_in, name, "payments")
    assert db_session.scalar(
        select(func.count()).select_from(CalendarConnection).where(
            CalendarConnection.parent_id.is_not(None)
        )
    ) == 1  # fmt: skip

    # An admin may push any schedule.
    alice = db_session.scalars(select(User).where(User.email == ALICE)).one()
    alice.role = "admin"
    db_session.commit()
    assert "Search on-call" in push(signed_in, name, "search")


def test_stopping_a_push_deletes_its_calendar_and_nothing_else(
    app: Flask, signed_in: FlaskClient, db_session: Session, provider: tuple[str, Any], team: None
) -> None:
    name, fake = provider
    assert connect(signed_in, fake, name).status_code == 200
    push(signed_in, name, "payments")
    assert sync(app, the_push(db_session).id) == "ok"
    action = f"/settings/connections/{name}/schedules/payments/stop"
    token = csrf_token(signed_in, "/settings")

    asked = signed_in.post(action, data={"csrf_token": token})
    assert "Stop pushing this schedule?" in asked.text  # without JavaScript: a question
    assert "Payments on-call" in calendars(name, fake)
    done = signed_in.post(
        action, data={"csrf_token": token, "confirm": "yes"}, follow_redirects=True
    )

    assert "the schedule&#39;s calendar was deleted" in done.text
    assert set(calendars(name, fake)) == {"On-call shifts"}
    assert db_session.scalar(
        select(func.count()).select_from(CalendarConnection).where(
            CalendarConnection.parent_id.is_not(None)
        )
    ) == 0  # fmt: skip
    account = connection_row(db_session, name)
    assert account is not None
    assert account.status == "active"
    again = signed_in.post(
        action, data={"csrf_token": token, "confirm": "yes"}, follow_redirects=True
    )
    assert "That schedule is not pushed to its own calendar." in again.text


def test_pushes_stop_with_their_account_and_come_back_with_it(
    app: Flask, signed_in: FlaskClient, db_session: Session, provider: tuple[str, Any], team: None
) -> None:
    name, fake = provider
    assert connect(signed_in, fake, name).status_code == 200
    push(signed_in, name, "payments")
    row = the_push(db_session)
    assert sync(app, row.id) == "ok"

    assert signed_in.delete(f"/api/calendar/{name}").status_code == 204
    assert the_push(db_session).status == "disconnected"
    assert sync(app, row.id) == "inactive"
    assert "Payments on-call" in calendars(name, fake)  # kept, as the account's calendar is

    assert connect(signed_in, fake, name).status_code == 200
    again = the_push(db_session)
    assert (again.id, again.status, again.dirty_since is not None) == (row.id, "active", True)
    assert sync(app, row.id) == "ok"
    assert the_push(db_session).calendar_id == row.calendar_id  # the same calendar again
    assert len(titles(name, fake, calendars(name, fake)["Payments on-call"])) == 3

    # Disconnecting with "remove the events" deletes the push's calendar too.
    assert signed_in.delete(f"/api/calendar/{name}?remove_events=1").status_code == 204
    assert calendars(name, fake) == {}


def test_a_push_refreshes_and_keeps_its_accounts_token(
    app: Flask, signed_in: FlaskClient, db_session: Session, fake_google: Any, team: None
) -> None:
    """A push holds no tokens: it uses its account's, and a token refreshed during its sync
    is stored on the account, where the account's next sync finds it."""
    assert connect(signed_in, fake_google, "google").status_code == 200
    push(signed_in, "google", "payments")
    account = connection_row(db_session, "google")
    assert account is not None
    account.token_expires_at = utcnow() + timedelta(minutes=2)  # within the refresh margin
    db_session.commit()
    before, refreshes = account.token_ciphertext, fake_google.stats["token:refresh_token"]

    assert sync(app, the_push(db_session).id) == "ok"

    assert fake_google.stats["token:refresh_token"] == refreshes + 1
    account = connection_row(db_session, "google")
    assert account is not None
    assert account.token_ciphertext != before
    assert account.token_expires_at is not None
    assert account.token_expires_at > utcnow() + timedelta(minutes=50)
    assert the_push(db_session).token_ciphertext is None
    assert sync(app, account.id) == "ok"
    assert fake_google.stats["token:refresh_token"] == refreshes + 1  # the fresh one served


def test_a_revoked_grant_pauses_the_push_until_the_account_reconnects(
    app: Flask, signed_in: FlaskClient, db_session: Session, provider: tuple[str, Any], team: None
) -> None:
    name, fake = provider
    assert connect(signed_in, fake, name).status_code == 200
    push(signed_in, name, "payments")
    row = the_push(db_session)
    assert sync(app, row.id) == "ok"
    fake.revoke_grants(ALICE)
    if name == "google":
        account = connection_row(db_session, name)
        assert account is not None
        account.token_expires_at = utcnow() + timedelta(minutes=2)
        db_session.commit()
    else:
        fake.expire_access_tokens(ALICE)  # Graph's 401 makes msal try its revoked refresh
    put_shift(app, "b1", "bob@example.com", 4)

    assert sync(app, row.id) == "needs_reauth"
    assert "reconnect" in (the_push(db_session).last_error or "").lower()
    page = signed_in.get("/settings").text
    assert "paused until you reconnect" in page

    assert connect(signed_in, fake, name).status_code == 200
    assert the_push(db_session).status == "active"
    assert sync(app, row.id) == "ok"
    assert the_push(db_session).last_updated == 1
