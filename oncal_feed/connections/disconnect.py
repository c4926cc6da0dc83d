"""Disconnecting a calendar: optionally remove our events, then revoke the grant."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from flask import Flask
from sqlalchemy import delete, select
from sqlalchemy.orm import Session

from oncal_feed.connections.credentials import provider_for
from oncal_feed.connections.errors import OAuthError, UpstreamError
from oncal_feed.connections.oauth import oauth_client
from oncal_feed.connections.schedule_push import follow_account, list_pushes
from oncal_feed.connections.service import check_provider, flask_app, get_connection
from oncal_feed.connections.vault import TokenVault, VaultError, get_vault
from oncal_feed.db import utcnow
from oncal_feed.models import CalendarConnection, SyncRecord, User, mark_needs_reauth
from oncal_feed.providers.base import AuthorizationLost, CalendarProvider, Operation, ProviderError
from oncal_feed.providers.registry import provider_info

__all__ = ["DisconnectResult", "disconnect"]


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
    later connect continues where this one stopped; so do its schedule pushes, which stop
    with it. With `remove_events` the dedicated calendar (and each schedule push's) is
    deleted (or, in the primary calendar, each event we wrote), and the
    records go with it; that needs a working grant, so it raises `OAuthError` when the
    grant is already gone.
    """
    app = flask_app(app)
    now = now or utcnow()
    check_provider(provider)
    connection = get_connection(session, user, provider)
    if connection is None:
        # Nothing to undo: disconnecting is idempotent.
        return DisconnectResult(revoked=True, events_removed=False)
    events_removed = False
    pushes = [push for push, _ in list_pushes(session, connection)]
    if remove_events and connection.token_ciphertext:
        try:
            with provider_for(connection, now=now, app=app) as remote:
                for calendar in (connection, *pushes):
                    if calendar.calendar_id:
                        _remove_events(session, calendar, remote)
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
    session.flush()
    follow_account(session, connection, now)  # its schedule pushes stop with it
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
        ids = {
            remote_id
            for remote_id in session.scalars(
                select(SyncRecord.remote_id).where(SyncRecord.connection_id == connection.id)
            )
            if remote_id is not None
        }
        ids |= {event.remote_id for event in remote.list_events(calendar_id)}
        operations = [Operation("delete", remote_id=remote_id) for remote_id in sorted(ids)]
        for start in range(0, len(operations), remote.max_batch):
            for result in remote.apply(calendar_id, operations[start : start + remote.max_batch]):
                if result.error is not None:
                    raise result.error
    session.execute(delete(SyncRecord).where(SyncRecord.connection_id == connection.id))
    connection.id_generation += 1


def _revoke(app: Flask, connection: CalendarConnection, vault: TokenVault) -> bool:
    """Revoke the grant where the provider can (Google); elsewhere dropping it is all."""
    if not connection.token_ciphertext:
        return True
    info = provider_info(connection.provider)
    if info is None or not info.revocable:
        return True
    try:
        document = vault.decrypt(connection.token_ciphertext)
    except VaultError:
        return False
    return oauth_client(connection.provider).revoke_grant(app, document)
