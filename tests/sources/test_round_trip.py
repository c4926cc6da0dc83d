"""Each tool's sample feed: source → shifts → our ICS feed and the Google and Graph fakes.

The instants are checked across the changes to summer time in the US (8 March 2026) and
the EU (29 March 2026): Outlook's Windows zone names with a custom VTIMEZONE, Google's
X-WR-TIMEZONE all-day events, PagerDuty's UTC times. Every feed we render is kept for
`../shared/tools/ics-check` (tests/rendering/ics_checks.py).
"""

from __future__ import annotations

import gzip
from datetime import UTC
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient
from freezegun import freeze_time
from sqlalchemy import select

from oncal_feed.feeds.store import first_feed
from oncal_feed.feeds.tokens import feed_links
from oncal_feed.models import CalendarConnection, User
from oncal_feed.sync.service import run_sync
from tests.connections.flows import ALICE, connect
from tests.fakes.fixtures import sign_in_client
from tests.fakes.google import FakeGoogle
from tests.fakes.microsoft import FakeMicrosoft
from tests.rendering.ics_checks import ParsedFeed, keep_feed
from tests.sources.conftest import NOW, Sources, api_instant, sample
from tests.sources.feed_server import FeedServer

__all__ = ["keep_feed"]

# sample file -> (the app user whose calendars are checked, a fixed user or None, their
# shifts as (start, end) in UTC)
CASES: dict[str, tuple[str, str | None, list[tuple[str, str]]]] = {
    "pagerduty-schedule.ics": ("alice@example.com", None, [
        ("2026-03-02T09:00Z", "2026-03-09T08:00Z"),
    ]),
    "pagerduty-user.ics": ("bob@example.com", "bob@example.com", [
        ("2026-03-03T17:00Z", "2026-03-04T01:00Z"), ("2026-03-10T17:00Z", "2026-03-11T01:00Z"),
    ]),
    "opsgenie.ics": ("alice@example.com", None, [("2026-03-02T08:00Z", "2026-03-02T20:00Z")]),
    "grafana-oncall.ics": ("bob@example.com", None, [("2026-03-03T09:00Z", "2026-03-04T09:00Z")]),
    "goalert-user.ics": ("zoe@example.com", "zoe@example.com", [
        ("2026-03-07T15:00Z", "2026-03-09T15:00Z"),
    ]),
    # 09:00 Berlin is 08:00Z in winter and 07:00Z from 29 March; the override moved one
    # occurrence to 12:00 (10:00Z); 6 April is excluded.
    "outlook-published.ics": ("zoe@example.com", None, [
        ("2026-03-02T08:00Z", "2026-03-03T08:00Z"), ("2026-03-09T08:00Z", "2026-03-10T08:00Z"),
        ("2026-03-16T08:00Z", "2026-03-17T08:00Z"), ("2026-03-23T08:00Z", "2026-03-24T08:00Z"),
        ("2026-03-30T10:00Z", "2026-03-31T10:00Z"), ("2026-04-13T07:00Z", "2026-04-14T07:00Z"),
        ("2026-04-20T07:00Z", "2026-04-21T07:00Z"),
    ]),
    # 09:00 New York is 14:00Z before 8 March and 13:00Z after; 17 March is excluded.
    "google-secret.ics": ("bob@example.com", None, [
        ("2026-03-03T14:00Z", "2026-03-03T22:00Z"), ("2026-03-10T13:00Z", "2026-03-10T21:00Z"),
        ("2026-03-24T13:00Z", "2026-03-24T21:00Z"),
    ]),
}  # fmt: skip


@pytest.fixture
def app_config(app_config: dict[str, Any], oauth_settings: dict[str, Any]) -> dict[str, Any]:
    """Sources on loopback allowed, Google and Microsoft pointed at the fakes."""
    return {**app_config, **oauth_settings}


def _user(world: Sources, email: str) -> User:
    with world.database.sessionmaker() as session:
        user = session.scalar(select(User).where(User.email == email))
        assert user is not None
        return user


@pytest.mark.parametrize("name", sorted(CASES))
def test_sample_reaches_our_feed_and_both_calendars(
    name: str,
    app: Flask,
    client: FlaskClient,
    world: Sources,
    feeds: FeedServer,
    fake_google: FakeGoogle,
    fake_microsoft: FakeMicrosoft,
    keep_feed: Any,
) -> None:
    """The person's shifts appear once, at the right instants, in all three places."""
    email, fixed, expected = CASES[name]
    user = _user(world, email)
    signed_in = sign_in_client(client, user)
    for fake, provider in ((fake_google, "google"), (fake_microsoft, "microsoft")):
        assert connect(signed_in, fake, provider).status_code in (200, 302)
    feeds.put(f"/{name}", sample(name))
    source_id = world.add(feeds.url(f"/{name}"), user_email=fixed)
    report = world.poll(source_id)
    assert report.outcome == "changed", report.problem
    mine = [(s.starts_at, s.ends_at) for s in world.shifts() if s.user_id == user.id]
    assert [(f"{a:%Y-%m-%dT%H:%MZ}", f"{b:%Y-%m-%dT%H:%MZ}") for a, b in mine] == expected

    with world.database.sessionmaker() as session:
        ids = session.scalars(
            select(CalendarConnection.id).where(CalendarConnection.user_id == user.id)
        ).all()
    assert len(ids) == 2
    for connection_id in ids:
        sync = run_sync(app, connection_id, now=NOW)
        assert sync.outcome == "ok", sync
    google = sorted(
        (api_instant(e["start"]), api_instant(e["end"])) for e in fake_google.events(ALICE)
    )
    graph = sorted(
        (api_instant(e["start"]), api_instant(e["end"])) for e in fake_microsoft.events(ALICE)
    )
    assert google == expected
    assert graph == expected

    with app.app_context(), world.database.sessionmaker() as session:
        feed = first_feed(session, user)
        path = feed_links(feed).https.removeprefix(app.config["BASE_URL"])
    with freeze_time(NOW):
        response = client.get(path)
    assert response.status_code == 200
    body = response.get_data()
    if response.headers.get("Content-Encoding") == "gzip":
        body = gzip.decompress(body)
    parsed: ParsedFeed = keep_feed(body, name.removesuffix(".ics"))
    got = sorted(
        (
            event.decoded("DTSTART").astimezone(UTC).strftime("%Y-%m-%dT%H:%MZ"),
            event.decoded("DTEND").astimezone(UTC).strftime("%Y-%m-%dT%H:%MZ"),
        )
        for event in parsed.events.values()
    )
    assert got == expected
