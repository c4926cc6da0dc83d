"""JSON routes under /api/calendar: connect, callback, list, sync now, disconnect, status.

Each view parses the request, calls one function of `service`, and answers. Refusals
from the OAuth flows become 4xx JSON naming the problem (502 when Google or Microsoft
failed); nothing here ever answers with a token.
"""

from __future__ import annotations

import logging
from typing import Any

from flask import Blueprint, current_app, jsonify, request
from sqlalchemy.orm import Session
from werkzeug.wrappers import Response

from oncal_feed.auth import current_user, login_required
from oncal_feed.connections import flow, service
from oncal_feed.connections.disconnect import disconnect as disconnect_calendar
from oncal_feed.connections.errors import OAuthError
from oncal_feed.connections.schedule_push import list_pushes
from oncal_feed.db import get_session
from oncal_feed.errors import ValidationError
from oncal_feed.errors_http import error_response
from oncal_feed.models import CalendarConnection, User
from oncal_feed.providers.base import ProviderError
from oncal_feed.query import refuse_repeated_parameters
from oncal_feed.sync import request_sync, sync_user_now
from oncal_feed.web.oauth import finish_on_page, started_from_page

__all__ = ["connections_blueprint"]

connections_blueprint = Blueprint("calendar", __name__, url_prefix="/api/calendar")
connections_blueprint.before_request(refuse_repeated_parameters)

MAX_SYNC_DAYS = 3650
# Libraries that log request or response bodies (codes, client secrets, tokens) at DEBUG.
_SECRET_LOGGERS = ("requests_oauthlib", "oauthlib", "msal")


@connections_blueprint.record_once
def _quiet_secret_loggers(_state: object) -> None:
    # Only loggers nobody configured: an operator who deliberately turns one up keeps it.
    for name in _SECRET_LOGGERS:
        logger = logging.getLogger(name)
        if logger.level == logging.NOTSET:
            logger.setLevel(logging.WARNING)


@connections_blueprint.errorhandler(OAuthError)
def _oauth_error(exc: OAuthError) -> Response:
    return error_response(exc.status, exc.code, exc.message)


@connections_blueprint.errorhandler(ProviderError)
def _provider_error(exc: ProviderError) -> Response:
    # Provider messages are built by our adapters from status codes and reasons only.
    return error_response(502, "provider_error", f"The calendar service failed: {exc}")


def _sync_soon(connection: CalendarConnection) -> None:
    # The connection (and its schedule pushes) are marked dirty already, so the sweep would
    # find them anyway; the nudge makes the first sync (or the catch-up after a
    # reconnect) start at once.
    ids = [connection.id, *(push.id for push, _ in list_pushes(get_session(), connection))]
    request_sync(current_app._get_current_object(), ids)  # type: ignore[attr-defined]


def _user() -> User:
    user = current_user()
    assert user is not None, "login_required runs first"
    return user


def _flag(name: str) -> bool | None:
    """Read a yes/no query flag (`1`/`true`/`yes`, `0`/`false`/`no`); None when absent."""
    raw = request.args.get(name)
    if raw is None:
        return None
    value = raw.strip().lower()
    if value in ("1", "true", "yes"):
        return True
    if value in ("0", "false", "no", ""):
        return False
    raise ValidationError.single(name, "must be 1 or 0")


@connections_blueprint.get("/status")
def status() -> Response:
    """Which providers this server can connect to (no sign-in needed)."""
    return jsonify(service.configured_providers(current_app.config))


@connections_blueprint.get("/connections")
@login_required
def connections() -> Response:
    """The signed-in user's connections: status, calendar, last sync and error."""
    session = get_session()
    rows = service.list_connections(session, _user())
    return jsonify({"connections": [_with_pushes(session, row) for row in rows]})


def _with_pushes(session: Session, row: CalendarConnection) -> dict[str, Any]:
    """A connection's summary, with those of its schedule pushes."""
    pushes = [
        {"schedule": schedule.key, "schedule_name": schedule.name, **service.connection_summary(p)}
        for p, schedule in list_pushes(session, row)
    ]
    return {**service.connection_summary(row), "schedule_pushes": pushes}


@connections_blueprint.post("/<provider>/connect")
@login_required
def connect(provider: str) -> Response:
    """Start OAuth; `?primary=1` writes into the primary calendar instead of our own.

    A POST with the CSRF token: starting replaces the flow under way.
    """
    url = flow.start_connect(get_session(), _user(), provider, use_primary=_flag("primary"))
    return jsonify({"authorization_url": url})


@connections_blueprint.get("/<provider>/callback")
@login_required
def callback(provider: str) -> Response:
    """Finish OAuth: the provider redirects the browser here with `code` and `state`.

    A flow started from the settings page ends there, with a message, instead of JSON.
    """

    def finish() -> CalendarConnection:
        connection = flow.finish_connect(get_session(), _user(), provider, request.args.to_dict())
        _sync_soon(connection)
        return connection

    if started_from_page(provider):
        return finish_on_page(provider, finish)
    connection = finish()
    return jsonify({"connected": provider, "connection": service.connection_summary(connection)})


@connections_blueprint.post("/sync")
@login_required
def sync_now() -> Response:
    """Push the user's shifts for the next `days` days now; answers the counts."""
    days = request.args.get("days", type=int)
    if "days" in request.args and (days is None or not 1 <= days <= MAX_SYNC_DAYS):
        raise ValidationError.single("days", f"must be a whole number from 1 to {MAX_SYNC_DAYS}")
    return jsonify(sync_user_now(_user(), days))


@connections_blueprint.delete("/<provider>")
@login_required
def disconnect(provider: str) -> tuple[str, int]:
    """Revoke and forget the connection; `?remove_events=1` also deletes what we wrote."""
    remove = bool(_flag("remove_events"))
    disconnect_calendar(get_session(), _user(), provider, remove_events=remove)
    return "", 204
