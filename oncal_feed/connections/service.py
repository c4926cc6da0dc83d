"""Calendar connections: connect, callback, disconnect, listing, and live providers.

The views call one function each; the sync engine calls `provider_for(connection)` and,
when that (or any call on the provider) raises `AuthorizationLost`,
`models.mark_needs_reauth(connection, error, now)`.

One connection row per user and provider, kept for good: reconnecting after a revoked
grant (or a plain disconnect) reuses the row, its calendar and its sync records, so the
remote calendar gets no second calendar and no duplicate events.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from typing import Any

from flask import Flask, current_app
from sqlalchemy import delete, select
from sqlalchemy.orm import Session

from oncal_feed.connections import google, microsoft
from oncal_feed.connections.errors import (
    OAuthError,
    ProviderNotConfigured,
    UpstreamError,
)
from oncal_feed.connections.state import new_flow_id, save_flow, sign_state, take_flow
from oncal_feed.connections.vault import TokenVault, VaultError, get_vault
from oncal_feed.db import instant_json, utcnow
from oncal_feed.errors import NotFound
from oncal_feed.models import CalendarConnection, SyncRecord, User, mark_needs_reauth
from oncal_feed.providers.base import (
    CALENDAR_NAME,
    AuthorizationLost,
    CalendarProvider,
    Operation,
    ProviderError,
    TransientError,
)
from oncal_feed.providers.google import GoogleCalendarProvider
from oncal_feed.providers.graph import GraphCalendarProvider

# What `provider_for` returns: a `CalendarProvider` that is also a context manager.
ManagedProvider = GoogleCalendarProvider | GraphCalendarProvider

__all__ = [
    "PROVIDERS",
    "DisconnectResult",
    "configured_providers",
    "connection_summary",
    "disconnect",
    "finish_connect",
    "get_connection",
    "list_connections",
    "provider_for",
    "start_connect",
]

log = logging.getLogger(__name__)

PROVIDERS = ("google", "microsoft")
PRIMARY_CALENDAR_NAME = "Primary calendar"
# Refresh this long before the access token expires, so a sync never starts with a
# token that dies halfway through.
REFRESH_MARGIN = timedelta(minutes=5)


def _app(app: Flask | None) -> Flask:
    return app or current_app._get_current_object()  # type: ignore[attr-defined]


def _microsoft_settings(app: Flask) -> microsoft.MicrosoftSettings:
    cache = app.extensions.setdefault("oncal_msal_http_cache", {})
    return microsoft.MicrosoftSettings.from_config(app.config, http_cache=cache)


def _check_provider(provider: str) -> None:
    if provider not in PROVIDERS:
        raise NotFound("calendar provider", provider)


def configured_providers(config: Mapping[str, Any]) -> dict[str, bool]:
    """Which providers have an OAuth client configured: `{"google": bool, "microsoft": bool}`."""
    return {
        "google": bool(config.get("GOOGLE_CONFIGURED")),
        "microsoft": bool(config.get("MICROSOFT_CONFIGURED")),
    }


def _require_configured(config: Mapping[str, Any], provider: str) -> None:
    _check_provider(provider)
    if not configured_providers(config)[provider]:
        raise ProviderNotConfigured(provider)


def get_connection(session: Session, user: User, provider: str) -> CalendarConnection | None:
    """Return the user's connection to `provider` (in any status), or None."""
    return session.scalar(
        select(CalendarConnection).where(
            CalendarConnection.user_id == user.id, CalendarConnection.provider == provider
        )
    )


# ------------------------------------------------------------------ connect


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
    app = _app(app)
    now = now or utcnow()
    _require_configured(app.config, provider)
    if use_primary is None:
        existing = get_connection(session, user, provider)
        use_primary = bool(existing and existing.use_primary)
    flow_id = new_flow_id()
    state = sign_state(app.config["SECRET_KEY"], flow_id, provider)
    if provider == "google":
        settings = google.GoogleSettings.from_config(app.config)
        url, verifier = google.authorization_url(settings, state, use_primary=use_primary)
        secret: dict[str, Any] = {"code_verifier": verifier}
    else:
        ms = _microsoft_settings(app)
        url, flow = microsoft.authorization_url(ms, state, login_hint=user.email)
        secret = {"flow": flow}
    save_flow(
        session, get_vault(app), user, provider, flow_id, secret, use_primary=use_primary, now=now
    )
    session.commit()
    return url


@dataclass(frozen=True)
class _Grant:
    """A fresh grant from a callback, ready for the vault."""

    document: dict[str, Any]
    expires_at: datetime
    scopes: tuple[str, ...]
    account_email: str | None


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
    app = _app(app)
    now = now or utcnow()
    _require_configured(app.config, provider)
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
    grant = _exchange(app, provider, pending.secret, params, pending.use_primary, now)
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
        with _build_provider(app, provider, grant.document, save, now=now, refresh=False) as remote:
            _ensure_calendar(session, connection, remote, user, previous_calendar)
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
    session.commit()
    return connection


def _exchange(
    app: Flask,
    provider: str,
    secret: Mapping[str, Any],
    params: Mapping[str, str],
    use_primary: bool,
    now: datetime,
) -> _Grant:
    if provider == "google":
        settings = google.GoogleSettings.from_config(app.config)
        tokens = google.exchange_code(
            settings,
            params["code"],
            str(secret.get("code_verifier") or ""),
            use_primary=use_primary,
            now=now,
        )
        return _Grant(tokens.to_dict(), tokens.expires_at, tokens.scopes, None)
    ms = _microsoft_settings(app)
    account = microsoft.exchange_code(ms, secret.get("flow") or {}, params, now=now)
    return _Grant(account.to_dict(), account.expires_at, account.scopes, account.username)


def _store_grant(vault: TokenVault, connection: CalendarConnection, grant: _Grant) -> None:
    connection.token_ciphertext = vault.encrypt(grant.document)
    connection.token_expires_at = grant.expires_at
    connection.scopes = " ".join(grant.scopes)


def _ensure_calendar(
    session: Session,
    connection: CalendarConnection,
    remote: CalendarProvider,
    user: User,
    previous: tuple[str | None, bool],
) -> None:
    """Point the connection at a usable calendar, reusing the one it had when possible."""
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
        calendar_id = remote.create_calendar(CALENDAR_NAME, user.time_zone)
        name, owned = CALENDAR_NAME, True
    if (calendar_id, connection.use_primary) != previous and previous[0] is not None:
        # Another calendar than the records describe: start its records afresh, under
        # new event ids, so nothing collides with events left in the old one.
        session.execute(delete(SyncRecord).where(SyncRecord.connection_id == connection.id))
        connection.id_generation += 1
    connection.calendar_id = calendar_id
    connection.calendar_name = name
    connection.owns_calendar = owned


# --------------------------------------------------------------- providers


def provider_for(
    connection: CalendarConnection,
    *,
    now: datetime | None = None,
    app: Flask | None = None,
) -> ManagedProvider:
    """Return a `CalendarProvider` for the connection, with fresh credentials.

    The access token is refreshed when it expires within five minutes; refreshed tokens
    (including ones the client libraries refresh later, mid-sync) are written back,
    encrypted, onto `connection`, and the caller's commit stores them. The provider is a
    context manager: use `with provider_for(c) as remote:` so its HTTP connections close.

    Raises `AuthorizationLost` when the grant is gone (revoked, expired, `invalid_grant`,
    disconnected): call `mark_needs_reauth` then. Raises `TransientError` when the token
    service can't be reached, or this process's keys can't decrypt the stored secrets.
    """
    app = _app(app)
    now = now or utcnow()
    if connection.status == "disconnected" or not connection.token_ciphertext:
        raise AuthorizationLost("the calendar is not connected")
    vault = get_vault(app)
    try:
        document = vault.decrypt(connection.token_ciphertext)
    except VaultError:
        # This process lacks the key the tokens were written with: a deployment mistake
        # (a machine that missed a key rotation), not the user's doing. Retrying keeps
        # every connection intact until the keys are fixed; asking each user to reconnect
        # could not be undone. Keys that are truly lost: `rotate-token-key` says so.
        log.error(
            "connection %s: stored credentials can't be decrypted with TOKEN_ENCRYPTION_KEYS; "
            "every process needs every key in use",
            connection.id,
        )
        raise TransientError(
            "oncal-feed can't read this calendar's stored credentials at the moment; "
            "it will try again"
        ) from None

    def save(new_document: dict[str, Any], expires_at: datetime | None) -> None:
        connection.token_ciphertext = vault.encrypt(new_document)
        if expires_at is not None:
            connection.token_expires_at = expires_at

    return _build_provider(
        app,
        connection.provider,
        document,
        save,
        now=now,
        refresh=True,
        expires_at=connection.token_expires_at,
    )


def _build_provider(
    app: Flask,
    provider: str,
    document: dict[str, Any],
    save: Callable[[dict[str, Any], datetime | None], None],
    *,
    now: datetime,
    refresh: bool,
    expires_at: datetime | None = None,
) -> ManagedProvider:
    """The adapter for a decrypted token document; `save` receives refreshed documents.

    `expires_at` (the connection's `token_expires_at` column) wins over the expiry in
    the document, so an operator or the sync engine can force a refresh by moving it.
    """
    if provider == "google":
        settings = google.GoogleSettings.from_config(app.config)
        tokens = google.GoogleTokens.from_dict(document)
        if expires_at is not None:
            tokens = replace(tokens, expires_at=expires_at)
        if refresh and tokens.expires_at - now < REFRESH_MARGIN:
            tokens = google.refresh(settings, tokens)
            save(tokens.to_dict(), tokens.expires_at)
        credentials = google.build_credentials(
            settings, tokens, on_refresh=lambda t: save(t.to_dict(), t.expires_at)
        )
        return GoogleCalendarProvider(
            credentials,
            api_endpoint=settings.api_endpoint,
            batch_uri=settings.batch_uri,
            timeout=settings.timeout,
        )
    if provider == "microsoft":
        ms = _microsoft_settings(app)
        source = microsoft.TokenSource(ms, document, on_change=save)
        if refresh:
            # msal refreshes when fewer than five minutes are left, like REFRESH_MARGIN.
            source.access_token(now=now)
        return GraphCalendarProvider(
            source.access_token, graph_endpoint=ms.graph_endpoint, timeout=ms.timeout
        )
    raise AuthorizationLost(f"unknown calendar provider {provider!r}")


# -------------------------------------------------------------- disconnect


@dataclass(frozen=True)
class DisconnectResult:
    """What a disconnect did."""

    revoked: bool
    events_removed: bool


def disconnect(
    session: Session,
    user: User,
    provider: str,
    *,
    remove_events: bool = False,
    now: datetime | None = None,
    app: Flask | None = None,
) -> DisconnectResult:
    """Disconnect: optionally delete our events and calendar, then revoke the grant. Commits.

    The row stays (status `disconnected`, no tokens) with its calendar and records, so a
    later connect continues where this one stopped. With `remove_events` the dedicated
    calendar is deleted (or, in the primary calendar, each event we wrote), and the
    records go with it; that needs a working grant, so it raises `OAuthError` when the
    grant is already gone.
    """
    app = _app(app)
    now = now or utcnow()
    _check_provider(provider)
    connection = get_connection(session, user, provider)
    if connection is None:
        # Nothing to undo: disconnecting is idempotent.
        return DisconnectResult(revoked=True, events_removed=False)
    events_removed = False
    if remove_events and connection.calendar_id and connection.token_ciphertext:
        try:
            with provider_for(connection, now=now, app=app) as remote:
                _remove_events(session, connection, remote)
        except AuthorizationLost:
            mark_needs_reauth(connection, None, now)
            session.commit()
            raise OAuthError(
                "reconnect_to_remove",
                "Access to this calendar was lost, so its events can't be removed. "
                "Reconnect and try again, or disconnect without removing events.",
                status=409,
            ) from None
        except ProviderError as exc:
            session.rollback()
            raise UpstreamError(
                "provider_unavailable",
                f"The events could not be removed ({exc}). Nothing was changed; try again.",
            ) from None
        events_removed = True
    revoked = _revoke(app, connection, get_vault(app))
    connection.status = "disconnected"
    connection.token_ciphertext = None
    connection.token_expires_at = None
    connection.dirty_since = None
    connection.next_retry_at = None
    connection.lease_owner = None
    connection.lease_expires_at = None
    connection.updated_at = now
    session.commit()
    return DisconnectResult(revoked=revoked, events_removed=events_removed)


def _remove_events(
    session: Session, connection: CalendarConnection, remote: CalendarProvider
) -> None:
    calendar_id = connection.calendar_id
    assert calendar_id is not None
    if connection.owns_calendar:
        remote.delete_calendar(calendar_id)
        connection.calendar_id = None
        connection.calendar_name = None
    else:
        # Our events in someone's primary calendar: every one we recorded, plus any the
        # records lost track of (found by our tag).
        ids = set(
            session.scalars(
                select(SyncRecord.remote_id).where(
                    SyncRecord.connection_id == connection.id, SyncRecord.remote_id.is_not(None)
                )
            )
        )
        ids |= {event.remote_id for event in remote.list_events(calendar_id)}
        operations = [Operation("delete", remote_id=remote_id) for remote_id in sorted(ids)]
        for start in range(0, len(operations), remote.max_batch):
            for result in remote.apply(calendar_id, operations[start : start + remote.max_batch]):
                if result.error is not None:
                    raise result.error
    session.execute(delete(SyncRecord).where(SyncRecord.connection_id == connection.id))
    connection.id_generation += 1


def _revoke(app: Flask, connection: CalendarConnection, vault: TokenVault) -> bool:
    """Revoke at Google; for Microsoft (no revocation endpoint) dropping the cache is all."""
    if not connection.token_ciphertext:
        return True
    if connection.provider != "google":
        return True
    try:
        document = vault.decrypt(connection.token_ciphertext)
    except VaultError:
        return False
    return _revoke_google(app, document)


def _revoke_google(app: Flask, document: Mapping[str, Any]) -> bool:
    settings = google.GoogleSettings.from_config(app.config)
    return google.revoke(settings, google.GoogleTokens.from_dict(document))


# ----------------------------------------------------------------- listing


def list_connections(session: Session, user: User) -> list[CalendarConnection]:
    """The user's connections that are not disconnected, Google first."""
    rows = session.scalars(
        select(CalendarConnection)
        .where(CalendarConnection.user_id == user.id, CalendarConnection.status != "disconnected")
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
