"""Admin actions for automation under /api/v1: API keys, roles, password links and the
state of every calendar connection. Same bearer keys as the rest of the API (a key is
an operator's credential), same error shapes; each view parses, calls one store
function, commits and answers.
"""

from __future__ import annotations

from typing import Any

from flask import Response, current_app, jsonify, request
from sqlalchemy import select

from oncal_feed import accounts
from oncal_feed.admin.links import password_link
from oncal_feed.admin.overview import admin_count
from oncal_feed.api.serialize import api_key_json, user_json
from oncal_feed.api.views import api_blueprint, json_body
from oncal_feed.connections.service import connection_summary
from oncal_feed.db import get_session, instant_json, utcnow
from oncal_feed.errors import Conflict, ValidationError
from oncal_feed.models import ROLES, CalendarConnection, User
from oncal_feed.validation import parse_page, parse_public_id

__all__ = ["CONNECTION_STATES"]

CONNECTION_STATES = ("active", "error", "needs_reauth", "disconnected")
MAX_KEY_NAME = 200


def _object(body: Any, fields: tuple[str, ...]) -> dict[str, Any]:
    """The body as an object holding only `fields` (unknown ones are refused)."""
    if not isinstance(body, dict):
        raise ValidationError.single("body", "must be a JSON object")
    unknown = sorted(set(body) - set(fields))
    if unknown:
        raise ValidationError.single(unknown[0], "is not a known field")
    return body


@api_blueprint.get("/api-keys")
def list_api_keys() -> Response:
    """List every API key (never a secret), live ones first."""
    return jsonify({"api_keys": [api_key_json(k) for k in accounts.list_api_keys(get_session())]})


@api_blueprint.post("/api-keys")
def create_api_key() -> tuple[Response, int]:
    """Create an API key; the answer holds its secret, shown this once."""
    body = _object(json_body(), ("name",))
    name = body.get("name")
    if not isinstance(name, str) or not name.strip() or len(name.strip()) > MAX_KEY_NAME:
        raise ValidationError.single("name", f"must be text of 1 to {MAX_KEY_NAME} characters")
    key, secret = accounts.create_api_key(get_session(), name.strip(), utcnow())
    get_session().commit()
    return jsonify({**api_key_json(key), "secret": secret}), 201


@api_blueprint.delete("/api-keys/<int:key_id>")
def revoke_api_key(key_id: int) -> tuple[str, int]:
    """Revoke an API key: its next request is refused (revoking twice is fine)."""
    session = get_session()
    accounts.revoke_api_key(accounts.get_api_key(session, key_id), utcnow())
    session.commit()
    return "", 204


@api_blueprint.put("/users/<public_id>/role")
def set_user_role(public_id: str) -> Response:
    """Make a user an admin or a member (the last admin stays one)."""
    session = get_session()
    user = accounts.get_user(session, parse_public_id(public_id))
    body = _object(json_body(), ("role",))
    role = body.get("role")
    if role not in ROLES:
        raise ValidationError.single("role", f"must be one of {', '.join(ROLES)}")
    if role == "member" and user.role == "admin" and admin_count(session) <= 1:
        raise Conflict("role", "this is the only admin; make someone else an admin first")
    accounts.set_role(user, str(role), utcnow())
    session.commit()
    return jsonify(user_json(user))


@api_blueprint.post("/users/<public_id>/password-links")
def create_password_link(public_id: str) -> tuple[Response, int]:
    """Make a single-use invitation (or reset) link; the answer holds it, shown once."""
    session = get_session()
    user = accounts.get_user(session, parse_public_id(public_id))
    body = _object(json_body(), ("kind",))
    kind = body.get("kind", "invite")
    if kind not in accounts.LINK_KINDS:
        raise ValidationError.single("kind", f"must be one of {', '.join(accounts.LINK_KINDS)}")
    made = password_link(session, user, str(kind), current_app.config, utcnow())
    answer = {
        "url": made.url,
        "kind": made.kind,
        "expires_at": instant_json(made.expires_at),
        "mailed": made.mailed,
    }
    return jsonify(answer), 201


@api_blueprint.get("/connections")
def list_connections() -> Response:
    """Every calendar connection with its state and its user, paged by user email."""
    limit, after = parse_page(request.args.get("limit"), request.args.get("after"))
    state = request.args.get("state")
    if state is not None and state not in CONNECTION_STATES:
        raise ValidationError.single("state", f"must be one of {', '.join(CONNECTION_STATES)}")
    # Paged by user, so a page never splits a user's connections.
    session = get_session()
    page = session.execute(
        select(User.id, User.email).where(User.email > after).order_by(User.email).limit(limit)
    ).all()
    query = (
        select(User, CalendarConnection)
        .join(CalendarConnection, CalendarConnection.user_id == User.id)
        .where(User.id.in_([user_id for user_id, _ in page]))
        .order_by(User.email, CalendarConnection.provider)
    )
    if state is not None:
        query = query.where(CalendarConnection.status == state)
    body: dict[str, Any] = {
        "connections": [
            {"user_id": user.public_id, "user_email": user.email, **connection_summary(row)}
            for user, row in session.execute(query).all()
        ]
    }
    if len(page) == limit:
        body["next_after"] = page[-1].email
    return jsonify(body)
