"""JSON shapes of users, schedules and shifts in API answers. Never includes a secret."""

from __future__ import annotations

from typing import Any

from oncal_feed.db import instant_json
from oncal_feed.models import Schedule, Shift, User

__all__ = ["schedule_json", "shift_json", "user_json"]


def user_json(user: User) -> dict[str, Any]:
    """Public fields of a user (no password hash, no feed token)."""
    return {
        "id": user.public_id,
        "email": user.email,
        "display_name": user.display_name,
        "time_zone": user.time_zone,
        "created_at": instant_json(user.created_at),
        "updated_at": instant_json(user.updated_at),
    }


def schedule_json(schedule: Schedule) -> dict[str, Any]:
    """Fields of a schedule; `revision` rises only when its name, zone or URL changes."""
    return {
        "key": schedule.key,
        "name": schedule.name,
        "time_zone": schedule.time_zone,
        "url": schedule.url,
        "revision": schedule.revision,
        "created_at": instant_json(schedule.created_at),
        "updated_at": instant_json(schedule.updated_at),
    }


def shift_json(shift: Shift, user: User) -> dict[str, Any]:
    """Fields of a shift, with its owner's email and id (`user` is the shift's owner)."""
    return {
        "uid": shift.uid,
        "external_id": shift.external_id,
        "schedule": shift.schedule.key,
        "user_id": user.public_id,
        "user_email": user.email,
        "starts_at": instant_json(shift.starts_at),
        "ends_at": instant_json(shift.ends_at),
        "role": shift.role,
        "notes": shift.notes,
        "handover_from": shift.handover_from,
        "handover_to": shift.handover_to,
        "revision": shift.revision,
        "created_at": instant_json(shift.created_at),
        "updated_at": instant_json(shift.updated_at),
        "deleted": shift.deleted_at is not None,
    }
