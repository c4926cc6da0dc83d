"""Views of the JSON API. Each parses the request, calls the store, commits, answers."""

from __future__ import annotations

from importlib.resources import files
from typing import Any

from flask import Blueprint, Response, g, jsonify, request
from werkzeug.exceptions import BadRequest, UnsupportedMediaType

from oncal_feed import accounts, shifts
from oncal_feed.api.serialize import schedule_json, shift_json, user_json
from oncal_feed.db import get_session, utcnow
from oncal_feed.errors import Unauthorized, ValidationError
from oncal_feed.models import User
from oncal_feed.notify import shifts_changed
from oncal_feed.validation import (
    parse_schedule,
    parse_schedule_key,
    parse_shift,
    parse_user,
    parse_window,
)

__all__ = ["api_blueprint"]

api_blueprint = Blueprint("api_v1", __name__, url_prefix="/api/v1")

MAX_PAGE = 500


@api_blueprint.before_request
def require_api_key() -> None:
    """Authenticate every API request with `Authorization: Bearer <key>`."""
    if request.endpoint == "api_v1.openapi":
        return
    scheme, _, secret = request.headers.get("Authorization", "").partition(" ")
    if scheme.lower() != "bearer" or not secret.strip():
        raise Unauthorized("Send an API key as 'Authorization: Bearer <key>'.")
    key = accounts.authenticate_api_key(get_session(), secret.strip(), utcnow())
    if key is None:
        raise Unauthorized("The API key is unknown or revoked.")
    g.api_key_id = key.id


def json_body() -> Any:
    """Return the parsed JSON body, or raise a 400/415/422 that says what is wrong."""
    if not request.is_json:
        raise UnsupportedMediaType("Send the body as JSON with 'Content-Type: application/json'.")
    try:
        return request.get_json()
    except BadRequest:
        raise ValidationError.single("body", "is not valid JSON") from None


def _commit_and_notify(touched: set[int]) -> None:
    get_session().commit()
    shifts_changed(touched)


@api_blueprint.get("/openapi.json")
def openapi() -> Response:
    """Serve the OpenAPI document of this API (no key needed)."""
    text = files("oncal_feed.api").joinpath("openapi.json").read_text()
    return Response(text, mimetype="application/json")


@api_blueprint.get("/users")
def list_users() -> Response:
    """List users by email, paged with `limit` and `after` (an email)."""
    limit = _int_arg("limit", default=100, low=1, high=MAX_PAGE)
    after = request.args.get("after", "")
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
    return jsonify(user_json(accounts.get_user(get_session(), public_id)))


@api_blueprint.patch("/users/<public_id>")
def update_user(public_id: str) -> Response:
    """Change a user's email, display name or time zone."""
    session = get_session()
    user = accounts.get_user(session, public_id)
    result = accounts.update_user(session, user, parse_user(json_body(), partial=True), utcnow())
    _commit_and_notify(result.touched_user_ids)
    return jsonify(user_json(user))


@api_blueprint.get("/users/<public_id>/shifts")
def user_shifts(public_id: str) -> Response:
    """List the user's live shifts overlapping `[from, to)`."""
    session = get_session()
    user: User = accounts.get_user(session, public_id)
    start, end = parse_window(request.args.get("from"), request.args.get("to"))
    found = shifts.shifts_for_user(session, user.id, start, end)
    return jsonify({"shifts": [shift_json(s, user) for s in found]})


@api_blueprint.put("/schedules/<key>")
def put_schedule(key: str) -> tuple[Response, int]:
    """Create or replace a schedule's name, zone and URL."""
    parse_schedule_key(key)
    schedule, created, result = shifts.upsert_schedule(
        get_session(), key, parse_schedule(json_body()), utcnow()
    )
    _commit_and_notify(result.touched_user_ids)
    return jsonify(schedule_json(schedule)), 201 if created else 200


@api_blueprint.get("/schedules/<key>")
def get_schedule(key: str) -> Response:
    """Return one schedule."""
    return jsonify(schedule_json(shifts.get_schedule(get_session(), key)))


@api_blueprint.put("/schedules/<key>/shifts/<external_id>")
def put_shift(key: str, external_id: str) -> tuple[Response, int]:
    """Create or update one shift, identified by the source's external id."""
    session = get_session()
    schedule = shifts.get_schedule(session, key)
    data = parse_shift(json_body(), external_id=external_id)
    result = shifts.upsert_shift(session, schedule, data, utcnow())
    _commit_and_notify(result.touched_user_ids)
    shift = shifts.get_shift(session, schedule, external_id)
    return jsonify(shift_json(shift, shift.user)), 201 if result.created else 200


@api_blueprint.get("/schedules/<key>/shifts/<external_id>")
def get_shift(key: str, external_id: str) -> Response:
    """Return one shift (tombstones too, marked `deleted`)."""
    session = get_session()
    shift = shifts.get_shift(session, shifts.get_schedule(session, key), external_id)
    return jsonify(shift_json(shift, shift.user))


@api_blueprint.delete("/schedules/<key>/shifts/<external_id>")
def delete_shift(key: str, external_id: str) -> tuple[str, int]:
    """Delete a shift (it stays as a cancelled event in feeds for 30 days)."""
    session = get_session()
    schedule = shifts.get_schedule(session, key)
    result = shifts.delete_shift(session, schedule, external_id, utcnow())
    _commit_and_notify(result.touched_user_ids)
    return "", 204


@api_blueprint.put("/schedules/<key>/shifts")
def import_window(key: str) -> Response:
    """Replace all of the schedule's shifts overlapping `[from, to)` with the given list."""
    session = get_session()
    schedule = shifts.get_schedule(session, key)
    start, end = parse_window(request.args.get("from"), request.args.get("to"))
    body = json_body()
    if not isinstance(body, list):
        raise ValidationError.single("body", "must be a JSON array of shifts")
    items = _parse_all(body)
    result = shifts.import_window(session, schedule, start, end, items, utcnow())
    _commit_and_notify(result.touched_user_ids)
    return jsonify(result.as_dict())


def _parse_all(body: list[Any]) -> list[Any]:
    """Validate every item, reporting all bad ones together with their index."""
    items, problems = [], []
    for index, raw in enumerate(body):
        try:
            items.append(parse_shift(raw, prefix=f"[{index}]."))
        except ValidationError as exc:
            problems.extend(exc.errors)
    if problems:
        raise ValidationError(problems)
    return items


def _int_arg(name: str, *, default: int, low: int, high: int) -> int:
    raw = request.args.get(name)
    if raw is None:
        return default
    if not raw.isdigit() or not low <= int(raw) <= high:
        raise ValidationError.single(name, f"must be a whole number from {low} to {high}")
    return int(raw)
