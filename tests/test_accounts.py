"""Users, passwords and API keys, without HTTP."""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session

from oncal_feed import accounts
from oncal_feed.errors import Conflict, NotFound
from oncal_feed.models import ApiKey, User
from oncal_feed.validation import UserInput

NOW = datetime(2026, 3, 1, 12, tzinfo=UTC)


def make(session: Session, email: str, name: str = "Someone") -> User:
    """Create and flush a user."""
    return accounts.create_user(session, UserInput(email, name), NOW)


def test_create_user_defaults_and_conflict(db_session: Session) -> None:
    """Zone defaults to UTC; a second user with the same email is a Conflict on `email`."""
    user = make(db_session, "alice@example.com", "Alice")
    assert (user.time_zone, user.created_at, user.updated_at) == ("UTC", NOW, NOW)
    assert user.public_id.startswith("u_")
    with pytest.raises(Conflict) as caught:
        make(db_session, "alice@example.com")
    assert caught.value.field == "email"


def test_get_user_and_by_email(db_session: Session) -> None:
    """Lookups by public id and by email (any case); unknown ones raise NotFound."""
    user = make(db_session, "alice@example.com")
    assert accounts.get_user(db_session, user.public_id) is user
    assert accounts.get_user_by_email(db_session, "  ALICE@example.com ") is user
    with pytest.raises(NotFound) as caught:
        accounts.get_user(db_session, "u_missing")
    assert (caught.value.kind, caught.value.key) == ("user", "u_missing")
    with pytest.raises(NotFound):
        accounts.get_user_by_email(db_session, "bob@example.com")


def test_list_users_pages_by_email(db_session: Session) -> None:
    """Ordered by email; `after` skips up to and including that email."""
    for name in ("c", "a", "d", "b"):
        make(db_session, f"{name}@example.com")
    assert [u.email[0] for u in accounts.list_users(db_session, limit=2)] == ["a", "b"]
    rest = accounts.list_users(db_session, after="b@example.com", limit=10)
    assert [u.email[0] for u in rest] == ["c", "d"]


def test_update_user_counts_changes(db_session: Session) -> None:
    """A real change sets updated_at; the same values again change nothing."""
    user = make(db_session, "alice@example.com", "Alice")
    later = NOW + timedelta(hours=1)
    result = accounts.update_user(db_session, user, UserInput(time_zone="Asia/Tokyo"), later)
    assert (result.updated, user.time_zone, user.updated_at) == (1, "Asia/Tokyo", later)
    db_session.flush()
    again = accounts.update_user(
        db_session, user, UserInput(time_zone="Asia/Tokyo"), later + timedelta(hours=1)
    )
    assert (again.unchanged, again.updated, user.updated_at) == (1, 0, later)


def test_update_user_email_conflict(db_session: Session) -> None:
    """Taking another user's email is a Conflict; keeping one's own is fine."""
    alice = make(db_session, "alice@example.com")
    make(db_session, "bob@example.com")
    with pytest.raises(Conflict):
        accounts.update_user(db_session, alice, UserInput(email="bob@example.com"), NOW)
    result = accounts.update_user(db_session, alice, UserInput(email="alice@example.com"), NOW)
    assert result.unchanged == 1


def test_passwords(db_session: Session) -> None:
    """Hashes, never plain text; no password means no login."""
    user = make(db_session, "alice@example.com")
    assert not accounts.check_password(user, "")
    accounts.set_password(user, "correct horse")
    assert user.password_hash is not None
    assert "correct horse" not in user.password_hash
    assert accounts.check_password(user, "correct horse")
    assert not accounts.check_password(user, "wrong horse")


def test_api_key_is_stored_only_as_a_hash(db_session: Session) -> None:
    """The secret is returned once; the row holds its SHA-256 and a short prefix."""
    key, secret = accounts.create_api_key(db_session, "ci", NOW)
    assert secret.startswith(accounts.API_KEY_PREFIX)
    assert len(secret) > 40
    assert key.secret_hash == hashlib.sha256(secret.encode()).hexdigest()
    assert key.prefix == secret[:12]
    stored = db_session.scalars(select(ApiKey)).one()
    assert secret not in (stored.name, stored.prefix, stored.secret_hash)
    assert accounts.create_api_key(db_session, "ci", NOW)[1] != secret


def test_authenticate_api_key(db_session: Session) -> None:
    """Live keys authenticate; unknown and revoked ones do not."""
    key, secret = accounts.create_api_key(db_session, "ci", NOW)
    assert accounts.authenticate_api_key(db_session, secret, NOW) is key
    assert accounts.authenticate_api_key(db_session, secret + "x", NOW) is None
    assert accounts.authenticate_api_key(db_session, "", NOW) is None
    key.revoked_at = NOW
    assert accounts.authenticate_api_key(db_session, secret, NOW + timedelta(seconds=1)) is None


def test_last_used_is_recorded_to_the_minute(db_session: Session) -> None:
    """Use is written at most once a minute, so reads do not all become writes."""
    key, secret = accounts.create_api_key(db_session, "ci", NOW)
    accounts.authenticate_api_key(db_session, secret, NOW)
    assert key.last_used_at == NOW
    accounts.authenticate_api_key(db_session, secret, NOW + timedelta(seconds=30))
    assert key.last_used_at == NOW
    accounts.authenticate_api_key(db_session, secret, NOW + timedelta(minutes=2))
    assert key.last_used_at == NOW + timedelta(minutes=2)
