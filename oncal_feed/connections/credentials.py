"""Credentials: the adapter for a connection, built from its encrypted grant.

`provider_for(connection)` decrypts the stored tokens, refreshes them when they are about
to expire, and returns the provider's adapter; tokens refreshed then (or later, by the
client libraries mid-sync) are written back, encrypted, onto the connection.
"""

from __future__ import annotations

import logging
from datetime import datetime
from typing import Any

from flask import Flask

from oncal_feed.connections.oauth import ManagedProvider, SaveTokens, oauth_client
from oncal_feed.connections.service import flask_app
from oncal_feed.connections.vault import VaultError, get_vault
from oncal_feed.db import utcnow
from oncal_feed.models import CalendarConnection
from oncal_feed.providers.base import AuthorizationLost, TransientError
from oncal_feed.providers.registry import provider_info

__all__ = ["build_adapter", "provider_for"]

log = logging.getLogger(__name__)


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
    app = flask_app(app)
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

    return build_adapter(
        app,
        connection.provider,
        document,
        save,
        now=now,
        refresh_now=True,
        expires_at=connection.token_expires_at,
    )


def build_adapter(
    app: Flask,
    provider: str,
    document: dict[str, Any],
    save: SaveTokens,
    *,
    now: datetime,
    refresh_now: bool = False,
    expires_at: datetime | None = None,
) -> ManagedProvider:
    """The adapter for a decrypted token document; `save` receives refreshed documents.

    `refresh_now` refreshes an access token that expires within five minutes first.
    `expires_at` (the connection's `token_expires_at` column) wins over the expiry in
    the document, so an operator or the sync engine can force a refresh by moving it.
    """
    if provider_info(provider) is None:
        raise AuthorizationLost(f"unknown calendar provider {provider!r}")
    return oauth_client(provider).build_adapter(
        app, document, save, now=now, refresh_now=refresh_now, expires_at=expires_at
    )
