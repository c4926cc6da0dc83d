"""Fixtures of the feed tests: a frozen clock, people with shifts, feed URLs, SQL counting."""

from __future__ import annotations

import gzip
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient
from freezegun import freeze_time
from freezegun.api import FrozenDateTimeFactory
from sqlalchemy.orm import Session

from oncal_feed import accounts, shifts
from oncal_feed.db import get_database
from oncal_feed.feeds.store import first_feed
from oncal_feed.feeds.tokens import feed_links
from oncal_feed.models import Feed, Schedule, User
from oncal_feed.validation import ScheduleInput, ShiftInput, UserInput
from tests.rendering.ics_checks import ParsedFeed, keep_feed
from tests.statements import Statements, recorded

__all__ = ["NOW", "TODAY", "Fetched", "Statements", "World", "keep_feed"]

# Tuesday 10 March 2026, noon UTC: the feed window's day is 2026-03-10.
NOW = datetime(2026, 3, 10, 12, tzinfo=UTC)
TODAY = datetime(2026, 3, 10, tzinfo=UTC)


@pytest.fixture
def clock() -> Iterator[FrozenDateTimeFactory]:
    """Freeze time at NOW; tests move it with `clock.move_to(...)` or `clock.tick(...)`."""
    with freeze_time(NOW) as frozen:
        yield frozen


@dataclass
class World:
    """People, schedules and a way to add shifts, all written through the shift store."""

    session: Session
    app: Flask
    schedules: dict[str, Schedule] = field(default_factory=dict)
    users: dict[str, User] = field(default_factory=dict)

    def user(self, email: str, name: str, **settings: Any) -> User:
        """Create a user (with first-feed settings such as busy=True) and commit."""
        user = accounts.create_user(self.session, UserInput(email, name, "Europe/Berlin"), NOW)
        self.session.flush()
        feed = first_feed(self.session, user)
        for key, value in settings.items():
            setattr(feed, key, value)
        self.session.commit()
        self.users[email] = user
        return user

    def feed(self, email: str) -> Feed:
        """The user's first feed as stored now."""
        feed = first_feed(self.session, self.users[email])
        self.session.refresh(feed)
        return feed

    def schedule(
        self, key: str, name: str, zone: str = "Europe/Berlin", url: str | None = None,
        at: datetime = NOW,
    ) -> Schedule:  # fmt: skip
        """Create or change a schedule and commit."""
        schedule, _, _ = shifts.upsert_schedule(
            self.session, key, ScheduleInput(name, zone, url), at
        )
        self.session.commit()
        self.schedules[key] = schedule
        return schedule

    def shift(
        self,
        schedule: str,
        external_id: str,
        email: str,
        starts_at: datetime,
        length: timedelta = timedelta(hours=8),
        *,
        notes: str = "",
        role: str = "primary",
        at: datetime = NOW,
    ) -> str:
        """Create or update a shift and commit; return its UID."""
        data = ShiftInput(external_id, email, starts_at, starts_at + length, role, notes)
        shifts.upsert_shift(self.session, self.schedules[schedule], data, at)
        self.session.commit()
        return shifts.get_shift(self.session, self.schedules[schedule], external_id).uid

    def delete(self, schedule: str, external_id: str, at: datetime = NOW) -> None:
        """Tombstone a shift and commit."""
        shifts.delete_shift(self.session, self.schedules[schedule], external_id, at)
        self.session.commit()

    def path(self, email: str) -> str:
        """The path of the user's first feed (re-read, so rotations count)."""
        feed = self.feed(email)
        with self.app.app_context():
            url = feed_links(feed).https
        return url.removeprefix(self.app.config["BASE_URL"])

    def reload(self, email: str) -> User:
        """The user row as stored now."""
        user = self.users[email]
        self.session.refresh(user)
        return user


@pytest.fixture
def world(app: Flask, db_session: Session, clock: FrozenDateTimeFactory) -> World:
    """An empty world on the test database, with the clock frozen at NOW."""
    return World(db_session, app)


@pytest.fixture
def alice(world: World) -> User:
    """Alice, with a non-ASCII name, and the `payments` schedule."""
    world.schedule("payments", "Payments", url="https://runbooks.example.com/payments")
    return world.user("alice@example.com", "Alice Ångström")


@pytest.fixture
def statements(app: Flask) -> Iterator[Statements]:
    """Count SQL with a `before_cursor_execute` listener on both of the app's engines."""
    database = get_database(app)
    engines = (database.engine, database.autocommit_engine)
    with recorded(*engines) as recorder:
        recorder.on = False  # until the test calls record()
        yield recorder


class FeedClient(FlaskClient):
    """A test client that keeps (as an artifact) and double-parses every calendar it gets.

    So every feed any test here receives is checked, not only the ones it looks into.
    """

    keep: Callable[..., ParsedFeed] | None = None
    label = ""
    last: ParsedFeed | None = None

    def open(self, *args: Any, **kwargs: Any) -> Any:
        """Send the request; check and keep a calendar body."""
        response = super().open(*args, **kwargs)
        body = response.get_data()
        if response.status_code == 200 and response.mimetype == "text/calendar" and body:
            if response.headers.get("Content-Encoding") == "gzip":
                body = gzip.decompress(body)
            assert self.keep is not None
            self.last = self.keep(body, self.label)
        return response


@pytest.fixture
def client(app: Flask, keep_feed: Callable[..., ParsedFeed]) -> FeedClient:
    """The test client of these tests: every feed received is kept and parsed twice."""
    app.test_client_class = FeedClient
    feed_client = app.test_client()
    assert isinstance(feed_client, FeedClient)
    feed_client.keep = keep_feed
    return feed_client


@dataclass
class Fetched:
    """A 200 feed response, its decoded body, and the body parsed by both parsers."""

    response: Any
    body: bytes
    feed: ParsedFeed


@pytest.fixture
def fetch(client: FeedClient) -> Callable[..., Fetched]:
    """GET a feed, expect 200, and return it un-gzipped and parsed (and kept, by `client`).

    `fetch(path, label="", headers={...})`.
    """

    def get(path: str, label: str = "", headers: dict[str, str] | None = None) -> Fetched:
        client.label = label
        response = client.get(path, headers=headers or {})
        client.label = ""
        assert response.status_code == 200, response.get_data()
        body = response.get_data()
        if response.headers.get("Content-Encoding") == "gzip":
            body = gzip.decompress(body)
        assert client.last is not None
        return Fetched(response, body, client.last)

    return get
