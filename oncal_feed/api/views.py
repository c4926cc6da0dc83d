"""Views of the JSON API. Each parses the request, calls the store, commits, answers.

Nothing is written unless the whole request is valid: views commit only after every
check has passed, and the request's session is rolled back at teardown otherwise.
"""

from __future__ import annotations

import logging
from functools import cache
from importlib.resources import files
from typing import Any

from flask import Blueprint, Response, g, jsonify, request
from werkzeug.exceptions import BadRequest, RequestEntityTooLarge, UnsupportedMediaType

from oncal_feed import accounts, shifts
from oncal_feed.api.serialize import schedule_json, shift_json, user_json
from oncal_feed.db import get_session, utcnow
from oncal_feed.errors import Unauthorized, ValidationError
from oncal_feed.models import Schedule
from oncal_feed.notify import shifts_changed
from oncal_feed.query import refuse_repeated_parameters
from oncal_feed.validation import (
    parse_external_id,
    parse_page,
    parse_public_id,
    parse_schedule,
    parse_schedule_key,
    parse_shift,
    parse_shift_list,
    parse_user,
    parse_window,
)

__all__ = ["api_blueprint"]

api_blueprint = Blueprint("api_v1", __name__, url_prefix="/api/v1")
log = logging.getLogger(__name__)


@api_blueprint.before_request
def require_api_key() -> None:
    """Authenticate every API request with `Authorization: Bearer <key>`."""
    if request.endpoint == "api_v1.openapi":
        return
    scheme, _, secret = request.headers.get("Authorization", "").partition(" ")
    if scheme.lower() != "bearer" or not secret.strip():
        raise Unauthorized("Send an API key as 'Authorization: Bearer <key>'.")
    session = get_session()
    key = accounts.authenticate_api_key(session, secret.strip(), utcnow())
    if key is None:
        raise Unauthorized("The API key is unknown or revoked.", invalid_token=True)
    if session.dirty:
        # Record the key's use now: the request's own work may fail and be rolled back.
        session.commit()
    g.api_key_id = key.id


# After the key check: an unauthenticated caller learns nothing about the parameters.
api_blueprint.before_request(refuse_repeated_parameters)


def json_body() -> Any:
    """Return the parsed JSON body, or raise a 413/415/422 that says what is wrong.

    A body over MAX_CONTENT_LENGTH raises werkzeug's 413 while it is read. A chunked
    body (no Content-Length) is cut at the limit by werkzeug, silently: one that fills
    the limit is taken as too large, not parsed as truncated JSON.
    """
    if not request.is_json:
        raise UnsupportedMediaType("Send the body as JSON with 'Content-Type: application/json'.")
    limit = request.max_content_length
    chunked = request.content_length is None
    if chunked and limit is not None and len(request.get_data(cache=True)) >= limit:
        raise RequestEntityTooLarge()
    try:
        return request.get_json()
    except (BadRequest, RecursionError):
        # RecursionError: a deeply nested array like [[[[...]]]] is not a sensible body.
        raise ValidationError.single("body", "is not valid JSON") from None


def _commit_and_notify(touched: set[int]) -> None:
    get_session().commit()
    shifts_changed(touched)


def _schedule(key: str) -> Schedule:
    return shifts.get_schedule(get_session(), parse_schedule_key(key))


@cache
def _openapi_text() -> str:
    return files("oncal_feed.api").joinpath("openapi.json").read_text()


@api_blueprint.get("/openapi.json")
def openapi() -> Response:
    """Serve the OpenAPI document of this API (no key needed)."""
    return Response(_openapi_text(), mimetype="application/json")


@api_blueprint.get("/users")
def list_users() -> Response:
    """List users by email, paged with `limit` and `after` (an email)."""
    limit, after = parse_page(request.args.get("limit"), request.args.get("after"))
    users = accounts.list_users(get_session(), after=after, limit=limit)
    body: dict[str, Any] = {"users": [user_json(u) for u in users]}
    if len(users) == limit:
        body["next_after"] = users[-1].email
    return jsonify(body)


@api_blueprint.post("/users")
def create_user() -> tuple[Response, int]:
    """Create a user."""
    user = accounts.create_user(get_session(), parse_user(json_body()), utcnow())
    get_session().commit()
    return jsonify(user_json(user)), 201


@api_blueprint.get("/users/<public_id>")
def get_user(public_id: str) -> Response:
    """Return one user."""
    return jsonify(user_json(accounts.get_user(get_session(), parse_public_id(public_id))))


@api_blueprint.patch("/users/<public_id>")
def update_user(public_id: str) -> Response:
    """Change a user's email, display name or time zone."""
    session = get_session()
    user = accounts.get_user(session, parse_public_id(public_id))
    result = accounts.update_user(session, user, parse_user(json_body(), partial=True), utcnow())
    _commit_and_notify(result.touched_user_ids)
    return jsonify(user_json(user))


@api_blueprint.get("/users/<public_id>/shifts")
def user_shifts(public_id: str) -> Response:
    """List the user's live shifts overlapping `[from, to)`."""
    session = get_session()
    user = accounts.get_user(session, parse_public_id(public_id))
    start, end = parse_window(request.args.get("from"), request.args.get("to"))
    found = shifts.shifts_for_user(session, user.id, start, end)
    return jsonify({"shifts": [shift_json(s, user) for s in found]})


@api_blueprint.put("/schedules/<key>")
def put_schedule(key: str) -> tuple[Response, int]:
    """Create or replace a schedule's name, zone and URL."""
    key = parse_schedule_key(key)
    data = parse_schedule(json_body())
    schedule, created, result = shifts.upsert_schedule(get_session(), key, data, utcnow())
    _commit_and_notify(result.touched_user_ids)
    return jsonify(schedule_json(schedule)), 201 if created else 200


@api_blueprint.get("/schedules/<key>")
def get_schedule(key: str) -> Response:
    """Return one schedule."""
    return jsonify(schedule_json(_schedule(key)))


@api_blueprint.put("/schedules/<key>/shifts/<external_id>")
def put_shift(key: str, external_id: str) -> tuple[Response, int]:
    """Create or update one shift, identified by the source's external id."""
    session = get_session()
    schedule = _schedule(key)
    data = parse_shift(json_body(), external_id=parse_external_id(external_id))
    result = shifts.upsert_shift(session, schedule, data, utcnow())
    _commit_and_notify(result.touched_user_ids)
    shift = shifts.get_shift(session, schedule, external_id)
    return jsonify(shift_json(shift, shift.user)), 201 if result.created else 200


@api_blueprint.get("/schedules/<key>/shifts/<external_id>")
def get_shift(key: str, external_id: str) -> Response:
    """Return one shift (tombstones too, marked `deleted`)."""
    shift = shifts.get_shift(get_session(), _schedule(key), parse_external_id(external_id))
    return jsonify(shift_json(shift, shift.user))


@api_blueprint.delete("/schedules/<key>/shifts/<external_id>")
def delete_shift(key: str, external_id: str) -> tuple[str, int]:
    """Delete a shift (it stays as a cancelled event in feeds for 30 days)."""
    schedule = _schedule(key)
    result = shifts.delete_shift(get_session(), schedule, parse_external_id(external_id), utcnow())
    _commit_and_notify(result.touched_user_ids)
    return "", 204


@api_blueprint.put("/schedules/<key>/shifts")
def import_window(key: str) -> Response:
    """Replace all of the schedule's shifts overlapping `[from, to)` with the given list."""
    schedule = _schedule(key)
    start, end = parse_window(request.args.get("from"), request.args.get("to"))
    items = parse_shift_list(json_body())
    result = shifts.import_window(get_session(), schedule, start, end, items, utcnow())
    _commit_and_notify(result.touched_user_ids)
    return jsonify(result.as_dict())
