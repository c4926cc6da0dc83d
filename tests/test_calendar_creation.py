"""The crash window between creating the app's calendar and saving its id.

Through the real adapters against the fakes: a worker killed after the calendar was
created (its answer received, not yet saved), and an answer lost on the way (the fake
commits, then drops the connection), in the sync engine and in the connect flow. Google's
`calendar.app.created` scope cannot list calendars, so there the next creation leaves a
notice on the settings page; Outlook's next creation finds the calendar by its name.
"""

from __future__ import annotations

import re
from datetime import timedelta
from typing import Any

import pytest
import requests
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import select, update

from oncal_feed.calendar_creation import STALE_AFTER, orphan_notices
from oncal_feed.db import get_database, utcnow
from oncal_feed.models import CalendarConnection, CalendarCreation
from oncal_feed.providers.base import CALENDAR_NAME
from oncal_feed.sync import engine
from oncal_feed.sync.service import run_sync
from oncal_feed.validation import ShiftInput
from tests.connections.flows import connect
from tests.sync.remote import (
    ALICE,
    connect_both,
    connection,
    desired_events,
    mismatch,
    remote_events,
    tomorrow_noon,
)
from tests.sync.support import World

_CSRF = re.compile(r'name="csrf_token" value="([^"]+)"')


@pytest.fixture
def app_config(app_config: dict[str, Any], oauth_settings: dict[str, Any]) -> dict[str, Any]:
    """The test app, pointed at the fakes."""
    return {**app_config, **oauth_settings, "PROVIDER_TIMEOUT": 2}


@pytest.fixture
def world(app: Flask) -> World:
    """Alice and Bob and the `payments` schedule, with a few shifts of Alice's."""
    world = World(app)
    start = tomorrow_noon()
    with world.database.session() as session:
        from oncal_feed import shifts

        schedule = shifts.get_schedule(session, "payments")
        for n in range(5):
            begin = start + timedelta(hours=8 * n)
            item = ShiftInput(f"s{n}", ALICE, begin, begin + timedelta(hours=4))
            shifts.upsert_shift(session, schedule, item, utcnow())
    return world


class Killed(Exception):
    """Stands for the worker dying between receiving the calendar's id and saving it."""


def ours(fakes: dict[str, Any], provider: str) -> list[dict[str, Any]]:
    """Alice's calendars named like ours, in the fake."""
    return [
        cal
        for cal in fakes[provider].calendars(ALICE)
        if (cal.get("summary") or cal.get("name")) == CALENDAR_NAME
    ]


def intents(app: Flask) -> list[CalendarCreation]:
    """Every recorded creation intent."""
    with get_database(app).sessionmaker() as session:
        rows = list(session.scalars(select(CalendarCreation).order_by(CalendarCreation.id)))
        session.expunge_all()
        return rows


def lose_calendar(app: Flask, fakes: dict[str, Any], connection_id: int) -> None:
    """Leave the connection without a calendar, as the engine does when the user deleted it.

    In Outlook the calendar is deleted too (else the next creation adopts it by name).
    """
    row = connection(app, connection_id)
    if row.provider == "microsoft":
        fake = fakes["microsoft"]
        answer = requests.delete(
            f"{fake.graph_endpoint}/me/calendars/{row.calendar_id}",
            headers={"Authorization": f"Bearer {fake.access_token(ALICE)}"},
            timeout=10,
        )
        assert answer.status_code == 204, answer.text
    with get_database(app).session() as session:
        session.execute(
            update(CalendarConnection)
            .where(CalendarConnection.id == connection_id)
            .values(calendar_id=None)
        )


def assert_synced(app: Flask, fakes: dict[str, Any], connection_id: int) -> None:
    """The connection's calendar holds exactly Alice's shifts."""
    row = connection(app, connection_id)
    assert row.calendar_id is not None
    expected = desired_events(app, row.user_id, utcnow())
    assert len(expected) == 5
    assert mismatch(expected, remote_events(fakes, row)) == {}


@pytest.mark.parametrize("provider", ["google", "microsoft"])
def test_a_kill_after_the_calendar_was_made_is_resolved_by_the_next_sync(
    app: Flask,
    client: FlaskClient,
    world: World,
    fakes: dict[str, Any],
    provider: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The id and the intent go in one transaction: a kill between leaves the intent.

    Google: the next sync makes a new calendar and the settings page names the one that
    may be left. Outlook: the next sync adopts the calendar by its name, no notice.
    """
    ids = connect_both(app, client, fakes)
    connection_id = ids[provider]
    assert intents(app) == []
    lose_calendar(app, fakes, connection_id)

    def killed(*_args: object) -> None:
        raise Killed

    monkeypatch.setattr(engine, "finish_creation", killed)
    with pytest.raises(Killed):
        run_sync(app, connection_id, now=utcnow())
    monkeypatch.undo()
    assert connection(app, connection_id).calendar_id is None  # the id was not saved
    [pending] = intents(app)
    assert (pending.provider, pending.orphan_since) == (provider, None)
    # Google: the connect's calendar and the unsaved one; Outlook: just the unsaved one.
    made = 2 if provider == "google" else 1
    assert len(ours(fakes, provider)) == made

    # The killed run's lease is released by its `except Exception` path.
    report = run_sync(app, connection_id, now=utcnow())

    assert report.outcome == "ok", report
    assert_synced(app, fakes, connection_id)
    if provider == "google":
        assert len(ours(fakes, provider)) == made + 1  # the unsaved one can't be found
        [notice] = intents(app)
        assert notice.id == pending.id
        assert notice.orphan_since == pending.started_at
    else:
        [adopted] = ours(fakes, provider)  # nothing new
        assert connection(app, connection_id).calendar_id == adopted["id"]
        assert intents(app) == []


@pytest.mark.parametrize("provider", ["google", "microsoft"])
def test_an_answer_lost_after_the_fake_made_the_calendar(
    app: Flask, client: FlaskClient, world: World, fakes: dict[str, Any], provider: str
) -> None:
    """The fake creates the calendar, then drops the connection: the outcome is unknown.

    The intent stays (the calendar may exist); the next sync settles it as above.
    """
    ids = connect_both(app, client, fakes)
    connection_id = ids[provider]
    lose_calendar(app, fakes, connection_id)
    before = len(ours(fakes, provider))
    fakes[provider].faults.fail_next(kind="drop_after_commit")

    report = run_sync(app, connection_id, now=utcnow())

    assert report.outcome == "failed", report
    assert connection(app, connection_id).calendar_id is None
    assert len(ours(fakes, provider)) >= before + 1  # the fake did make it
    [pending] = intents(app)
    assert pending.orphan_since is None

    report = run_sync(app, connection_id, now=utcnow())
    assert report.outcome == "ok", report
    assert_synced(app, fakes, connection_id)
    if provider == "google":
        assert [row.orphan_since for row in intents(app)] == [pending.started_at]
    else:
        assert intents(app) == []
        assert len(ours(fakes, provider)) == before + 1


def test_a_refused_creation_leaves_no_intent(
    app: Flask, client: FlaskClient, world: World, fakes: dict[str, Any]
) -> None:
    """A 4xx means nothing was created: no intent, no notice."""
    ids = connect_both(app, client, fakes)
    lose_calendar(app, fakes, ids["google"])
    fakes["google"].faults.fail_next(status=400)

    report = run_sync(app, ids["google"], now=utcnow())

    assert report.outcome == "failed", report
    assert intents(app) == []


@pytest.mark.parametrize("provider", ["google", "microsoft"])
def test_a_connect_whose_calendar_answer_was_lost(
    app: Flask, client: FlaskClient, world: World, fakes: dict[str, Any], provider: str
) -> None:
    """The connect flow records the intent apart from its own (rolled back) transaction."""
    ids = connect_both(app, client, fakes)  # signs Alice in
    lose_calendar(app, fakes, ids[provider])  # so reconnecting makes a calendar
    before = len(ours(fakes, provider))
    fakes[provider].faults.fail_next(kind="drop_after_commit")

    failed = connect(client, fakes[provider], provider)

    assert failed.status_code >= 400
    assert len(ours(fakes, provider)) >= before + 1
    [pending] = intents(app)
    assert pending.orphan_since is None

    done = connect(client, fakes[provider], provider)
    assert done.status_code == 200, done.get_json()
    if provider == "google":
        assert [row.orphan_since for row in intents(app)] == [pending.started_at]
    else:
        assert intents(app) == []
        assert len(ours(fakes, provider)) == before + 1


def test_the_settings_page_tells_and_the_notice_can_be_dismissed(
    app: Flask,
    client: FlaskClient,
    world: World,
    fakes: dict[str, Any],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """After an interrupted Google setup the page says, in plain words, what may be left."""
    ids = connect_both(app, client, fakes)
    page = client.get("/settings").get_data(as_text=True)
    assert "may be left in your" not in page
    lose_calendar(app, fakes, ids["google"])
    monkeypatch.setattr(engine, "finish_creation", lambda *_: (_ for _ in ()).throw(Killed()))
    with pytest.raises(Killed):
        run_sync(app, ids["google"], now=utcnow())
    monkeypatch.undo()
    assert run_sync(app, ids["google"], now=utcnow()).outcome == "ok"

    page = client.get("/settings").get_data(as_text=True)
    [notice] = intents(app)
    assert (
        f"An empty calendar named “{CALENDAR_NAME}” may be left in your Google Calendar account"
        in page
    )
    assert "Google Calendar&#39;s settings" in page or "Google Calendar's settings" in page
    assert f'id="dismiss-leftover-{notice.id}"' in page
    token = _CSRF.search(page)
    assert token is not None

    # Another user's notice id is refused quietly, and nothing is removed.
    answer = client.post(
        f"/settings/leftovers/{notice.id + 1000}/dismiss", data={"csrf_token": token.group(1)}
    )
    assert answer.status_code == 303
    assert len(intents(app)) == 1

    answer = client.post(
        f"/settings/leftovers/{notice.id}/dismiss", data={"csrf_token": token.group(1)}
    )
    assert answer.status_code == 303
    assert intents(app) == []
    assert "may be left in your" not in client.get("/settings").get_data(as_text=True)


def test_an_intent_left_alone_becomes_a_notice_after_a_while(app: Flask, world: World) -> None:
    """An intent nobody followed up (no new creation) shows once it is STALE_AFTER old."""
    now = utcnow()
    user_id = world.user_id("alice")
    with get_database(app).session() as session:
        session.add(
            CalendarCreation(
                user_id=user_id,
                provider="google",
                calendar_name=CALENDAR_NAME,
                request_id="r-1",
                started_at=now,
            )
        )
    with get_database(app).sessionmaker() as session:
        assert orphan_notices(session, user_id, now + STALE_AFTER / 2) == []
        [notice] = orphan_notices(session, user_id, now + STALE_AFTER * 2)
        assert (notice.provider, notice.calendar_name) == ("google", CALENDAR_NAME)
        assert orphan_notices(session, world.user_id("bob"), now + STALE_AFTER * 2) == []
