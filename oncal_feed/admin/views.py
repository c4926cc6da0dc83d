"""The `/admin` pages: admins only, in the settings page's look.

Forms post to a handler that does one thing and redirects back (post/redirect/get),
except where a secret is made (an API key, a password link): that page is the answer
to the POST itself, so the secret is shown once and never stored in the session
cookie, as a flashed message would be.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import timedelta
from functools import wraps
from typing import Any, TypeVar
from zoneinfo import ZoneInfo

from flask import (
    Blueprint,
    current_app,
    redirect,
    render_template,
    request,
    url_for,
)
from werkzeug.exceptions import NotFound as PageNotFound
from werkzeug.wrappers import Response

from oncal_feed import accounts, ops
from oncal_feed.admin import overview
from oncal_feed.admin.links import password_link
from oncal_feed.auth import current_user
from oncal_feed.connections.disconnect import disconnect as disconnect_calendar
from oncal_feed.connections.errors import OAuthError
from oncal_feed.db import get_database, get_session, utcnow
from oncal_feed.errors import NotFound
from oncal_feed.feeds.store import list_feeds, rotate_all_feeds
from oncal_feed.models import ROLES, User
from oncal_feed.web import page
from oncal_feed.web.oauth import tell

__all__ = ["FORBIDDEN_MESSAGE", "admin_blueprint", "admin_page"]

log = logging.getLogger(__name__)

admin_blueprint = Blueprint("admin", __name__, url_prefix="/admin")

_View = TypeVar("_View", bound=Callable[..., Any])
FORBIDDEN_MESSAGE = (
    "This part of oncal-feed is for admins. Your own calendar settings are on your "
    "settings page; ask an admin if you need something changed for someone else."
)
MAX_SEARCH = 200
MAX_KEY_NAME = 200


def admin_page(view: _View) -> _View:
    """Send visitors to sign in; answer members with the 403 page."""

    @wraps(view)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        user = current_user()
        if user is None:
            target = request.full_path.rstrip("?") if request.method == "GET" else None
            return redirect(url_for("web.login", next=target))
        if user.role != "admin":
            log.info("admin area refused to a member")
            body = render_template("error.html", title="Admins only", message=FORBIDDEN_MESSAGE)
            return body, 403
        return view(*args, **kwargs)

    return wrapper  # type: ignore[return-value]


@admin_blueprint.after_request
def _no_store(response: Response) -> Response:
    # These pages hold feed URLs, password links and new API keys.
    response.headers.setdefault("Cache-Control", "no-store")
    return response


def _zone() -> ZoneInfo:
    user = current_user()
    try:
        return ZoneInfo(user.time_zone if user else "UTC")
    except (ValueError, KeyError):
        return ZoneInfo("UTC")


def _target(public_id: str) -> User:
    try:
        return accounts.get_user(get_session(), public_id[:40])
    except NotFound:
        raise PageNotFound("There is no such user.") from None


def _back(public_id: str | None = None, anchor: str = "") -> Response:
    if public_id is None:
        where = url_for("admin.index")
    else:
        where = url_for("admin.user", public_id=public_id)
    return redirect(where + (f"#{anchor}" if anchor else ""), code=303)


@admin_blueprint.get("")
@admin_page
def index() -> str:
    """Sync health, users (searchable), API keys and schedules."""
    database = get_session()
    now = utcnow()
    search = str(request.args.get("q", ""))[:MAX_SEARCH]
    return render_template(
        "admin.html",
        user=current_user(),
        search=search,
        rows=overview.find_users(database, search),
        page_size=overview.PAGE_SIZE,
        health=overview.sync_health(database, now),
        queue_lag=lag_text(ops.queue_lag(get_database(current_app), now)),
        keys=accounts.list_api_keys(database),
        schedules=overview.schedules_with_counts(database, now),
        moment=lambda instant: page.moment(instant, _zone(), now),
        client_label=page.client_label,
        providers=page.PROVIDER_LABELS,
        inline_messages=True,
    )


@admin_blueprint.get("/users/<public_id>")
@admin_page
def user(public_id: str) -> str:
    """One user: role, feed, connections, password link."""
    target = _target(public_id)
    database = get_session()
    now = utcnow()
    return render_template(
        "admin_user.html",
        user=current_user(),
        target=target,
        connections=overview.connections_of(database, [target.id])[target.id],
        feeds=list_feeds(database, target),
        roles=ROLES,
        moment=lambda instant: page.moment(instant, _zone(), now),
        client_label=page.client_label,
        providers=page.PROVIDER_LABELS,
        inline_messages=True,
    )


@admin_blueprint.post("/users/<public_id>/role")
@admin_page
def set_role(public_id: str) -> Response:
    """Make the user an admin or a member (the last admin stays one)."""
    target = _target(public_id)
    role = str(request.form.get("role", ""))
    database = get_session()
    if role not in ROLES:
        tell("Choose admin or member.", "error", "role")
        return _back(public_id, "role")
    if role == "member" and target.role == "admin" and overview.admin_count(database) <= 1:
        tell("This is the only admin. Make someone else an admin first.", "error", "role")
        return _back(public_id, "role")
    if accounts.set_role(target, role, utcnow()):
        database.commit()
        tell(f"{target.display_name} is now {'an admin' if role == 'admin' else 'a member'}.",
             "success", "role")  # fmt: skip
    return _back(public_id, "role")


@admin_blueprint.post("/users/<public_id>/feed/rotate")
@admin_page
def rotate(public_id: str) -> Response:
    """Give every feed of the user a new URL; the old ones stop working at once."""
    target = _target(public_id)
    database = get_session()
    rotate_all_feeds(database, target, utcnow())
    database.commit()
    tell(
        f"{target.display_name}'s feeds have new addresses; the old ones have stopped "
        "working. They find the new ones on their settings page.",
        "success",
        "feed",
    )
    return _back(public_id, "feed")


@admin_blueprint.post("/users/<public_id>/connections/<provider>/disconnect")
@admin_page
def disconnect(public_id: str, provider: str) -> Response:
    """Disconnect one of the user's calendars (its events stay)."""
    target = _target(public_id)
    label = page.PROVIDER_LABELS.get(provider)
    if label is None:
        tell("There is no such calendar connection.", "error", "connections")
        return _back(public_id, "connections")
    try:
        disconnect_calendar(get_session(), target, provider, remove_events=False)
    except OAuthError as exc:
        tell(exc.message, "error", "connections")
        return _back(public_id, "connections")
    tell(f"{label} is disconnected for {target.display_name}. The events already there stay.",
         "success", "connections")  # fmt: skip
    return _back(public_id, "connections")


@admin_blueprint.post("/users/<public_id>/password-link")
@admin_page
def make_password_link(public_id: str) -> str:
    """Make an invitation or reset link and show it once (and mail it when SMTP is set)."""
    target = _target(public_id)
    kind = "reset" if request.form.get("kind") == "reset" else "invite"
    made = password_link(get_session(), target, kind, current_app.config, utcnow())
    return render_template(
        "admin_secret.html",
        user=current_user(),
        title="Password reset link" if kind == "reset" else "Invitation link",
        what=f"Send this link to {target.display_name} ({target.email}).",
        secret=made.url,
        note=(
            f"It works once, until {made.expires_text}. A newer link replaces it."
            + (f" It was also emailed to {target.email}." if made.mailed else "")
        ),
        back=url_for("admin.user", public_id=public_id),
    )


@admin_blueprint.post("/api-keys")
@admin_page
def create_key() -> Response | str:
    """Create an API key and show it once."""
    name = str(request.form.get("name", "")).strip()
    if not name or len(name) > MAX_KEY_NAME:
        tell(f"Give the key a name of 1 to {MAX_KEY_NAME} characters.", "error", "keys")
        return _back(anchor="keys")
    database = get_session()
    key, secret = accounts.create_api_key(database, name, utcnow())
    database.commit()
    return render_template(
        "admin_secret.html",
        user=current_user(),
        title="New API key",
        what=f"The API key {key.name!r} ({key.prefix}…). Send it as 'Authorization: Bearer <key>'.",
        secret=secret,
        note="Copy it now: it is not stored and will not be shown again.",
        back=url_for("admin.index") + "#keys",
    )


@admin_blueprint.post("/api-keys/<int:key_id>/revoke")
@admin_page
def revoke_key(key_id: int) -> Response:
    """Revoke an API key; the next request with it is refused."""
    database = get_session()
    try:
        key = accounts.get_api_key(database, key_id)
    except NotFound:
        tell("There is no such API key.", "error", "keys")
        return _back(anchor="keys")
    if accounts.revoke_api_key(key, utcnow()):
        database.commit()
        tell(f"The API key {key.name!r} ({key.prefix}…) is revoked.", "success", "keys")
    return _back(anchor="keys")


def lag_text(seconds: float) -> str:
    """Say how long the oldest waiting sync has waited, for people."""
    if seconds < 60:
        return f"{int(seconds)} s"
    return str(timedelta(seconds=int(seconds)))
