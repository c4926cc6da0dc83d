"""Who is signed in: the user's public id in the Flask session cookie.

The cookie also carries the user's session generation: signing out bumps it, which ends
every session of that user, copies of the cookie included (a signed cookie cannot be
taken back otherwise).

Deliberately minimal: the settings-page work adds password sign-in, CSRF protection and
rate limits on top of `sign_in` / `sign_out`; views only need `login_required` and
`current_user()`.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import wraps
from typing import Any, TypeVar

from flask import g, session
from sqlalchemy import select

from oncal_feed.accounts import end_sessions
from oncal_feed.db import get_session
from oncal_feed.errors_http import error_response
from oncal_feed.models import User

__all__ = ["SESSION_USER_KEY", "current_user", "login_required", "sign_in", "sign_out"]

SESSION_USER_KEY = "user_id"
SESSION_GENERATION_KEY = "session_generation"
# Cookies from before sessions had generations: valid until the user's first bump.
_FIRST_GENERATION = 1

_View = TypeVar("_View", bound=Callable[..., Any])
_UNSET = object()


def current_user() -> User | None:
    """Return the signed-in user of this request, or None (looked up once per request)."""
    cached = g.get("current_user", _UNSET)
    if cached is not _UNSET:
        assert cached is None or isinstance(cached, User)
        return cached
    user = None
    public_id = session.get(SESSION_USER_KEY)
    if isinstance(public_id, str):
        user = get_session().scalar(select(User).where(User.public_id == public_id))
        generation = session.get(SESSION_GENERATION_KEY, _FIRST_GENERATION)
        if user is None or generation != user.session_generation:
            # The account is gone, or the session was ended (signed out, new password):
            # forget the cookie rather than failing each request.
            session.clear()
            user = None
    g.current_user = user
    return user


def login_required(view: _View) -> _View:
    """Answer 401 JSON unless a user is signed in."""

    @wraps(view)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        if current_user() is None:
            return error_response(401, "unauthorized", "Sign in first.")
        return view(*args, **kwargs)

    return wrapper  # type: ignore[return-value]


def sign_in(user: User) -> None:
    """Start a fresh session for `user` (anything from an earlier session is dropped)."""
    # Clearing first means nothing (such as a pending OAuth flow) survives a change of user.
    session.clear()
    session[SESSION_USER_KEY] = user.public_id
    session[SESSION_GENERATION_KEY] = user.session_generation
    session.permanent = True
    g.current_user = user


def sign_out() -> None:
    """End the signed-in user's sessions, on every device, and clear this one."""
    user = current_user()
    if user is not None:
        end_sessions(user)
        get_session().commit()
    session.clear()
    g.current_user = None
