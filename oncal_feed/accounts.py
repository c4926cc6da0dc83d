"""Users, passwords and API keys. No Flask here."""

from __future__ import annotations

import hashlib
import secrets
from datetime import datetime, timedelta

from sqlalchemy import select
from sqlalchemy.orm import Session
from werkzeug.security import check_password_hash, generate_password_hash

from oncal_feed.errors import Conflict, NotFound
from oncal_feed.models import ApiKey, User
from oncal_feed.shifts import WriteResult, refresh_handovers_for_user
from oncal_feed.validation import UserInput

__all__ = [
    "authenticate_api_key",
    "check_password",
    "create_api_key",
    "create_user",
    "end_sessions",
    "get_user",
    "get_user_by_email",
    "list_users",
    "set_password",
    "update_user",
]

API_KEY_PREFIX = "ocf_"
# Recording every use would write on every request; a minute's precision is enough.
_LAST_USED_PRECISION = timedelta(minutes=1)


def get_user(session: Session, public_id: str) -> User:
    """Return the user with this public id or raise `NotFound`."""
    user = session.scalar(select(User).where(User.public_id == public_id))
    if user is None:
        raise NotFound("user", public_id)
    return user


def list_users(session: Session, *, after: str = "", limit: int = 100) -> list[User]:
    """Return up to `limit` users ordered by email, starting after the email `after`."""
    query = select(User).where(User.email > after).order_by(User.email).limit(limit)
    return list(session.scalars(query))


def get_user_by_email(session: Session, email: str) -> User:
    """Return the user with this email (case-insensitive) or raise `NotFound`."""
    user = session.scalar(select(User).where(User.email == email.strip().lower()))
    if user is None:
        raise NotFound("user", email)
    return user


def create_user(session: Session, data: UserInput, now: datetime) -> User:
    """Create a user; raise `Conflict` when the email is taken."""
    assert data.email and data.display_name
    if session.scalar(select(User.id).where(User.email == data.email)) is not None:
        raise Conflict("email", "a user with this email address exists")
    user = User(
        email=data.email,
        display_name=data.display_name,
        time_zone=data.time_zone or "UTC",
        created_at=now,
        updated_at=now,
    )
    session.add(user)
    session.flush()
    return user


def update_user(session: Session, user: User, data: UserInput, now: datetime) -> WriteResult:
    """Apply the given fields; a new display name refreshes hand-over text in others' shifts."""
    result = WriteResult()
    if data.email is not None and data.email != user.email:
        taken = session.scalar(select(User.id).where(User.email == data.email))
        if taken is not None:
            raise Conflict("email", "a user with this email address exists")
        user.email = data.email
    renamed = data.display_name is not None and data.display_name != user.display_name
    changes = {
        "display_name": data.display_name,
        "time_zone": data.time_zone,
    }
    for name, value in changes.items():
        if value is not None:
            setattr(user, name, value)
    if session.is_modified(user):
        user.updated_at = now
        result.updated = 1
    else:
        result.unchanged = 1
    if renamed:
        session.flush()
        result.touched_user_ids |= refresh_handovers_for_user(
            session, user.id, now, now
        ).touched_user_ids
    return result


def set_password(user: User, password: str) -> None:
    """Store a strong (scrypt) hash of `password`; the user's sessions end."""
    user.password_hash = generate_password_hash(password)
    end_sessions(user)


def end_sessions(user: User) -> None:
    """End every sign-in session of `user`, on every device (the caller commits)."""
    user.session_generation += 1


def check_password(user: User, password: str) -> bool:
    """Tell whether `password` is the user's password (False when none is set)."""
    if not user.password_hash:
        return False
    return check_password_hash(user.password_hash, password)


def _hash_secret(secret: str) -> str:
    # Keys are 256 random bits, so a fast hash is enough: nothing to brute-force.
    return hashlib.sha256(secret.encode()).hexdigest()


def create_api_key(session: Session, name: str, now: datetime) -> tuple[ApiKey, str]:
    """Create an API key; return the row and the secret, which is never stored or shown again."""
    secret = API_KEY_PREFIX + secrets.token_urlsafe(32)
    key = ApiKey(name=name, prefix=secret[:12], secret_hash=_hash_secret(secret), created_at=now)
    session.add(key)
    session.flush()
    return key, secret


def authenticate_api_key(session: Session, secret: str, now: datetime) -> ApiKey | None:
    """Return the live key matching `secret`, recording its use, or None."""
    key = session.scalar(select(ApiKey).where(ApiKey.secret_hash == _hash_secret(secret)))
    if key is None or key.revoked_at is not None:
        return None
    if key.last_used_at is None or now - key.last_used_at > _LAST_USED_PRECISION:
        key.last_used_at = now
    return key
