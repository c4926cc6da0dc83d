"""API views of a schedule's sources: create, list, get, update, delete, poll now.

Registered on the API blueprint (same API-key check). URLs and tokens go in, never out:
answers show the redacted `address` only.
"""

from __future__ import annotations

import logging
from typing import Any

from flask import Response, current_app, jsonify, request
from sqlalchemy import select

from oncal_feed import shifts
from oncal_feed.api.serialize import source_json
from oncal_feed.api.views import api_blueprint, json_body
from oncal_feed.connections.vault import get_vault
from oncal_feed.db import get_session, utcnow
from oncal_feed.errors import ValidationError
from oncal_feed.models import Schedule, Source, User
from oncal_feed.notify import shifts_changed
from oncal_feed.sources import service
from oncal_feed.sources.tasks import get_poller
from oncal_feed.validation import parse_schedule_key, parse_source, parse_source_id

__all__: list[str] = []

log = logging.getLogger(__name__)


def _schedule(key: str) -> Schedule:
    return shifts.get_schedule(get_session(), parse_schedule_key(key))


def _source(key: str, source_id: str) -> tuple[Schedule, Source]:
    schedule = _schedule(key)
    return schedule, service.get_source(get_session(), schedule, parse_source_id(source_id))


def _json(source: Source, schedule: Schedule) -> dict[str, Any]:
    email = None
    if source.user_id is not None:
        email = get_session().scalar(select(User.email).where(User.id == source.user_id))
    return source_json(source, schedule.key, email)


def _nudge(source_id: int) -> None:
    """Queue a poll now; if the queue fails, the source is due and the sweep polls it."""
    try:
        get_poller().nudge(source_id)
    except Exception:
        log.exception("could not queue a poll of source %s; the sweep will", source_id)


@api_blueprint.get("/schedules/<key>/sources")
def list_sources(key: str) -> Response:
    """List the schedule's sources with their status."""
    schedule = _schedule(key)
    found = service.list_sources(get_session(), schedule)
    return jsonify({"sources": [_json(s, schedule) for s in found]})


@api_blueprint.post("/schedules/<key>/sources")
def create_source(key: str) -> tuple[Response, int]:
    """Add a source (ICS/webcal URL or PagerDuty); it is polled at once."""
    schedule = _schedule(key)
    data = parse_source(json_body())
    interval = current_app.config["SOURCE_POLL_INTERVAL"]
    source = service.create_source(get_session(), schedule, data, get_vault(), utcnow(), interval)
    get_session().commit()
    _nudge(source.id)
    return jsonify(_json(source, schedule)), 201


@api_blueprint.get("/schedules/<key>/sources/<source_id>")
def get_source(key: str, source_id: str) -> Response:
    """Return one source and its status."""
    schedule, source = _source(key, source_id)
    return jsonify(_json(source, schedule))


@api_blueprint.patch("/schedules/<key>/sources/<source_id>")
def update_source(key: str, source_id: str) -> Response:
    """Change a source's name, address or token, person, role or poll interval."""
    schedule, source = _source(key, source_id)
    data = parse_source(json_body(), partial=True)
    service.update_source(get_session(), source, data, get_vault(), utcnow())
    get_session().commit()
    _nudge(source.id)
    return jsonify(_json(source, schedule))


@api_blueprint.delete("/schedules/<key>/sources/<source_id>")
def delete_source(key: str, source_id: str) -> tuple[str, int]:
    """Remove a source; the shifts it brought are cancelled."""
    _schedule_row, source = _source(key, source_id)
    result = service.delete_source(get_session(), source, utcnow())
    get_session().commit()
    shifts_changed(result.touched_user_ids)
    return "", 204


@api_blueprint.post("/schedules/<key>/sources/<source_id>/poll")
def poll_source(key: str, source_id: str) -> Response:
    """Poll the source now; `{"accept": true}` takes a held (shrunk) state as the new one."""
    schedule, source = _source(key, source_id)
    accept = False
    if request.content_length or request.is_json:
        body = json_body()
        if not isinstance(body, dict) or set(body) - {"accept"}:
            raise ValidationError.single("body", 'must be {} or {"accept": true}')
        accept = body.get("accept", False)
        if not isinstance(accept, bool):
            raise ValidationError.single("accept", "must be true or false")
    session = get_session()
    session.rollback()  # the poll uses sessions of its own; read its outcome afresh
    app = current_app._get_current_object()  # type: ignore[attr-defined]
    report = service.poll_source(app, source.id, utcnow(), accept=accept)
    session.expire_all()
    source = service.get_source(session, schedule, source.id)
    return jsonify({"poll": report.as_dict(), "source": _json(source, schedule)})
