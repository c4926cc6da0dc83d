"""Named feeds: each with its own URL, options and fetch record, revocable on its own."""

from __future__ import annotations

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session

from oncal_feed.errors import NotFound, ValidationError
from oncal_feed.feeds import store
from oncal_feed.feeds.tokens import make_feed_token, read_feed_token
from oncal_feed.models import FIRST_FEED_NAME, Feed, User
from tests.feeds.conftest import NOW, World

KEY = "k" * 48


def test_every_person_starts_with_a_first_feed_under_their_own_id(
    alice: User, world: World
) -> None:
    """The first feed shares the user's public id: URLs issued before named feeds live on."""
    feed = world.feed("alice@example.com")
    assert (feed.public_id, feed.name, feed.kind, feed.generation) == (
        alice.public_id, FIRST_FEED_NAME, "personal", 1,
    )  # fmt: skip


def test_rotation_bumps_the_generation(world: World, db_session: Session, alice: User) -> None:
    """Rotation raises the generation in SQL; the old token still verifies but is stale."""
    feed = world.feed("alice@example.com")
    old = make_feed_token(KEY, feed)
    assert store.rotate_feed(db_session, feed, NOW) == 2
    assert store.rotate_feed(db_session, feed, NOW) == 3
    db_session.commit()
    assert world.feed("alice@example.com").generation == 3
    assert read_feed_token(KEY, old) == (feed.public_id, 1)
    assert read_feed_token(KEY, make_feed_token(KEY, feed)) == (feed.public_id, 3)


def test_rotation_forgets_when_the_old_url_was_fetched(
    world: World, db_session: Session, alice: User
) -> None:
    """After a rotation the settings page must not say "last fetched by Google Calendar":
    that was the old, now dead, URL."""
    feed = world.feed("alice@example.com")
    feed.last_fetched_at = NOW
    feed.last_client = "google"
    db_session.commit()
    store.rotate_feed(db_session, feed, NOW)
    db_session.commit()
    reloaded = world.feed("alice@example.com")
    assert (reloaded.last_fetched_at, reloaded.last_client) == (None, None)


def test_feeds_are_created_listed_changed_and_revoked(
    world: World, db_session: Session, alice: User
) -> None:
    """A second feed has its own id and options; revoking it leaves the first alone."""
    phone = store.create_feed(
        db_session, alice, store.FeedSettings("Phone", reminder_minutes=15, busy=True), NOW
    )
    db_session.commit()
    assert phone.public_id != alice.public_id
    assert [feed.name for feed in store.list_feeds(db_session, alice)] == [FIRST_FEED_NAME, "Phone"]
    store.update_feed(
        db_session, phone, store.FeedSettings("Work phone", schedule_keys=("payments",)), NOW
    )
    db_session.commit()
    stored = store.get_feed(db_session, alice, phone.public_id)
    assert (stored.name, stored.schedule_keys, stored.reminder_minutes, stored.busy) == (
        "Work phone", ["payments"], None, False,
    )  # fmt: skip
    store.delete_feed(db_session, stored)
    db_session.commit()
    with pytest.raises(NotFound):
        store.get_feed(db_session, alice, phone.public_id)
    assert store.first_feed(db_session, alice).public_id == alice.public_id


def test_the_last_feed_cannot_be_revoked(world: World, db_session: Session, alice: User) -> None:
    """Replacing its address revokes it; every page can count on a person having a feed."""
    with pytest.raises(ValidationError) as raised:
        store.delete_feed(db_session, world.feed("alice@example.com"))
    assert raised.value.errors[0].field == "feed"
    assert db_session.scalars(select(Feed).where(Feed.user_id == alice.id)).all()


def test_nobody_reaches_another_persons_feed(
    world: World, db_session: Session, alice: User
) -> None:
    """`get_feed` looks only among the user's own feeds."""
    bob = world.user("bob@example.com", "Bob")
    with pytest.raises(NotFound):
        store.get_feed(db_session, bob, alice.public_id)


def test_only_members_and_admins_follow_a_whole_schedule(
    world: World, db_session: Session, alice: User
) -> None:
    """Someone with shifts in a schedule may subscribe to all of it; others may not, unless
    they are admins."""
    payments = world.schedules["payments"]
    world.shift("payments", "p1", "alice@example.com", NOW)
    bob = world.user("bob@example.com", "Bob")
    settings = store.FeedSettings("Team")
    feed = store.create_feed(db_session, alice, settings, NOW, payments)
    assert (feed.kind, feed.schedule_id) == ("schedule", payments.id)
    with pytest.raises(ValidationError) as raised:
        store.create_feed(db_session, bob, settings, NOW, payments)
    assert raised.value.errors[0].field == "schedule"
    bob.role = "admin"
    assert store.create_feed(db_session, bob, settings, NOW, payments).kind == "schedule"


def test_rotating_all_feeds_replaces_every_url(
    world: World, db_session: Session, alice: User
) -> None:
    """An admin's answer to a leak: every feed of the person gets a new generation."""
    store.create_feed(db_session, alice, store.FeedSettings("Phone"), NOW)
    assert store.rotate_all_feeds(db_session, alice, NOW) == 2
    db_session.commit()
    assert {feed.generation for feed in store.list_feeds(db_session, alice)} == {2}
