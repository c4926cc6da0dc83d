"""Who is signed in: the user's public id in the Flask session cookie.

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

from oncal_feed.db import get_session
from oncal_feed.errors_http import error_response
from oncal_feed.models import User

__all__ = ["SESSION_USER_KEY", "current_user", "login_required", "sign_in", "sign_out"]

SESSION_USER_KEY = "user_id"

_View = TypeVar("_View", bound=Callable[..., Any])
_UNSET = object()


def current_user() -> User | None:
    """Return the signed-in user of this request, or None (looked up once per request)."""
    cached = g.get("current_user", _UNSET)
    if cached is not _UNSET:
        return cached  # type: ignore[return-value]
    user = None
    public_id = session.get(SESSION_USER_KEY)
    if isinstance(public_id, str):
        user = get_session().scalar(select(User).where(User.public_id == public_id))
        if user is None:
            # The account is gone: forget the stale cookie rather than failing each request.
            session.clear()
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
    session.permanent = True
    g.current_user = user


def sign_out() -> None:
    """End the session."""
    session.clear()
    g.current_user = None
