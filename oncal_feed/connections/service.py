"""Calendar connections: which providers can be connected, and the user's connections.

The flow lives in `connections.flow` (connect, callback), building an adapter from a
stored grant in `connections.credentials`, and disconnecting in `connections.disconnect`;
they share these lookups.

One account connection row per user and provider, kept for good: reconnecting after a
revoked grant (or a plain disconnect) reuses the row, its calendar and its sync records,
so the remote calendar gets no second calendar and no duplicate events. Its schedule
pushes (`connections.schedule_push`) are rows of their own under it.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from flask import Flask, current_app
from sqlalchemy import select
from sqlalchemy.orm import Session

from oncal_feed.connections.errors import ProviderNotConfigured
from oncal_feed.db import instant_json
from oncal_feed.errors import NotFound
from oncal_feed.models import CalendarConnection, User
from oncal_feed.providers.registry import PROVIDERS, provider_info

__all__ = [
    "ConnectionOptions",
    "check_provider",
    "configured_providers",
    "connection_summary",
    "flask_app",
    "get_connection",
    "list_connections",
    "require_configured",
    "set_options",
]


def flask_app(app: Flask | None) -> Flask:
    """`app`, or the app of the current context."""
    if app is not None:
        return app
    current: Flask = current_app._get_current_object()  # type: ignore[attr-defined]
    return current


def check_provider(provider: str) -> None:
    """Raise `NotFound` unless `provider` is a registered provider's name."""
    if provider_info(provider) is None:
        raise NotFound("calendar provider", provider)


def configured_providers(config: Mapping[str, Any]) -> dict[str, bool]:
    """Which providers have an OAuth client configured: `{"google": bool, "microsoft": bool}`."""
    return {info.name: bool(config.get(info.configured_setting)) for info in PROVIDERS}


def require_configured(config: Mapping[str, Any], provider: str) -> None:
    """Raise `NotFound` for an unknown provider, `ProviderNotConfigured` for one not set up."""
    check_provider(provider)
    if not configured_providers(config)[provider]:
        raise ProviderNotConfigured(provider)


def get_connection(session: Session, user: User, provider: str) -> CalendarConnection | None:
    """Return the user's account connection to `provider` (in any status), or None."""
    return session.scalar(
        select(CalendarConnection).where(
            CalendarConnection.user_id == user.id,
            CalendarConnection.provider == provider,
            CalendarConnection.parent_id.is_(None),
        )
    )


@dataclass(frozen=True)
class ConnectionOptions:
    """What a connected calendar shows: schedules (empty: all), busy/free, a reminder."""

    busy: bool = False
    reminder_minutes: int | None = None
    schedule_keys: tuple[str, ...] = ()


def set_options(connection: CalendarConnection, options: ConnectionOptions, now: datetime) -> bool:
    """Store `options` on `connection`; whether they changed (and its events must be
    pushed again). The caller commits and schedules the push."""
    keys = sorted(options.schedule_keys) or None
    if (connection.busy, connection.reminder_minutes, connection.schedule_keys) == (
        options.busy,
        options.reminder_minutes,
        keys,
    ):
        return False
    connection.busy = options.busy
    connection.reminder_minutes = options.reminder_minutes
    connection.schedule_keys = keys
    connection.updated_at = now
    return True


def list_connections(session: Session, user: User) -> list[CalendarConnection]:
    """The user's account connections that are not disconnected, Google first (their
    schedule pushes: `connections.schedule_push.list_pushes`)."""
    rows = session.scalars(
        select(CalendarConnection)
        .where(
            CalendarConnection.user_id == user.id,
            CalendarConnection.parent_id.is_(None),
            CalendarConnection.status != "disconnected",
        )
        .order_by(CalendarConnection.provider)
    )
    return list(rows)


def connection_summary(connection: CalendarConnection) -> dict[str, Any]:
    """The JSON shape of a connection for its owner: status and sync facts, never a secret."""
    return {
        "provider": connection.provider,
        "status": connection.status,
        "account_email": connection.account_email,
        "calendar_name": connection.calendar_name,
        "use_primary": connection.use_primary,
        "last_sync_at": instant_json(connection.last_sync_at),
        "last_success_at": instant_json(connection.last_success_at),
        "last_error": connection.last_error,
        "last_error_at": instant_json(connection.last_error_at),
        # When a failed sync will be tried again (None when nothing is waiting).
        "next_retry_at": instant_json(connection.next_retry_at),
        "last_counts": {
            "created": connection.last_created,
            "updated": connection.last_updated,
            "deleted": connection.last_deleted,
        },
        "connected_at": instant_json(connection.created_at),
    }
