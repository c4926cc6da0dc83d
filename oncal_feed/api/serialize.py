"""JSON shapes of users, schedules, shifts and sources in API answers. Never includes a secret."""

from __future__ import annotations

from typing import Any

from oncal_feed.db import instant_json
from oncal_feed.models import ApiKey, Schedule, Shift, Source, User

__all__ = ["api_key_json", "schedule_json", "shift_json", "source_json", "user_json"]


def user_json(user: User) -> dict[str, Any]:
    """Public fields of a user (no password hash, no feed token)."""
    return {
        "id": user.public_id,
        "email": user.email,
        "display_name": user.display_name,
        "time_zone": user.time_zone,
        "role": user.role,
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
        "also_on_call": shift.also_on_call or [],
        "revision": shift.revision,
        "created_at": instant_json(shift.created_at),
        "updated_at": instant_json(shift.updated_at),
        "deleted": shift.deleted_at is not None,
    }


def source_json(source: Source, schedule_key: str, user_email: str | None) -> dict[str, Any]:
    """Fields and status of a source; its URL or token only redacted (`address`)."""
    return {
        "id": source.id,
        "schedule": schedule_key,
        "kind": source.kind,
        "name": source.name,
        "address": source.redacted,
        "pagerduty_schedule_ids": (source.options or {}).get("schedule_ids"),
        "user_email": user_email,
        "role": source.role,
        "poll_interval": source.poll_interval,
        "status": {
            "state": source.status,
            "last_poll_at": instant_json(source.last_poll_at),
            "last_success_at": instant_json(source.last_success_at),
            "last_change_at": instant_json(source.last_change_at),
            "next_poll_at": instant_json(source.next_poll_at),
            "events_read": source.events_read,
            "shifts_mapped": source.shifts_mapped,
            "unmatched": source.unmatched_count,
            "unmatched_examples": list(source.unmatched_examples or []),
            "last_error": source.last_error,
            "failure_count": source.failure_count,
        },
        "created_at": instant_json(source.created_at),
        "updated_at": instant_json(source.updated_at),
    }


def api_key_json(key: ApiKey) -> dict[str, Any]:
    """Fields of an API key: name, the first characters of the secret, and dates."""
    return {
        "id": key.id,
        "name": key.name,
        "prefix": key.prefix,
        "created_at": instant_json(key.created_at),
        "last_used_at": instant_json(key.last_used_at),
        "revoked_at": instant_json(key.revoked_at),
        "revoked": key.revoked_at is not None,
    }
