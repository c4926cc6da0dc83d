"""GET/HEAD /feeds/<token>.ics: content, options, 404s, validators, gzip, caches, fetch records."""

from __future__ import annotations

import gzip
import hashlib
import logging
import re
import uuid
from collections.abc import Callable, Iterator
from datetime import timedelta
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient
from freezegun.api import FrozenDateTimeFactory
from itsdangerous import URLSafeSerializer
from prometheus_client import REGISTRY
from sqlalchemy import text
from sqlalchemy.exc import OperationalError
from werkzeug.http import http_date

from oncal_feed import accounts, create_app
from oncal_feed.db import get_database, utcnow
from oncal_feed.feeds.service import FeedRow, record_fetch
from oncal_feed.feeds.store import rotate_feed
from oncal_feed.feeds.tokens import make_feed_token
from oncal_feed.feeds.views import feed_service
from oncal_feed.models import Feed, User
from oncal_feed.validation import UserInput
from tests.conftest import delete_keys
from tests.feeds.conftest import NOW, TODAY, Fetched, Statements, World
from tests.processes import free_port
from tests.statements import recorded

Fetch = Callable[..., Fetched]
ALICE = "alice@example.com"
GOOGLE = "Google-Calendar-Importer"


@pytest.fixture
def week(world: World, alice: User, clock: FrozenDateTimeFactory) -> dict[str, str]:
    """Alice's shifts around NOW in `payments` and `search`; their UIDs by name."""
    world.schedule("search", "Search", zone="America/New_York")
    return {
        "yesterday": world.shift("payments", "p1", ALICE, TODAY - timedelta(hours=16)),
        "tomorrow": world.shift("payments", "p2", ALICE, TODAY + timedelta(days=1, hours=8)),
        "search": world.shift("search", "s1", ALICE, TODAY + timedelta(days=3, hours=14)),
    }


# ---------------------------------------------------------------- content


def test_feed_is_a_calendar_with_the_users_shifts(
    world: World, week: dict[str, str], fetch: Fetch
) -> None:
    """200 text/calendar with every shift, named after the user; the HTTP headers promised."""
    got = fetch(world.path(ALICE))
    headers = got.response.headers
    assert headers["Content-Type"] == "text/calendar; charset=utf-8"
    assert headers["Content-Disposition"] == 'inline; filename="oncall.ics"'
    assert headers["Cache-Control"] == "private, max-age=300"
    assert headers["Vary"] == "Accept-Encoding"
    assert headers["X-Content-Type-Options"] == "nosniff"
    assert re.fullmatch(r'"[0-9a-f]{32}"', headers["ETag"])
    assert "Content-Encoding" not in headers
    assert int(headers["Content-Length"]) == len(got.body)
    assert set(got.feed.events) == set(week.values())
    assert got.feed.text("X-WR-CALNAME") == got.feed.text("NAME") == "On-call — Alice Ångström"
    assert b"\r\nMETHOD:" not in got.body
    event = got.feed.event(week["tomorrow"])
    assert event.decoded("DTSTART") == TODAY + timedelta(days=1, hours=8)
    assert str(event["URL"]) == "https://runbooks.example.com/payments"
    assert (str(event["TRANSP"]), str(event["STATUS"]), int(event["SEQUENCE"])) == (
        "TRANSPARENT", "CONFIRMED", 1,
    )  # fmt: skip


def test_only_the_owners_shifts(world: World, week: dict[str, str], fetch: Fetch) -> None:
    """Bob's shifts are not in Alice's feed, and the other way round."""
    world.user("bob@example.com", "Bob")
    bobs = world.shift("payments", "b1", "bob@example.com", TODAY + timedelta(days=2))
    assert bobs not in fetch(world.path(ALICE), "alice").feed.events
    assert set(fetch(world.path("bob@example.com"), "bob").feed.events) == {bobs}


def test_empty_feed(world: World, alice: User, clock: FrozenDateTimeFactory, fetch: Fetch) -> None:
    """A user without shifts gets a valid, empty calendar."""
    assert fetch(world.path(ALICE)).feed.events == {}


def test_window_is_whole_utc_days(
    world: World, alice: User, clock: FrozenDateTimeFactory, fetch: Fetch
) -> None:
    """[today - 30 d, today + 366 d) by default; the same bytes all day; new ones at midnight."""
    start, end = TODAY - timedelta(days=30), TODAY + timedelta(days=366)
    hour = timedelta(hours=1)
    after_start = world.shift("payments", "a", ALICE, start - hour, timedelta(minutes=61))
    before_end = world.shift("payments", "b", ALICE, end - timedelta(minutes=1))
    world.shift("payments", "ends-at-start", ALICE, start - hour, hour)
    at_end = world.shift("payments", "starts-at-end", ALICE, end)
    path = world.path(ALICE)

    clock.move_to(TODAY)
    first = fetch(path, "midnight")
    assert set(first.feed.events) == {after_start, before_end}
    clock.move_to(TODAY + timedelta(hours=23, minutes=59, seconds=59))
    last = fetch(path, "last-second")
    assert (last.body, last.response.headers["ETag"]) == (
        first.body, first.response.headers["ETag"],
    )  # fmt: skip
    clock.move_to(TODAY + timedelta(days=1))
    next_day = fetch(path, "next-day")
    assert next_day.response.headers["ETag"] != first.response.headers["ETag"]
    assert set(next_day.feed.events) == {before_end, at_end}


def test_options_choose_window_schedules_and_busy(
    world: World, week: dict[str, str], fetch: Fetch
) -> None:
    """past_days, future_days, repeated schedule and busy shape the feed."""
    path = world.path(ALICE)
    assert set(fetch(path + "?past_days=0", "past0").feed.events) == {
        week["tomorrow"], week["search"],
    }  # fmt: skip
    assert set(fetch(path + "?future_days=1", "future1").feed.events) == {
        week["yesterday"], week["tomorrow"],
    }  # fmt: skip
    assert set(fetch(path + "?schedule=search", "search").feed.events) == {week["search"]}
    both = fetch(path + "?schedule=search&schedule=payments", "both")
    assert set(both.feed.events) == set(week.values())
    assert both.feed.text("X-WR-CALNAME") == "On-call — Alice Ångström (payments, search)"
    busy = fetch(path + "?busy=1", "busy")
    assert {str(e["TRANSP"]) for e in busy.feed.events.values()} == {"OPAQUE"}


def test_user_settings_are_the_defaults(world: World, fetch: Fetch) -> None:
    """Without parameters the user's stored feed settings apply; parameters override them."""
    world.schedule("payments", "Payments")
    world.schedule("search", "Search")
    world.user(
        ALICE, "Alice", busy=True, past_days=0, future_days=2, schedule_keys=["search"],
    )  # fmt: skip
    with_settings = {
        world.shift("search", "s0", ALICE, TODAY + timedelta(hours=9)),
        world.shift("search", "s2", ALICE, TODAY + timedelta(days=2, hours=9)),
    }
    world.shift("search", "old", ALICE, TODAY - timedelta(days=1))
    world.shift("search", "far", ALICE, TODAY + timedelta(days=3))
    world.shift("payments", "p0", ALICE, TODAY + timedelta(hours=9))
    path = world.path(ALICE)
    got = fetch(path, "settings")
    assert set(got.feed.events) == with_settings
    assert {str(e["TRANSP"]) for e in got.feed.events.values()} == {"OPAQUE"}
    free = fetch(path + "?busy=0&schedule=payments", "overridden")
    assert [str(e["TRANSP"]) for e in free.feed.events.values()] == ["TRANSPARENT"]


def test_dst_and_tombstones_render(world: World, alice: User, fetch: Fetch) -> None:
    """Cancelled shifts from the last 30 days show as CANCELLED with a higher SEQUENCE."""
    live = world.shift("payments", "live", ALICE, TODAY + timedelta(days=5))
    recent = world.shift("payments", "recent", ALICE, TODAY + timedelta(days=6))
    world.delete("payments", "recent", at=TODAY - timedelta(days=30))  # oldest still shown
    old = world.shift("payments", "old", ALICE, TODAY + timedelta(days=7))
    world.delete("payments", "old", at=TODAY - timedelta(days=30, seconds=1))
    got = fetch(world.path(ALICE))
    assert set(got.feed.events) == {live, recent}
    cancelled = got.feed.event(recent)
    assert (str(cancelled["STATUS"]), int(cancelled["SEQUENCE"])) == ("CANCELLED", 2)
    assert old not in got.feed.events


def test_schedule_rename_raises_sequence_and_stamp(
    world: World, alice: User, clock: FrozenDateTimeFactory, fetch: Fetch
) -> None:
    """A renamed schedule re-announces its events: SEQUENCE + 1, DTSTAMP = rename time."""
    uid = world.shift("payments", "p", ALICE, TODAY + timedelta(days=1))
    path = world.path(ALICE)
    before = fetch(path, "before").feed.event(uid)
    renamed_at = NOW + timedelta(hours=1)
    world.schedule(
        "payments", "Payments EU", url="https://runbooks.example.com/payments", at=renamed_at
    )
    after = fetch(path, "after").feed.event(uid)
    assert (int(before["SEQUENCE"]), int(after["SEQUENCE"])) == (1, 2)
    assert before.decoded("DTSTAMP") == NOW
    assert after.decoded("DTSTAMP") == after.decoded("LAST-MODIFIED") == renamed_at
    assert str(after["SUMMARY"]) == "On-call · Payments EU"


# ---------------------------------------------------------------- bad input


BAD_QUERIES = [
    ("past_days=-1", "past_days", "from 0 to 366"),
    ("past_days=367", "past_days", "from 0 to 366"),
    ("past_days=x", "past_days", "whole number"),
    ("past_days=", "past_days", "whole number"),
    ("past_days=1.5", "past_days", "whole number"),
    ("past_days=%D9%A3", "past_days", "whole number"),  # Arabic-Indic digit three
    ("past_days=+1", "past_days", "whole number"),
    ("past_days=1&past_days=2", "past_days", "at most once"),
    ("future_days=0", "future_days", "from 1 to 1096"),
    ("future_days=1097", "future_days", "from 1 to 1096"),
    ("future_days=99999999999999999999", "future_days", "from 1 to 1096"),
    ("busy=yes", "busy", "1 or 0"),
    ("busy=", "busy", "1 or 0"),
    ("busy=true", "busy", "1 or 0"),
    ("schedule=", "schedule", "must be a schedule key"),
    ("schedule=Pay%20ments", "schedule", "must be a schedule key"),
    ("schedule=" + "a" * 65, "schedule", "must be a schedule key"),
]


@pytest.mark.parametrize(("query", "field", "problem"), BAD_QUERIES)
def test_bad_parameters_are_400_naming_them(
    world: World, alice: User, client: FlaskClient, query: str, field: str, problem: str
) -> None:
    """Each bad value gets a JSON 400 that names the parameter and the problem."""
    response = client.get(world.path(ALICE) + "?" + query)
    assert response.status_code == 400
    body = response.get_json()
    assert body["error"] == "bad_request"
    assert [e["field"] for e in body["errors"]] == [field]
    assert problem in body["errors"][0]["problem"]


def test_every_bad_parameter_is_reported_at_once(
    world: World, alice: User, client: FlaskClient
) -> None:
    """One 400 lists every problem; unknown parameters (cache busters) are ignored."""
    response = client.get(
        world.path(ALICE) + "?past_days=x&future_days=0&busy=2&schedule=a&schedule=b&_=123"
    )
    assert response.status_code == 400
    fields = [(e["field"], e["problem"]) for e in response.get_json()["errors"]]
    assert [f for f, _ in fields] == ["past_days", "future_days", "busy"]
    assert client.get(world.path(ALICE) + "?_=123&utm_source=x").status_code == 200


def dead_links(world: World, app: Flask) -> dict[str, str]:
    """Paths of feeds that don't exist, by reason; Alice's own link is rotated away."""
    key = app.config["SECRET_KEY"]
    good = world.path(ALICE).removeprefix("/feeds/").removesuffix(".ics")
    payload, signature = good.rsplit(".", 1)
    ghost = Feed(public_id="f_nobody_here", generation=1)
    serializer = URLSafeSerializer(
        key, salt="oncal-feed.other", signer_kwargs={"digest_method": hashlib.sha256}
    )
    tokens = {
        "forged": f"{payload}.{signature[::-1]}",
        "truncated": good[:-4],
        "garbage": "hello",
        "odd bytes": "%00%FF%F0%9F%92",
        "oversized": "A" * 4000,
        "other salt": serializer.dumps([world.users[ALICE].public_id, 1]),
        "unknown user": make_feed_token(key, ghost),
        "future generation": make_feed_token(
            key, Feed(public_id=world.users[ALICE].public_id, generation=99)
        ),
    }
    rotate_feed(world.session, world.feed(ALICE), NOW)
    world.session.commit()
    tokens["revoked"] = good
    return {reason: f"/feeds/{token}.ics" for reason, token in tokens.items()}


def test_dead_links_get_one_identical_404(
    world: World, alice: User, app: Flask, client: FlaskClient
) -> None:
    """Forged, truncated, revoked or unknown: the same 404, naming no token, never a 500."""
    links = dead_links(world, app)
    answers = {}
    for reason, path in links.items():
        for method in ("GET", "HEAD"):
            response = client.open(path + "?past_days=x", method=method)
            assert response.status_code == 404, (reason, method)
            answers[reason, method] = (
                response.headers["Content-Type"], response.headers["Content-Length"],
                response.get_data(),
            )  # fmt: skip
    assert len({v for (_, m), v in answers.items() if m == "GET"}) == 1
    body = answers["revoked", "GET"][2]
    assert b"no calendar feed at this address" in body
    for path in links.values():
        assert path.removeprefix("/feeds/")[:12].encode() not in body
    assert {v[:2] for (_, m), v in answers.items() if m == "HEAD"} == {
        answers["revoked", "GET"][:2]
    }
    assert all(v[2] == b"" for (_, m), v in answers.items() if m == "HEAD")


def test_rotation_kills_the_old_url_at_once(world: World, alice: User, client: FlaskClient) -> None:
    """The old URL answers 404 right after rotation, even with its cached body around."""
    old = world.path(ALICE)
    assert client.get(old).status_code == 200
    rotate_feed(world.session, world.feed(ALICE), NOW)
    world.session.commit()
    assert client.get(old).status_code == 404
    assert client.get(world.path(ALICE)).status_code == 200


def test_other_methods_are_refused(world: World, alice: User, client: FlaskClient) -> None:
    """Feeds are read-only."""
    assert client.post(world.path(ALICE)).status_code == 405


# ---------------------------------------------------------------- HTTP semantics


def test_head_is_get_without_a_body(
    world: World, week: dict[str, str], client: FlaskClient
) -> None:
    """HEAD has GET's status and headers (Content-Length included), with no body."""
    path = world.path(ALICE)
    for headers in ({}, {"Accept-Encoding": "gzip"}):
        get, head = client.get(path, headers=headers), client.head(path, headers=headers)
        assert head.status_code == 200
        assert head.get_data() == b""
        assert dict(head.headers) == dict(get.headers)
        assert int(head.headers["Content-Length"]) == len(get.get_data()) > 0


@pytest.mark.parametrize(
    "header", ["{tag}", "W/{tag}", '"other", {tag}', "*"], ids=["exact", "weak", "list", "star"]
)
def test_if_none_match_gives_304(
    world: World, week: dict[str, str], client: FlaskClient, header: str
) -> None:
    """A matching If-None-Match gets a bodiless 304 with the validators and caching headers."""
    path = world.path(ALICE)
    tag = client.get(path).headers["ETag"]
    response = client.get(path, headers={"If-None-Match": header.format(tag=tag)})
    assert response.status_code == 304
    assert response.get_data() == b""
    assert response.headers["ETag"] == tag
    assert response.headers["Cache-Control"] == "private, max-age=300"
    assert response.headers["Vary"] == "Accept-Encoding"
    assert "text/html" not in response.headers.get("Content-Type", "")
    head = client.head(path, headers={"If-None-Match": tag})
    assert head.status_code == 304


def test_answers_are_counted_by_status_and_bodies_timed(
    world: World, week: dict[str, str], client: FlaskClient
) -> None:
    """Prometheus: feed answers by status (the 304 share) and the time of those with a body."""

    def counts() -> dict[str, float]:
        return {
            status: REGISTRY.get_sample_value("oncal_feed_requests_total", {"status": status})
            or 0.0
            for status in ("200", "304", "400", "404")
        } | {"timed": REGISTRY.get_sample_value("oncal_feed_render_seconds_count") or 0.0}

    path = world.path(ALICE)
    before = counts()
    tag = client.get(path).headers["ETag"]
    for _ in range(2):
        client.get(path, headers={"If-None-Match": tag})
    client.get("/feeds/garbage.ics")
    client.get(path + "?busy=x")
    after = counts()
    assert {k: after[k] - before[k] for k in after} == {
        "200": 1, "304": 2, "400": 1, "404": 1, "timed": 1,
    }  # fmt: skip


def test_security_headers_on_answers_with_a_body_only(
    world: World, week: dict[str, str], client: FlaskClient, clock: FrozenDateTimeFactory
) -> None:
    """200s (and errors) carry the site's security headers; 304s only what RFC 9110 asks."""
    path = world.path(ALICE)
    full = client.get(path)
    assert full.headers["X-Content-Type-Options"] == "nosniff"
    assert full.headers["Content-Security-Policy"].startswith("default-src 'self'")
    assert full.headers["Strict-Transport-Security"] == "max-age=31536000"
    assert int(full.headers["Content-Length"]) == len(full.get_data())
    clock.tick(1)
    empty = client.get(path, headers={"If-None-Match": full.headers["ETag"]})
    assert empty.status_code == 304
    assert set(empty.headers.keys()) == {"ETag", "Cache-Control", "Vary", "Last-Modified"}


def test_if_none_match_mismatch_gives_200(
    world: World, week: dict[str, str], client: FlaskClient
) -> None:
    """Another tag, or the tag of the other encoding, gets the full body."""
    path = world.path(ALICE)
    plain = client.get(path).headers["ETag"]
    zipped = client.get(path, headers={"Accept-Encoding": "gzip"}).headers["ETag"]
    assert zipped == plain[:-1] + '-gzip"'
    assert client.get(path, headers={"If-None-Match": '"nope"'}).status_code == 200
    both = {"If-None-Match": plain, "Accept-Encoding": "gzip"}
    assert client.get(path, headers=both).status_code == 200
    both["If-None-Match"] = zipped
    assert client.get(path, headers=both).status_code == 304


def test_etag_follows_content_and_nothing_else(
    world: World, week: dict[str, str], clock: FrozenDateTimeFactory, client: FlaskClient
) -> None:
    """Writes, renames, name changes, options and the day change the tag; cache busters don't."""
    path = world.path(ALICE)

    def tag(suffix: str = "") -> str:
        response = client.get(path + suffix)
        assert response.status_code == 200
        return response.headers["ETag"]

    seen = [tag()]
    assert tag() == tag("?_=1&x=y") == seen[0]
    world.user("bob@example.com", "Bob")
    world.shift("search", "bob", "bob@example.com", TODAY + timedelta(days=20))
    assert tag() == seen[0]  # someone else's far-away shift

    def changed(new: str) -> None:
        assert new not in seen
        seen.append(new)

    world.shift("payments", "p2", ALICE, TODAY + timedelta(days=1, hours=8), notes="new notes")
    changed(tag())
    world.schedule("search", "Search & Rescue", zone="America/New_York")
    changed(tag())
    accounts.update_user(world.session, world.users[ALICE], UserInput(display_name="Alice Å."), NOW)
    world.session.commit()
    changed(tag())
    changed(tag("?busy=1"))
    changed(tag("?past_days=3"))
    changed(tag("?schedule=payments"))
    clock.move_to(TODAY + timedelta(days=1))
    changed(tag())


def test_last_modified_and_if_modified_since(
    world: World, week: dict[str, str], clock: FrozenDateTimeFactory, client: FlaskClient
) -> None:
    """Last-Modified is sent once its second is over; If-Modified-Since never hides a change."""
    path = world.path(ALICE)
    assert "Last-Modified" not in client.get(path).headers  # within the first second: weak
    clock.tick(1)
    first = client.get(path)
    stamp = first.headers["Last-Modified"]
    assert stamp == http_date(NOW)

    def status(since: str, **extra: str) -> int:
        return client.get(path, headers={"If-Modified-Since": since, **extra}).status_code

    assert status(stamp) == 304
    assert status(http_date(NOW + timedelta(seconds=1))) == 304
    assert status(http_date(NOW - timedelta(seconds=1))) == 200
    assert status(http_date(NOW + timedelta(days=1))) == 200  # the future proves nothing
    assert status("yesterday-ish") == 200
    assert status(stamp, **{"If-None-Match": '"other"'}) == 200  # If-None-Match wins

    clock.tick(1)
    world.shift(
        "payments", "p2", ALICE, TODAY + timedelta(days=1, hours=9), at=NOW + timedelta(seconds=2)
    )
    assert status(stamp) == 200
    clock.tick(1)
    later = client.get(path).headers["Last-Modified"]
    assert later == http_date(NOW + timedelta(seconds=2))
    assert status(later) == 304


def test_gzip_when_accepted(world: World, week: dict[str, str], client: FlaskClient) -> None:
    """gzip for clients that accept it, byte-identical every time (mtime 0), else identity."""
    path = world.path(ALICE)
    plain = client.get(path).get_data()
    first = client.get(path, headers={"Accept-Encoding": "gzip, deflate"})
    second = client.get(path, headers={"Accept-Encoding": "gzip"})
    assert first.headers["Content-Encoding"] == "gzip"
    assert first.headers["Vary"] == "Accept-Encoding"
    assert gzip.decompress(first.get_data()) == plain
    assert first.get_data() == second.get_data()
    assert first.get_data()[4:8] == b"\0\0\0\0"  # MTIME
    assert len(first.get_data()) < len(plain)
    for refused in ("gzip;q=0", "identity", "br", "*;q=0"):
        response = client.get(path, headers={"Accept-Encoding": refused})
        assert "Content-Encoding" not in response.headers, refused
        assert response.get_data() == plain
    assert client.get(path, headers={"Accept-Encoding": "*"}).headers["Content-Encoding"] == "gzip"


# ---------------------------------------------------------------- speed


def test_conditional_and_warm_requests_read_no_shifts(
    world: World, week: dict[str, str], client: FlaskClient, statements: Statements,
    clock: FrozenDateTimeFactory,
) -> None:  # fmt: skip
    """304s and cached 200s are answered from the feed row alone."""
    path = world.path(ALICE)
    tag = client.get(path).headers["ETag"]
    clock.tick(1)
    stamp = client.get(path).headers["Last-Modified"]

    statements.record()
    assert client.get(path, headers={"If-None-Match": tag}).status_code == 304
    assert client.get(path, headers={"If-Modified-Since": stamp}).status_code == 304
    assert client.get(path).status_code == 200  # body from the cache
    assert statements.sql, "the listener saw nothing: the test would prove nothing"
    assert statements.mentioning("shifts") == []
    assert len(statements.mentioning("FROM feeds")) == 3

    statements.record()
    assert client.get(path + "?past_days=1").status_code == 200  # a new body is rendered
    assert len(statements.mentioning("FROM shifts")) == 1


@pytest.fixture
def sharing_apps(app_config: dict[str, Any], redis_url: str) -> Iterator[list[Flask]]:
    """Two apps (two web processes) sharing rendered bodies through one Redis namespace."""
    namespace = f"oncal-test:{uuid.uuid4().hex}:"
    apps = [create_app({**app_config, "FEED_CACHE_URL": redis_url}) for _ in range(2)]
    for each in apps:
        feed_service(each).shared.namespace = namespace  # type: ignore[union-attr]
    yield apps
    shared = feed_service(apps[0]).shared
    assert shared is not None
    delete_keys(shared.client, namespace + "*")
    for each in apps:
        feed_service(each).shared.close()  # type: ignore[union-attr]
        get_database(each).dispose()


def test_web_processes_share_rendered_bodies_through_redis(
    world: World, week: dict[str, str], sharing_apps: list[Flask]
) -> None:
    """A body rendered by one process is served by another without reading a shift."""
    first, second = (each.test_client() for each in sharing_apps)
    path = world.path(ALICE)
    for headers in ({}, {"Accept-Encoding": "gzip"}):
        rendered = first.get(path, headers=headers)
        with recorded(get_database(sharing_apps[1]).autocommit_engine) as statements:
            served = second.get(path, headers=headers)
        assert served.status_code == rendered.status_code == 200
        assert served.get_data() == rendered.get_data()
        assert served.headers["ETag"] == rendered.headers["ETag"]
        assert statements.sql
        assert statements.mentioning("shifts") == []
    assert b"BEGIN:VCALENDAR" in gzip.decompress(served.get_data())


def test_feeds_are_served_while_the_shared_cache_is_down(
    world: World, week: dict[str, str], app_config: dict[str, Any]
) -> None:
    """Redis gone: feeds are rendered locally, with the same bytes as without a cache."""
    plain = create_app(app_config)
    broken = create_app({**app_config, "FEED_CACHE_URL": f"redis://127.0.0.1:{free_port()}/0"})
    path = world.path(ALICE)
    for headers in ({}, {"Accept-Encoding": "gzip"}):
        expected = plain.test_client().get(path, headers=headers)
        answer = broken.test_client().get(path, headers=headers)
        assert answer.status_code == 200
        assert answer.get_data() == expected.get_data()
    for each in (plain, broken):
        get_database(each).dispose()


def test_only_changed_events_are_rendered_again(
    app: Flask, world: World, week: dict[str, str], client: FlaskClient
) -> None:
    """After one shift changes, the other events' bytes come from the event cache."""
    path = world.path(ALICE)
    events = feed_service(app).event_cache
    client.get(path)
    assert (events.misses, events.hits) == (3, 0)
    world.shift("search", "s1", ALICE, TODAY + timedelta(days=3, hours=14), notes="moved desk")
    client.get(path)
    assert (events.misses, events.hits) == (4, 2)
    client.get(path + "?future_days=10")  # new body, same events
    assert (events.misses, events.hits) == (4, 5)


# ---------------------------------------------------------------- fetch records


def test_fetches_are_recorded_without_a_write_per_request(
    world: World, alice: User, client: FlaskClient, clock: FrozenDateTimeFactory,
    statements: Statements,
) -> None:  # fmt: skip
    """Time and client kind are stored at most every 10 minutes, or when the client changes."""
    path = world.path(ALICE)

    def fetch_as(agent: str) -> list[str]:
        statements.record()
        assert client.get(path, headers={"User-Agent": agent}).status_code in (200, 304)
        statements.on = False
        return statements.mentioning("UPDATE feeds")

    assert fetch_as(GOOGLE + " (+http://www.google.com/calendar/)")
    stored = world.feed(ALICE)
    assert (stored.last_fetched_at, stored.last_client) == (NOW, "google")

    clock.tick(timedelta(minutes=5))
    assert fetch_as(GOOGLE) == []  # no write on the second request
    assert world.feed(ALICE).last_fetched_at == NOW

    assert fetch_as("curl/8.5.0")  # another kind of client is worth a write
    stored = world.feed(ALICE)
    assert (stored.last_fetched_at, stored.last_client) == (
        NOW + timedelta(minutes=5), "curl",
    )  # fmt: skip

    clock.tick(timedelta(minutes=9, seconds=59))
    assert fetch_as("curl/8.5.0") == []
    clock.tick(timedelta(seconds=1))
    assert fetch_as("curl/8.5.0")
    assert world.feed(ALICE).last_fetched_at == NOW + timedelta(minutes=15)


def test_conditional_fetches_count_as_fetches(
    world: World, alice: User, client: FlaskClient, clock: FrozenDateTimeFactory
) -> None:
    """A 304 is a fetch too."""
    path = world.path(ALICE)
    tag = client.get(path).headers["ETag"]
    clock.tick(timedelta(minutes=30))
    answer = client.get(path, headers={"If-None-Match": tag, "User-Agent": "iCal/5.0"})
    assert answer.status_code == 304
    stored = world.feed(ALICE)
    assert (stored.last_fetched_at, stored.last_client) == (
        NOW + timedelta(minutes=30), "apple",
    )  # fmt: skip


class _BrokenConnection:
    """Stands in for a connection whose database refuses the write."""

    def execute(self, *_args: object) -> None:
        """The write fails."""
        raise OperationalError("UPDATE feeds", {}, Exception("database is locked"))


def test_a_failed_record_is_logged_and_ignored(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Recording must never cost the client its feed."""
    feed = FeedRow(
        7,
        "u_x",
        1,
        "personal",
        3,
        None,
        30,
        365,
        False,
        None,
        None,
        None,
        None,
        None,
        NOW,
        1,
        "X",
        NOW,
    )
    with caplog.at_level(logging.WARNING, logger="oncal_feed.feeds.service"):
        record_fetch(_BrokenConnection, feed, "google", NOW)  # type: ignore[arg-type]
    assert "could not record fetch of feed 7: OperationalError" in caplog.text


def test_no_token_in_logs(
    world: World,
    alice: User,
    app_config: dict[str, Any],
    client: FlaskClient,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Neither good nor bad feed tokens appear in any log record, failures included."""
    path = world.path(ALICE)
    token = path.removeprefix("/feeds/").removesuffix(".ics")
    # Nothing listens on port 9: the one feed path that logs, a failing database.
    down = create_app({**app_config, "DATABASE_URL": "postgresql://oncal@127.0.0.1:9/down"})
    try:
        with caplog.at_level(logging.DEBUG):
            client.get(path)
            client.get(path + "?busy=x")
            client.get(path[:-8] + ".ics")
            assert down.test_client().get(path).status_code == 500
    finally:
        get_database(down).dispose()
    assert caplog.records, "nothing was logged: the check would prove nothing"
    assert token[:16] not in caplog.text


def test_a_connection_the_database_dropped_costs_no_request(
    world: World, alice: User, app: Flask, client: FlaskClient
) -> None:
    """The feed pool skips the ping before each checkout, so it retries on a dead connection.

    On PostgreSQL the server ends the pooled connection's backend (as a restart or an
    idle timeout does); on SQLite the pooled connection is closed under the pool's feet.
    """
    path = world.path(ALICE)
    assert client.get(path).status_code == 200
    engine = get_database(app).autocommit_engine
    with engine.connect() as connection:
        if engine.dialect.name == "postgresql":
            pid = connection.exec_driver_sql("SELECT pg_backend_pid()").scalar()
        else:
            pooled = connection.connection.dbapi_connection
    if engine.dialect.name == "postgresql":
        with get_database(app).engine.connect() as other:
            other.execute(text("SELECT pg_terminate_backend(:pid)"), {"pid": pid})
    else:
        pooled.close()  # type: ignore[union-attr]
    assert client.get(path).status_code == 200
    assert engine.pool.checkedin() == 1  # the dead connection was replaced, not kept


def test_only_the_canonical_spelling_of_a_feed_url_is_served(
    world: World, alice: User, client: FlaskClient
) -> None:
    """Issue 13.4: percent-encoded spellings of the path and a padded token were served
    (and logged as sent, token and all)."""
    path = world.path(ALICE)
    token = path.removeprefix("/feeds/").removesuffix(".ics")
    assert client.get(path).status_code == 200
    for spelling in (
        f"/feeds%2F{token}.ics",
        f"/%66eeds/{token}.ics",
        f"/fe%65ds/{token}.ics",
        f"/feeds/{token}%2Eics",
        f"/feeds/{token[:5]}%{ord(token[5]):02X}{token[6:]}.ics",
        f"/feeds/{token}=.ics",
        f"/feeds/{token}==.ics",
    ):
        response = client.get(spelling)
        assert response.status_code == 404, spelling
        assert b"no calendar feed at this address" in response.data, spelling


def test_an_unknown_schedule_key_looks_like_a_schedule_without_shifts(
    world: World, alice: User, client: FlaskClient
) -> None:
    """Issue 13.12: `?schedule=<key>` told whether a schedule with that key exists."""
    world.schedule("search", "Search")  # exists; Alice has no shifts in it
    path = world.path(ALICE)
    known = client.get(path + "?schedule=search")
    unknown = client.get(path + "?schedule=no-such-key")
    assert (known.status_code, unknown.status_code) == (200, 200)
    strip = re.compile(rb"X-WR-CALNAME:.*\r\n|NAME:.*\r\n")
    assert strip.sub(b"", known.data) == strip.sub(b"", unknown.data)


def test_last_modified_is_the_same_from_every_process(
    world: World, week: dict[str, str], clock: FrozenDateTimeFactory, app_config: dict[str, Any]
) -> None:
    """Issue 13.11: each gunicorn worker dated an ETag by when it first saw it, so one
    feed had three Last-Modified values and If-Modified-Since mostly missed (9 of 12)."""
    path = world.path(ALICE)
    clock.tick(30)
    apps = [create_app(app_config) for _ in range(3)]  # three processes' worth of state
    try:
        dates = set()
        for index, other in enumerate(apps):
            clock.tick(5 * index)  # each first sees the ETag at another time
            dates.add(other.test_client().get(path).headers["Last-Modified"])
        assert dates == {http_date(NOW)}, dates  # when Alice's shifts were written
        for other in apps:
            since = {"If-Modified-Since": http_date(NOW)}
            assert other.test_client().get(path, headers=since).status_code == 304
    finally:
        for other in apps:
            get_database(other).dispose()


def test_renaming_the_user_moves_last_modified(
    world: World, alice: User, clock: FrozenDateTimeFactory, client: FlaskClient
) -> None:
    """A change that only the user row makes (the calendar's name) dates the feed too."""
    path = world.path(ALICE)
    clock.tick(10)
    before = client.get(path).headers["Last-Modified"]
    accounts.update_user(
        world.session, world.reload(ALICE), UserInput(display_name="A. Å."), utcnow()
    )
    world.session.commit()
    clock.tick(1)
    after = client.get(path)
    assert after.headers["Last-Modified"] == http_date(NOW + timedelta(seconds=10))
    assert client.get(path, headers={"If-Modified-Since": before}).status_code == 200
