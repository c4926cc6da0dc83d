"""The feed user cache: its rules on its own, then on PostgreSQL with the real listener."""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import fields, replace
from datetime import timedelta
from typing import Any

import psycopg
import pytest
from flask import Flask
from freezegun.api import FrozenDateTimeFactory
from prometheus_client import CollectorRegistry, Gauge
from sqlalchemy import delete, event, make_url, text, update

from oncal_feed import accounts, create_app
from oncal_feed.db import get_database
from oncal_feed.feeds.service import FeedRow
from oncal_feed.feeds.store import FeedSettings, create_feed, rotate_feed
from oncal_feed.feeds.tokens import feed_links
from oncal_feed.feeds.user_cache import (
    CHANNEL,
    CONNECT_OPTIONS,
    FeedUserCache,
    NoEcho,
    hear_own_echo,
)
from oncal_feed.feeds.views import feed_service
from oncal_feed.models import Feed, Schedule, User
from oncal_feed.validation import UserInput
from tests.feeds.conftest import NOW, Statements, World

ALICE = "alice@example.com"
BOB = "bob@example.com"


def _user(public_id: str = "u_a", generation: int = 1) -> FeedRow:
    return FeedRow(
        7, public_id, generation, "personal", 3, None, 30, 365, False, None, None, None, None, None,
        NOW, 1, "A", NOW,
    )  # fmt: skip


def _live_cache(entries: int = 10) -> FeedUserCache:
    cache = FeedUserCache(entries)
    cache.get("")  # starts this process's (absent) listener
    cache.listening()
    return cache


# ---------------------------------------------------------------- the rules, no database


def test_a_row_read_while_listening_is_kept() -> None:
    cache = _live_cache()
    user = _user()
    cache.put(user, cache.epoch())
    assert cache.get("u_a") is user


def test_nothing_is_kept_before_the_listener_listens() -> None:
    cache = FeedUserCache(10)
    assert cache.epoch() is None
    cache.put(_user(), cache.epoch())
    assert cache.get("u_a") is None


def test_a_row_read_across_any_change_is_not_kept() -> None:
    """The read may have seen the database from before a change whose notice came first."""
    cache = _live_cache()
    epoch = cache.epoch()
    cache.changed("u_someone_else")
    cache.put(_user(), epoch)
    assert cache.get("u_a") is None
    cache.put(_user(), cache.epoch())
    assert cache.get("u_a") is not None


def test_a_change_drops_that_user_only() -> None:
    cache = _live_cache()
    cache.put(_user("u_a"), cache.epoch())
    cache.put(_user("u_b"), cache.epoch())
    cache.changed("u_a")
    assert cache.get("u_a") is None
    assert cache.get("u_b") is not None


def test_a_truncated_table_drops_everyone() -> None:
    cache = _live_cache()
    cache.put(_user("u_a"), cache.epoch())
    cache.put(_user("u_b"), cache.epoch())
    cache.changed("*")
    assert (cache.get("u_a"), cache.get("u_b")) == (None, None)


def test_a_lost_listener_drops_everything_until_it_listens_again() -> None:
    cache = _live_cache()
    cache.put(_user(), cache.epoch())
    epoch = cache.epoch()
    cache.lost()
    assert cache.get("u_a") is None
    assert cache.epoch() is None
    cache.listening()
    cache.put(_user(), epoch)  # read before the loss: changes in between went unheard
    assert cache.get("u_a") is None


def test_the_listening_gauge_says_whether_rows_are_trusted() -> None:
    registry = CollectorRegistry()
    gauge = Gauge("listening", "test", registry=registry)
    cache = FeedUserCache(10, listening_gauge=gauge)
    reported = []
    for report in (cache.listening, cache.lost, cache.listening, lambda: cache.changed("u_a")):
        report()
        reported.append(registry.get_sample_value("listening"))
    assert reported == [1, 0, 1, 1]
    cache.close()
    assert registry.get_sample_value("listening") == 0


def test_the_least_recently_used_row_goes_first() -> None:
    cache = _live_cache(entries=2)
    for public_id in ("u_a", "u_b"):
        cache.put(_user(public_id), cache.epoch())
    cache.get("u_a")
    cache.put(_user("u_c"), cache.epoch())
    assert [cache.get(p) is not None for p in ("u_a", "u_b", "u_c")] == [True, False, True]


def test_replace_loses_to_a_notified_change() -> None:
    cache = _live_cache()
    old = _user()
    cache.put(old, cache.epoch())
    recorded = replace(old, last_client="google")
    cache.replace(old, recorded)
    assert cache.get("u_a") is recorded
    cache.changed("u_a")
    cache.replace(recorded, replace(recorded, last_client="apple"))
    assert cache.get("u_a") is None


def test_a_forked_process_starts_its_own_listener() -> None:
    """gunicorn may fork after the app is built: the child must not trust the parent's rows."""
    started: list[int] = []

    def listener(cache: FeedUserCache, _stop: threading.Event) -> None:
        started.append(os.getpid())
        cache.listening()

    cache = FeedUserCache(10, listener)
    cache.get("")
    _wait_until(lambda: cache.epoch() is not None, "the listener listens")
    cache.put(_user(), cache.epoch())
    child = os.fork()
    if child == 0:  # pragma: no cover (the child's verdict is its exit code)
        inherited = cache.get("u_a")
        _wait_until(lambda: cache.epoch() is not None, "the child's listener listens")
        os._exit(0 if inherited is None and started[-1] == os.getpid() else 1)
    _, status = os.waitpid(child, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    assert cache.get("u_a") is not None  # the parent's own rows stay


# ---------------------------------------------------------------- PostgreSQL, real listener


@pytest.fixture
def app_config(app_config: dict[str, Any], postgres_url: str) -> dict[str, Any]:
    """The app on PostgreSQL, with the user cache on."""
    return {**app_config, "DATABASE_URL": postgres_url, "FEED_USER_CACHE_ENTRIES": 100}


@pytest.fixture
def users(app: Flask) -> Iterator[FeedUserCache]:
    """The app's user cache, listening; its listener is stopped afterwards."""
    cache = feed_service(app).users
    assert cache is not None
    cache.get("")
    _wait_until(lambda: cache.epoch() is not None, "the listener listens")
    yield cache
    cache.close()


def _wait_until(condition: Callable[[], bool], what: str, seconds: float = 10) -> None:
    # Counted sleeps, not a deadline: the tests' clock is frozen.
    for _ in range(int(seconds / 0.01)):
        if condition():
            return
        time.sleep(0.01)
    pytest.fail(f"waited {seconds} s in vain for: {what}")


def _cached(world: World, users: FeedUserCache, client: Any, email: str) -> FeedRow:
    """Fetch the user's feed so their row is cached; return the cached row."""
    assert client.get(world.path(email)).status_code == 200
    user = users.get(world.users[email].public_id)
    assert user is not None
    return user


def test_a_304_from_a_cached_row_makes_no_query(
    world: World, alice: User, users: FeedUserCache, client: Any, statements: Statements
) -> None:
    path = world.path(ALICE)
    tag = client.get(path).headers["ETag"]
    statements.record()
    for _ in range(3):
        assert client.get(path, headers={"If-None-Match": tag}).status_code == 304
    assert statements.sql == []


FETCH_RECORD_COLUMNS = ("last_fetched_at", "last_client")
# A change of every other column of FeedRow, as (table, column, value) — a function of the
# world for values that are ids. A new column fails the test below until it is listed
# here, and the triggers (migrations 0014, 0017) must be extended for it.
CHANGES: dict[str, Callable[[World], tuple[Any, str, Any]]] = {
    "public_id": lambda w: (Feed, "public_id", "f_renamed"),
    "generation": lambda w: (Feed, "generation", 2),
    "kind": lambda w: (Feed, "kind", "schedule"),
    "schedule_id": lambda w: (Feed, "schedule_id", w.schedules["payments"].id),
    "past_days": lambda w: (Feed, "past_days", 3),
    "future_days": lambda w: (Feed, "future_days", 33),
    "busy": lambda w: (Feed, "busy", True),
    "schedule_keys": lambda w: (Feed, "schedule_keys", ["payments"]),
    "reminder_minutes": lambda w: (Feed, "reminder_minutes", 15),
    "handoff_reminder_minutes": lambda w: (Feed, "handoff_reminder_minutes", 10),
    "version": lambda w: (User, "calendar_version", 99),
    "title": lambda w: (User, "display_name", "Alice Renamed"),
}
# Never changed (a feed keeps its owner), or written only together with a column the
# triggers watch (models._note_feed_change, shifts.bump_calendar_versions).
UNWATCHED = ("id", "user_id", "changed_at", "data_changed_at")
FEED_COLUMNS = [
    f.name for f in fields(FeedRow) if f.name not in (*FETCH_RECORD_COLUMNS, *UNWATCHED)
]


@pytest.mark.parametrize("column", FEED_COLUMNS)
def test_a_change_of_any_feed_column_drops_the_row(
    world: World, alice: User, users: FeedUserCache, client: Any, column: str
) -> None:
    cached = _cached(world, users, client, ALICE)
    table, name, value = CHANGES[column](world)
    row_id = cached.id if table is Feed else alice.id
    with get_database(world.app).engine.begin() as connection:
        connection.execute(update(table).where(table.id == row_id).values({name: value}))
    _wait_until(lambda: users.get(cached.public_id) is None, f"a change of {column} is heard")


@pytest.mark.parametrize(
    "change",
    [
        pytest.param((Schedule, "calendar_version", 99), id="schedule version"),
        pytest.param((Schedule, "name", "Payments Renamed"), id="schedule name"),
        pytest.param((User, "display_name", "Alice Renamed"), id="owner's name"),
    ],
)
def test_a_change_of_its_schedule_or_owner_drops_a_schedule_feed(
    world: World, alice: User, users: FeedUserCache, client: Any, change: tuple[Any, str, Any]
) -> None:
    """A schedule feed's row joins its schedule's: a change there is heard too."""
    world.shift("payments", "p-1", ALICE, NOW + timedelta(days=1))
    team = create_feed(world.session, alice, FeedSettings("Team"), NOW, world.schedules["payments"])
    world.session.commit()
    with world.app.app_context():
        path = feed_links(team).https.removeprefix(world.app.config["BASE_URL"])
    assert client.get(path).status_code == 200
    assert users.get(team.public_id) is not None
    table, name, value = change
    row_id = world.schedules["payments"].id if table is Schedule else alice.id
    with get_database(world.app).engine.begin() as connection:
        connection.execute(update(table).where(table.id == row_id).values({name: value}))
    _wait_until(lambda: users.get(team.public_id) is None, f"a change of {name} is heard")


def test_fetch_records_keep_the_row_and_update_its_copy(
    world: World,
    alice: User,
    users: FeedUserCache,
    client: Any,
    clock: FrozenDateTimeFactory,
    statements: Statements,
) -> None:
    """Recording a fetch changes the row but not the feed: no notice, this process's copy
    is brought up to date, and the next fetch inside ten minutes writes nothing."""
    world.user(BOB, "Bob")
    bob = _cached(world, users, client, BOB)
    path = world.path(ALICE)
    first = _cached(world, users, client, ALICE)
    assert first.last_client == "other"
    answer = client.get(path, headers={"User-Agent": "iCal/5.0"})
    recorded = users.get(first.public_id)
    assert recorded is not None
    assert (recorded.last_client, recorded.last_fetched_at) == ("apple", NOW)
    # Bob's change is notified after Alice's records: once it is heard, theirs would be.
    world.session.execute(update(User).where(User.id == bob.user_id).values(display_name="Robert"))
    world.session.commit()
    _wait_until(lambda: users.get(bob.public_id) is None, "Bob's change is heard")
    assert users.get(first.public_id) is recorded

    clock.tick(timedelta(minutes=5))
    statements.record()
    headers = {"User-Agent": "iCal/5.0", "If-None-Match": answer.headers["ETag"]}
    assert client.get(path, headers=headers).status_code == 304
    assert statements.sql == []
    clock.tick(timedelta(minutes=5))
    assert client.get(path, headers=headers).status_code == 304
    assert len(statements.mentioning("UPDATE feeds")) == 1


def test_a_rotated_feed_url_stops_working_and_the_new_one_works_at_once(
    world: World, alice: User, users: FeedUserCache, client: Any
) -> None:
    old_path = world.path(ALICE)
    _cached(world, users, client, ALICE)
    rotate_feed(world.session, world.feed(ALICE), NOW)
    world.session.commit()
    # Newer than the cached row's generation: proof the row is stale, so it is re-read.
    assert client.get(world.path(ALICE)).status_code == 200
    _wait_until(lambda: client.get(old_path).status_code == 404, "the old URL is dead")


def test_until_a_change_is_heard_the_cached_row_answers(
    app: Flask, world: World, alice: User, client: Any
) -> None:
    """The trade the cache makes, shown with a listener that hears nothing: until the
    notice arrives an old URL still works. A new URL never waits for it: it proves the
    cached row stale, and the row it makes the service read replaces it."""
    feed_service(app).users = _live_cache()
    old_path = world.path(ALICE)
    assert client.get(old_path).status_code == 200
    rotate_feed(world.session, world.feed(ALICE), NOW)
    world.session.commit()
    assert client.get(old_path).status_code == 200
    assert client.get(world.path(ALICE)).status_code == 200
    assert client.get(old_path).status_code == 404


def test_a_cached_feed_answers_while_the_database_is_down(
    app: Flask,
    world: World,
    alice: User,
    client: Any,
    clock: FrozenDateTimeFactory,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Only the fetch note needs the database then, and its failure costs nothing."""
    feed_service(app).users = _live_cache()
    path = world.path(ALICE)
    tag = client.get(path).headers["ETag"]
    engine = get_database(app).autocommit_engine
    engine.dispose()

    def refuse(*_args: Any) -> None:
        raise psycopg.OperationalError("connection refused")

    event.listen(engine, "do_connect", refuse)
    try:
        clock.tick(timedelta(minutes=11))  # a fetch note is due
        assert client.get(path, headers={"If-None-Match": tag}).status_code == 304
    finally:
        event.remove(engine, "do_connect", refuse)
    assert "could not record fetch of feed" in caplog.text


@pytest.mark.parametrize("change", ["new shift", "schedule renamed", "name", "user deleted"])
def test_changes_through_the_product_reach_the_feed(
    world: World, alice: User, users: FeedUserCache, client: Any, change: str
) -> None:
    path = world.path(ALICE)
    world.shift("payments", "p-1", ALICE, NOW + timedelta(days=1))
    tag = client.get(path).headers["ETag"]
    assert client.get(path, headers={"If-None-Match": tag}).status_code == 304
    if change == "new shift":
        world.shift("payments", "p-2", ALICE, NOW + timedelta(days=2))
    elif change == "schedule renamed":
        world.schedule("payments", "Payments Platform")
    elif change == "name":
        accounts.update_user(
            world.session, world.reload(ALICE), UserInput(display_name="Alice B"), NOW
        )
        world.session.commit()
    else:
        world.session.execute(delete(User).where(User.id == alice.id))
        world.session.commit()
    expected = 404 if change == "user deleted" else 200
    _wait_until(
        lambda: client.get(path, headers={"If-None-Match": tag}).status_code == expected,
        f"the feed shows the {change}",
    )


def test_a_lost_listener_is_replaced_and_misses_nothing(
    world: World, alice: User, users: FeedUserCache, client: Any, statements: Statements
) -> None:
    """While the listener is down every request reads the database; changes made then are
    served, and once it is back rows are cached again."""
    path = world.path(ALICE)
    world.shift("payments", "p-1", ALICE, NOW + timedelta(days=1))
    _cached(world, users, client, ALICE)
    engine = get_database(world.app).engine
    with engine.begin() as connection:
        ended = connection.execute(
            text(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                "WHERE application_name = :name AND datname = current_database()"
            ),
            {"name": CONNECT_OPTIONS["application_name"]},
        ).all()
    assert ended
    _wait_until(lambda: users.epoch() is None, "the loss is noticed")
    world.schedule("payments", "Payments Renamed")  # unheard by anyone
    statements.record()
    body = client.get(path).get_data()
    assert b"Payments Renamed" in body
    assert statements.mentioning("FROM feeds")
    _wait_until(lambda: users.epoch() is not None, "a new listener listens")
    _cached(world, users, client, ALICE)
    statements.record()
    assert client.get(path).status_code == 200
    assert statements.sql == []


def test_the_listener_trusts_a_connection_only_once_it_hears_itself(postgres_url: str) -> None:
    """Notifications that never arrive (a dead connection, a transaction-mode pooler in the
    way) must not pass for silence; changes heard while waiting for the echo count."""
    cache = _live_cache()
    cache.put(_user("u_a"), cache.epoch())
    dsn = make_url(postgres_url).set(drivername="postgresql").render_as_string(False)
    with psycopg.connect(dsn, autocommit=True) as connection:
        connection.execute(f"LISTEN {CHANNEL}")
        connection.execute("LISTEN oncal_feed_echo_test")
        connection.execute(f"NOTIFY {CHANNEL}, 'u_a'")
        hear_own_echo(connection, "oncal_feed_echo_test", cache, timeout=5)
        assert cache.get("u_a") is None
        with pytest.raises(NoEcho):
            hear_own_echo(connection, "oncal_feed_echo_unheard", cache, timeout=0.2)


def test_sqlite_and_a_zero_size_have_no_cache(app_config: dict[str, Any]) -> None:
    off = create_app({**app_config, "FEED_USER_CACHE_ENTRIES": 0})
    assert feed_service(off).users is None
    sqlite = create_app({**app_config, "DATABASE_URL": "sqlite://"})
    assert feed_service(sqlite).users is None
