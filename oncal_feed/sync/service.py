"""Running syncs inside the app: live providers, token upkeep, and "sync now" for a user.

`run_sync()` is what the queue's tasks and the API call: it builds the connection's
provider with the connections package's `provider_for` (refreshing tokens), runs the
engine, closes the provider and keeps any refreshed token.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime
from typing import Any

from flask import Flask, current_app
from sqlalchemy import select, update

from oncal_feed.db import get_database, utcnow
from oncal_feed.models import CalendarConnection, User
from oncal_feed.providers.base import CalendarProvider
from oncal_feed.sync.engine import ACTIVE_STATUSES, ProviderFactory, SyncReport, sync_connection

__all__ = ["ProviderFactory", "run_sync", "sync_user_now", "use_providers"]

_PROVIDERS_KEY = "oncal_sync_providers"


def use_providers(app: Flask, factory: ProviderFactory | None) -> None:
    """Make this app's syncs use `factory` instead of live Google/Microsoft adapters.

    For tests and demos that sync into in-memory calendars; None restores the default.
    """
    if factory is None:
        app.extensions.pop(_PROVIDERS_KEY, None)
    else:
        app.extensions[_PROVIDERS_KEY] = factory


@contextmanager
def _live_providers(app: Flask, now: datetime) -> Iterator[ProviderFactory]:
    """Yield a factory of live adapters; afterwards close them and keep refreshed tokens."""
    from oncal_feed.connections.service import provider_for

    made: list[tuple[CalendarConnection, str | None, Any]] = []

    def factory(connection: CalendarConnection) -> CalendarProvider:
        before = connection.token_ciphertext
        provider = provider_for(connection, now=now, app=app)
        made.append((connection, before, provider))
        return provider

    try:
        yield factory
    finally:
        for connection, before, provider in made:
            provider.close()
            if connection.token_ciphertext != before:
                _keep_refreshed_token(app, connection, before)


def _keep_refreshed_token(app: Flask, connection: CalendarConnection, before: str | None) -> None:
    """Store a token the client refreshed during the sync.

    Compare-and-set on the old ciphertext: if the user reconnected meanwhile, their new
    grant wins over the token this sync refreshed.
    """
    with get_database(app).session() as session:
        session.execute(
            update(CalendarConnection)
            .where(
                CalendarConnection.id == connection.id,
                CalendarConnection.token_ciphertext == before,
            )
            .values(
                token_ciphertext=connection.token_ciphertext,
                token_expires_at=connection.token_expires_at,
            )
            .execution_options(synchronize_session=False)
        )


def run_sync(
    app: Flask,
    connection_id: int,
    *,
    now: datetime | None = None,
    full_check: bool | None = None,
    window_days: int | None = None,
) -> SyncReport:
    """Sync one connection now with the app's providers; see `engine.sync_connection`."""
    now = now or utcnow()
    database = get_database(app)
    base_url = app.config["BASE_URL"]
    options: dict[str, Any] = {"full_check": full_check, "window_days": window_days}
    override: ProviderFactory | None = app.extensions.get(_PROVIDERS_KEY)
    if override is not None:
        return sync_connection(database, connection_id, override, now, base_url=base_url, **options)
    with _live_providers(app, now) as factory:
        return sync_connection(database, connection_id, factory, now, base_url=base_url, **options)


def sync_user_now(user: User, days: int | None = None) -> dict[str, Any]:
    """Sync each of the user's active connections now; return what each one did.

    `days` widens or narrows the window ahead for this run only (the connection keeps
    its own setting). A manual sync also lists the remote calendar, so events the user
    deleted there come back at once. A connection a worker is syncing at this moment is
    queued to run again right after (`busy` in the answer).
    """
    from oncal_feed.sync.tasks import request_sync

    app: Flask = current_app._get_current_object()  # type: ignore[attr-defined]
    with get_database(app).sessionmaker() as session:
        rows = session.execute(
            select(CalendarConnection.id, CalendarConnection.provider)
            .where(
                CalendarConnection.user_id == user.id,
                CalendarConnection.status.in_(ACTIVE_STATUSES),
            )
            .order_by(CalendarConnection.provider)
        ).all()
    results = []
    totals = {"created": 0, "updated": 0, "deleted": 0, "failed": 0}
    for connection_id, provider in rows:
        report = run_sync(app, connection_id, full_check=True, window_days=days)
        if report.outcome == "busy":
            request_sync(app, [connection_id])
        totals["created"] += report.created
        totals["updated"] += report.updated
        totals["deleted"] += report.deleted
        totals["failed"] += report.outcome in ("failed", "needs_reauth")
        results.append({"provider": provider, **report.as_dict()})
    return {"connections": results, **totals}
