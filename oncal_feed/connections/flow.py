"""Connecting a calendar: the OAuth flow's start (connect) and its callback.

`start_connect` signs a state, keeps the PKCE secret server-side and returns the
provider's authorization URL; `finish_connect` checks the state, redeems the code through
the provider's OAuth module (`connections.oauth`), stores the grant encrypted and makes
sure the calendar exists. One connection row per user and provider, kept for good:
reconnecting reuses the row, its calendar and its sync records.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import replace
from datetime import datetime
from typing import Any

from flask import Flask
from sqlalchemy import delete
from sqlalchemy.orm import Session, sessionmaker

from oncal_feed.calendar_creation import Target, create_owned_calendar, finish_creation
from oncal_feed.connections.credentials import build_adapter
from oncal_feed.connections.errors import OAuthError, UpstreamError
from oncal_feed.connections.oauth import Grant, oauth_client
from oncal_feed.connections.schedule_push import follow_account
from oncal_feed.connections.service import flask_app, get_connection, require_configured
from oncal_feed.connections.state import new_flow_id, save_flow, sign_state, take_flow
from oncal_feed.connections.vault import TokenVault, get_vault
from oncal_feed.db import utcnow
from oncal_feed.models import CalendarConnection, SyncRecord, User
from oncal_feed.providers.base import CALENDAR_NAME, CalendarProvider, ProviderError

__all__ = ["PRIMARY_CALENDAR_NAME", "finish_connect", "start_connect"]

log = logging.getLogger(__name__)

PRIMARY_CALENDAR_NAME = "Primary calendar"


def start_connect(
    session: Session,
    user: User,
    provider: str,
    *,
    use_primary: bool | None = None,
    now: datetime | None = None,
    app: Flask | None = None,
) -> str:
    """Begin an OAuth flow for `user`; return the provider's authorization URL. Commits.

    `use_primary=None` keeps what an existing connection uses (so "reconnect" means the
    same calendar), else the dedicated calendar.
    """
    app = flask_app(app)
    now = now or utcnow()
    require_configured(app.config, provider)
    if use_primary is None:
        existing = get_connection(session, user, provider)
        use_primary = bool(existing and existing.use_primary)
    flow_id = new_flow_id()
    state = sign_state(app.config["SECRET_KEY"], flow_id, provider)
    url, secret = oauth_client(provider).start(
        app, state, login_hint=user.email, use_primary=use_primary
    )
    save_flow(
        session, get_vault(app), user, provider, flow_id, secret, use_primary=use_primary, now=now
    )
    session.commit()
    return url


def finish_connect(
    session: Session,
    user: User,
    provider: str,
    params: Mapping[str, str],
    *,
    now: datetime | None = None,
    app: Flask | None = None,
) -> CalendarConnection:
    """Complete the flow from the callback's query `params`; return the live connection.

    Validates the state (signed, fresh, this user's, this session's, unused) before
    anything else, then refuses a denial or a missing code, exchanges the code, stores
    the grant encrypted and makes sure the calendar exists. On any refusal nothing is
    stored except that the flow is used up. Commits.
    """
    app = flask_app(app)
    now = now or utcnow()
    require_configured(app.config, provider)
    vault = get_vault(app)
    pending = take_flow(
        session, vault, app.config["SECRET_KEY"], user, provider, params.get("state"), now=now
    )
    # Single use, whatever happens next.
    session.commit()
    error = params.get("error")
    if error == "access_denied":
        raise OAuthError(
            "access_denied", "You declined access to your calendar, so nothing was connected."
        )
    if error:
        log.info("%s authorization ended with error %s", provider, error[:64])
        raise OAuthError(
            "authorization_failed",
            "The sign-in was not completed, so nothing was connected. Please try again.",
        )
    code = params.get("code")
    if not code:
        raise OAuthError(
            "missing_code", "The sign-in came back without an authorization code. Try again."
        )
    grant = oauth_client(provider).exchange(
        app, pending.secret, params, use_primary=pending.use_primary, now=now
    )
    connection = get_connection(session, user, provider)
    if connection is None:
        connection = CalendarConnection(
            user_id=user.id, provider=provider, created_at=now, updated_at=now
        )
        session.add(connection)
    previous_calendar = (connection.calendar_id, connection.use_primary)
    connection.use_primary = pending.use_primary
    _store_grant(vault, connection, grant)
    connection.account_email = grant.account_email or connection.account_email

    def save(document: dict[str, Any], expires_at: datetime | None) -> None:
        _store_grant(vault, connection, replace(grant, document=document))

    try:
        with build_adapter(app, provider, grant.document, save, now=now) as remote:
            _ensure_calendar(session, connection, remote, user, previous_calendar, now)
    except ProviderError as exc:
        session.rollback()
        log.warning("%s calendar setup failed: %s", provider, type(exc).__name__)
        raise UpstreamError(
            "calendar_setup_failed",
            "Connected, but the calendar could not be prepared "
            f"({exc}). Nothing was saved; please try again.",
        ) from None
    connection.status = "active"
    connection.last_error = None
    connection.last_error_at = None
    connection.failure_count = 0
    connection.next_retry_at = None
    connection.dirty_since = now  # the first sync, or the catch-up after a reconnect
    connection.overdue_since = None  # a wait from before a disconnection is not this one
    connection.updated_at = now
    session.flush()
    follow_account(session, connection, now)  # its schedule pushes carry on too
    session.commit()
    return connection


def _store_grant(vault: TokenVault, connection: CalendarConnection, grant: Grant) -> None:
    connection.token_ciphertext = vault.encrypt(grant.document)
    connection.token_expires_at = grant.expires_at
    connection.scopes = " ".join(grant.scopes)


def _ensure_calendar(
    session: Session,
    connection: CalendarConnection,
    remote: CalendarProvider,
    user: User,
    previous: tuple[str | None, bool],
    now: datetime,
) -> None:
    """Point the connection at a usable calendar, reusing the one it had when possible."""
    name: str | None
    if connection.use_primary:
        # Google's alias "primary"; for Graph the default calendar is addressed the same.
        calendar_id, name, owned = "primary", PRIMARY_CALENDAR_NAME, False
        if not remote.calendar_exists(calendar_id):
            raise ProviderError("the primary calendar could not be opened")
    elif (
        connection.calendar_id
        and connection.owns_calendar
        and remote.calendar_exists(connection.calendar_id)
    ):
        calendar_id, name, owned = connection.calendar_id, connection.calendar_name, True
    else:
        calendar_id = _create_owned(session, connection, remote, user, now)
        name, owned = CALENDAR_NAME, True
    if (calendar_id, connection.use_primary) != previous and previous[0] is not None:
        # Another calendar than the records describe: start its records afresh, under
        # new event ids, so nothing collides with events left in the old one.
        session.execute(delete(SyncRecord).where(SyncRecord.connection_id == connection.id))
        connection.id_generation += 1
    connection.calendar_id = calendar_id
    connection.calendar_name = name
    connection.owns_calendar = owned


def _create_owned(
    session: Session,
    connection: CalendarConnection,
    remote: CalendarProvider,
    user: User,
    now: datetime,
) -> str:
    """Create the app's calendar, its intent committed apart and cleared with `session`.

    The intent goes in a transaction of its own (the flow's session must save nothing
    when the setup fails); it is deleted in `session`, so it disappears exactly when the
    connection with the new id is committed.
    """
    bind = session.get_bind()
    factory = sessionmaker(bind, expire_on_commit=False)
    target = Target(user.id, connection.provider, CALENDAR_NAME)
    with session.no_autoflush:
        creation = create_owned_calendar(factory, remote, target, time_zone=user.time_zone, now=now)
    finish_creation(session, creation)
    return creation.calendar_id
