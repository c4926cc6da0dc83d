"""Polling on the queue: the worker polls, pushes changes to both fake calendars, once each."""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import timedelta
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import select

from oncal_feed.db import utcnow
from oncal_feed.models import CalendarConnection, Source, User
from oncal_feed.sources.tasks import claim_overdue, get_poller
from oncal_feed.sync import start_embedded_worker
from oncal_feed.sync.tasks import get_queue
from tests.connections.flows import ALICE, connect
from tests.fakes.fixtures import sign_in_client
from tests.fakes.google import FakeGoogle
from tests.fakes.microsoft import FakeMicrosoft
from tests.sources.conftest import Sources, api_instant, relative_feed
from tests.sources.feed_server import FeedServer


@pytest.fixture
def app_config(app_config: dict[str, Any], oauth_settings: dict[str, Any]) -> dict[str, Any]:
    """Sources on loopback allowed, Google and Microsoft pointed at the fakes."""
    return {**app_config, **oauth_settings}


def wait_for(predicate: Callable[[], bool], timeout: float = 30.0) -> bool:
    """Poll `predicate` until it holds or `timeout` passes."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.1)
    return predicate()


def test_a_change_in_the_source_reaches_both_calendars_once(
    app: Flask,
    client: FlaskClient,
    api: FlaskClient,
    world: Sources,
    feeds: FeedServer,
    fake_google: FakeGoogle,
    fake_microsoft: FakeMicrosoft,
) -> None:
    """Worker running: add a source, fail a poll, change the feed; each calendar ends right."""
    with world.database.sessionmaker() as session:
        alice = session.scalar(select(User).where(User.email == "alice@example.com"))
        assert alice is not None
    signed_in = sign_in_client(client, alice)
    for fake, provider in ((fake_google, "google"), (fake_microsoft, "microsoft")):
        assert connect(signed_in, fake, provider).status_code in (200, 302)
    start = (utcnow() + timedelta(days=1)).replace(minute=0, second=0, microsecond=0)
    feeds.put("/team.ics", relative_feed(start, ["alice@example.com", "bob@example.com"]))
    stop = start_embedded_worker(app, workers=2)
    try:
        created = api.post(
            "/api/v1/schedules/payments/sources",
            json={
                "kind": "ics",
                "name": "Team",
                "url": feeds.url("/team.ics"),
                "poll_interval": 15,
            },
        )
        assert created.status_code == 201, created.get_json()
        assert wait_for(lambda: len(fake_google.events(ALICE)) == 1)
        assert wait_for(lambda: len(fake_microsoft.events(ALICE)) == 1)

        # The next poll fails; the one after sees the change (Alice moves an hour and
        # takes a second shift). Nothing is lost or doubled on the way.
        feeds.etags = False
        feeds.fault("/team.ics", "500")
        moved = start + timedelta(hours=1)
        feeds.put(
            "/team.ics",
            relative_feed(moved, ["alice@example.com", "bob@example.com", "alice@example.com"]),
        )
        assert wait_for(lambda: 500 in feeds.statuses("/team.ics"), timeout=40)
        assert len(fake_google.events(ALICE)) == 1
        assert wait_for(lambda: len(fake_google.events(ALICE)) == 2, timeout=60)
        assert wait_for(lambda: len(fake_microsoft.events(ALICE)) == 2, timeout=30)
    finally:
        stop()
        get_queue(app).huey.flush()
    expected = [f"{moved:%Y-%m-%dT%H:%MZ}", f"{moved + timedelta(days=2):%Y-%m-%dT%H:%MZ}"]
    google = fake_google.events(ALICE)
    assert sorted(api_instant(e["start"]) for e in google) == expected
    assert sorted(api_instant(e["start"]) for e in fake_microsoft.events(ALICE)) == expected
    assert len({e["id"] for e in google}) == 2
    with world.database.sessionmaker() as session:
        states = session.scalars(select(CalendarConnection.status)).all()
        source = session.scalar(select(Source))
    assert states == ["active", "active"]
    assert source is not None
    assert source.status == "ok"


def test_sweep_claims_overdue_sources_once(world: Sources, feeds: FeedServer) -> None:
    """A source whose poll task was lost is found by the sweep, and not again right after."""
    source_id = world.add(feeds.url("/x.ics"))
    now = utcnow()
    with world.database.session() as session:
        row = session.get(Source, source_id)
        assert row is not None
        row.next_poll_at = now - timedelta(minutes=5)
    assert claim_overdue(world.app, now) == [source_id]
    assert claim_overdue(world.app, now) == []
    assert claim_overdue(world.app, now + timedelta(minutes=11)) == [source_id]


def test_poll_task_drops_itself_when_not_due(world: Sources, feeds: FeedServer) -> None:
    """A second task for the same due time finds it moved on and fetches nothing."""
    feeds.put("/x.ics", relative_feed(utcnow() + timedelta(days=1), ["alice@example.com"]))
    source_id = world.add(feeds.url("/x.ics"))
    poller = get_poller(world.app)
    with world.database.session() as session:
        row = session.get(Source, source_id)
        assert row is not None
        row.next_poll_at = utcnow() - timedelta(seconds=1)
    assert poller._poll(source_id) == "changed"
    assert poller._poll(source_id) == "not-due"
    assert feeds.statuses("/x.ics") == [200]
    get_queue(world.app).huey.flush()
