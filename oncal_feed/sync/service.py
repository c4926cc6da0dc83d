"""Running syncs inside the app: live providers and token upkeep.

`run_sync()` is what the queue's tasks and the API call: it builds the connection's
provider with the connections package's `provider_for` (refreshing tokens), runs the
engine, closes the provider and keeps any refreshed token.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import datetime, timedelta
from typing import Any

from flask import Flask
from sqlalchemy import update

from oncal_feed.connections.credentials import provider_for
from oncal_feed.db import get_database, utcnow
from oncal_feed.models import CalendarConnection
from oncal_feed.providers.base import AuthorizationLost, CalendarProvider
from oncal_feed.sync.apply import BatchSizer
from oncal_feed.sync.engine import ProviderFactory, SyncReport, sync_connection

__all__ = [
    "ProviderFactory",
    "batch_sizer",
    "grant_holder",
    "lease_ttl",
    "run_sync",
    "use_providers",
]

_PROVIDERS_KEY = "oncal_sync_providers"
_BATCH_SIZER_KEY = "oncal_sync_batch_sizer"


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
    made: list[tuple[CalendarConnection, str | None, Any]] = []

    def factory(connection: CalendarConnection) -> CalendarProvider:
        account = grant_holder(app, connection)
        before = account.token_ciphertext
        provider = provider_for(account, now=now, app=app)
        made.append((account, before, provider))
        return provider

    try:
        yield factory
    finally:
        for connection, before, provider in made:
            provider.close()
            if connection.token_ciphertext != before:
                _keep_refreshed_token(app, connection, before)


def grant_holder(app: Flask, connection: CalendarConnection) -> CalendarConnection:
    """The connection whose tokens `connection` uses: itself, or for a schedule push its
    account connection, read afresh (detached) so a token refreshed for one is kept for all.

    Raises `AuthorizationLost` when the account connection is gone.
    """
    if connection.parent_id is None:
        return connection
    with get_database(app).sessionmaker() as session:
        account = session.get(CalendarConnection, connection.parent_id)
        if account is None:
            raise AuthorizationLost("the calendar is not connected")
        session.expunge(account)
    return account


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


def batch_sizer(app: Flask) -> BatchSizer:
    """The app's `BatchSizer`: batch sizes learned on flaky links, for this process's syncs."""
    sizer = app.extensions.get(_BATCH_SIZER_KEY)
    if sizer is None:
        # setdefault: two threads racing here end up sharing one sizer.
        sizer = app.extensions.setdefault(_BATCH_SIZER_KEY, BatchSizer())
    assert isinstance(sizer, BatchSizer)
    return sizer


def lease_ttl(app: Flask) -> timedelta:
    """How long a worker holds a connection between renewals (`SYNC_LEASE_SECONDS`)."""
    return timedelta(seconds=int(app.config["SYNC_LEASE_SECONDS"]))


def run_sync(
    app: Flask,
    connection_id: int,
    *,
    now: datetime | None = None,
    full_check: bool | None = None,
    window_days: int | None = None,
    on_lease: Callable[[datetime], None] | None = None,
    retry: bool = False,
) -> SyncReport:
    """Sync one connection now with the app's providers; see `engine.sync_connection`.

    `retry` lets the run wait out throttles and faults for up to `SYNC_RETRY_SECONDS`
    (the worker's runs do; a request waiting for its answer does not).
    """
    now = now or utcnow()
    database = get_database(app)
    base_url = app.config["BASE_URL"]
    options: dict[str, Any] = {
        "full_check": full_check,
        "window_days": window_days,
        "batch_sizer": batch_sizer(app),
        "lease_ttl": lease_ttl(app),
        "on_lease": on_lease,
        "retry_for": timedelta(seconds=int(app.config["SYNC_RETRY_SECONDS"]) if retry else 0),
    }
    override: ProviderFactory | None = app.extensions.get(_PROVIDERS_KEY)
    if override is not None:
        return sync_connection(database, connection_id, override, now, base_url=base_url, **options)
    with _live_providers(app, now) as factory:
        return sync_connection(database, connection_id, factory, now, base_url=base_url, **options)
