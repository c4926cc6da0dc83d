"""Users, roles, passwords, password links (invitations and resets) and API keys. No Flask."""

from __future__ import annotations

import hashlib
import secrets
from datetime import datetime, timedelta
from functools import cache

from sqlalchemy import select, update
from sqlalchemy.orm import Session
from werkzeug.security import check_password_hash, generate_password_hash

from oncal_feed.errors import Conflict, NotFound, ValidationError
from oncal_feed.models import ROLES, ApiKey, Invitation, User
from oncal_feed.shifts import WriteResult, refresh_handovers_for_user
from oncal_feed.validation import UserInput

__all__ = [
    "LINK_KINDS",
    "MAX_PASSWORD_LENGTH",
    "MIN_PASSWORD_LENGTH",
    "authenticate_api_key",
    "check_new_password",
    "check_password",
    "create_api_key",
    "create_password_link",
    "create_user",
    "end_sessions",
    "find_password_link",
    "get_api_key",
    "get_user",
    "get_user_by_email",
    "list_api_keys",
    "list_users",
    "revoke_api_key",
    "set_password",
    "set_role",
    "update_user",
    "use_password_link",
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
    """Apply the given fields; a new display name or email address refreshes the hand-over
    and "also on call" text in others' shifts."""
    result = WriteResult()
    readdressed = False
    if data.email is not None and data.email != user.email:
        readdressed = True
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
    if renamed or readdressed:
        session.flush()
        result.touched_user_ids |= refresh_handovers_for_user(
            session, user.id, now, now
        ).touched_user_ids
    return result


MIN_PASSWORD_LENGTH = 10
# The sign-in form refuses longer ones without hashing them; a new password must fit it.
MAX_PASSWORD_LENGTH = 1024
LINK_KINDS = ("invite", "reset")


def check_new_password(password: str, field: str = "password") -> str:
    """Return `password` when it can be set, else raise `ValidationError` naming `field`."""
    if len(password.strip()) < MIN_PASSWORD_LENGTH:
        problem = f"must be at least {MIN_PASSWORD_LENGTH} characters long"
        raise ValidationError.single(field, problem)
    if len(password) > MAX_PASSWORD_LENGTH:
        problem = f"must be at most {MAX_PASSWORD_LENGTH} characters long"
        raise ValidationError.single(field, problem)
    return password


def set_role(user: User, role: str, now: datetime) -> bool:
    """Give `user` the role `role` ("admin" or "member"); return whether it changed."""
    if role not in ROLES:
        raise ValidationError.single("role", f"must be one of {', '.join(ROLES)}")
    if user.role == role:
        return False
    user.role = role
    user.updated_at = now
    return True


def set_password(user: User, password: str) -> None:
    """Store a strong (scrypt) hash of `password`; the user's sessions end."""
    user.password_hash = generate_password_hash(password)
    end_sessions(user)


def end_sessions(user: User) -> None:
    """End every sign-in session of `user`, on every device (the caller commits)."""
    user.session_generation += 1


@cache
def _dummy_hash() -> str:
    """A hash of nobody's password, for checks that must cost what a real one costs.

    Made on first use: a scrypt hash at import would slow every process start.
    """
    return generate_password_hash("not a password of anyone")


def check_password(user: User | None, password: str) -> bool:
    """Tell whether `password` is the user's password (False when none is set).

    Every failure costs one full hash check: without a user (an unknown email) or
    without a password (an account made by the API), a dummy hash is checked, so the
    answer time doesn't tell which accounts exist or have a password.
    """
    stored = user.password_hash if user is not None else None
    if not stored:
        check_password_hash(_dummy_hash(), password)
        return False
    return check_password_hash(stored, password)


def _hash_secret(secret: str) -> str:
    # Keys and link secrets are 256 random bits, so a fast hash is enough: nothing to
    # brute-force.
    return hashlib.sha256(secret.encode()).hexdigest()


def create_password_link(
    session: Session, user: User, kind: str, now: datetime, lifetime: timedelta
) -> tuple[Invitation, str]:
    """Make a single-use link secret that lets `user` set a password until `now + lifetime`.

    Earlier unused links of the user stop working: only the newest one handed out is
    live, so a link sent to the wrong place is dead once a new one is made. The secret is
    returned once and only its hash is stored.
    """
    if kind not in LINK_KINDS:
        raise ValueError(f"unknown password link kind {kind!r}")
    session.execute(
        update(Invitation)
        .where(Invitation.user_id == user.id, Invitation.used_at.is_(None))
        .values(used_at=now)
    )
    secret = secrets.token_urlsafe(32)
    link = Invitation(
        user_id=user.id,
        kind=kind,
        secret_hash=_hash_secret(secret),
        created_at=now,
        expires_at=now + lifetime,
    )
    session.add(link)
    session.flush()
    return link, secret


def find_password_link(session: Session, secret: str, now: datetime) -> Invitation | None:
    """Return the live (unused, unexpired) link for `secret`, with its user, or None."""
    if not secret or len(secret) > 200:
        return None
    link = session.scalar(select(Invitation).where(Invitation.secret_hash == _hash_secret(secret)))
    if link is None or link.used_at is not None or link.expires_at <= now:
        return None
    return link


def use_password_link(session: Session, secret: str, password: str, now: datetime) -> User | None:
    """Set the password through a live link and spend it; None when the link is dead.

    The link is spent with a conditional UPDATE, so two tabs submitting the same link
    at once set one password, not two. The caller commits.
    """
    check_new_password(password)
    link = find_password_link(session, secret, now)
    if link is None:
        return None
    spent = session.execute(
        update(Invitation)
        .where(Invitation.id == link.id, Invitation.used_at.is_(None))
        .values(used_at=now)
    )
    if spent.rowcount != 1:  # type: ignore[attr-defined]
        return None
    user = session.get(User, link.user_id)
    assert user is not None, "links are deleted with their user"
    set_password(user, password)
    user.updated_at = now
    return user


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


def list_api_keys(session: Session) -> list[ApiKey]:
    """Every API key, live ones first, newest first within each group."""
    query = select(ApiKey).order_by(ApiKey.revoked_at.is_not(None), ApiKey.created_at.desc())
    return list(session.scalars(query))


def get_api_key(session: Session, key_id: int) -> ApiKey:
    """Return the API key with this id or raise `NotFound`."""
    key = session.get(ApiKey, key_id)
    if key is None:
        raise NotFound("api_key", str(key_id), field="id")
    return key


def revoke_api_key(key: ApiKey, now: datetime) -> bool:
    """Revoke `key` (the next request with it is refused); return whether it was live."""
    if key.revoked_at is not None:
        return False
    key.revoked_at = now
    return True
