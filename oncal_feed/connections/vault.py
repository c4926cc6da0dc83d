"""The token vault: OAuth secrets encrypted at rest with Fernet, keys rotatable.

`TOKEN_ENCRYPTION_KEYS` is a list, newest first. `MultiFernet` encrypts with the first
key and decrypts with any, so adding a new key in front keeps old ciphertext readable
until `rotate_all` (CLI `oncal-feed rotate-token-key`) rewrites it under the new key;
after that the old key can be dropped.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from cryptography.fernet import Fernet, InvalidToken, MultiFernet
from flask import Flask, current_app
from sqlalchemy import select
from sqlalchemy.orm import Session

from oncal_feed.errors import OncalError
from oncal_feed.models import CalendarConnection, OAuthFlow

__all__ = ["RotationResult", "TokenVault", "VaultError", "get_vault", "rotate_all"]

_EXTENSION = "oncal_token_vault"


class VaultError(OncalError):
    """Stored ciphertext can't be read with the configured keys (or isn't ours)."""


class TokenVault:
    """Encrypts and decrypts small JSON documents (token sets, pending OAuth flows)."""

    def __init__(self, keys: Sequence[str]) -> None:
        if not keys:
            raise ValueError("at least one Fernet key is needed")
        self._fernet = MultiFernet([Fernet(key) for key in keys])

    def encrypt(self, data: Mapping[str, Any]) -> str:
        """Return the ciphertext (URL-safe text) of `data` serialized as JSON."""
        plain = json.dumps(dict(data), separators=(",", ":"), sort_keys=True).encode()
        return self._fernet.encrypt(plain).decode("ascii")

    def decrypt(self, ciphertext: str) -> dict[str, Any]:
        """Return the document inside `ciphertext`; raise `VaultError` if it can't be read."""
        try:
            plain = self._fernet.decrypt(ciphertext.encode("ascii"))
            data = json.loads(plain)
        except (InvalidToken, UnicodeError, ValueError):
            # No detail on purpose: nothing about the ciphertext or keys belongs in a message.
            raise VaultError(
                "stored credentials can't be decrypted with the current keys"
            ) from None
        if not isinstance(data, dict):
            raise VaultError("stored credentials are not in the expected form")
        return data

    def rotate(self, ciphertext: str) -> str:
        """Re-encrypt `ciphertext` under the newest key (raise `VaultError` if unreadable)."""
        try:
            return self._fernet.rotate(ciphertext.encode("ascii")).decode("ascii")
        except (InvalidToken, UnicodeError):
            raise VaultError(
                "stored credentials can't be decrypted with the current keys"
            ) from None


def get_vault(app: Flask | None = None) -> TokenVault:
    """Return the app's vault, built once from `TOKEN_ENCRYPTION_KEYS`."""
    app = app or current_app
    vault = app.extensions.get(_EXTENSION)
    if vault is None:
        vault = app.extensions[_EXTENSION] = TokenVault(app.config["TOKEN_ENCRYPTION_KEYS"])
    assert isinstance(vault, TokenVault)
    return vault


@dataclass(frozen=True)
class RotationResult:
    """What `rotate_all` did: rows rewritten, and rows no configured key could read."""

    rotated: int
    unreadable: int
    # Connections whose tokens no configured key could read: lost with a key.
    lost_connections: tuple[CalendarConnection, ...] = ()


def rotate_all(session: Session, vault: TokenVault) -> RotationResult:
    """Re-encrypt every stored token set and pending flow under the vault's newest key.

    Rows no key can read are left as they are and counted, and their connections listed
    (see `RotationResult`); the caller commits.
    """
    rotated = unreadable = 0
    lost = []
    connections = session.scalars(
        select(CalendarConnection)
        .where(CalendarConnection.token_ciphertext.is_not(None))
        .order_by(CalendarConnection.id)
        .with_for_update()
    )
    for connection in connections:
        assert connection.token_ciphertext is not None
        try:
            connection.token_ciphertext = vault.rotate(connection.token_ciphertext)
            rotated += 1
        except VaultError:
            unreadable += 1
            lost.append(connection)
    for flow in session.scalars(select(OAuthFlow).order_by(OAuthFlow.id).with_for_update()):
        try:
            flow.secret_ciphertext = vault.rotate(flow.secret_ciphertext)
            rotated += 1
        except VaultError:
            # A pending flow is worth nothing without its secret: drop it.
            session.delete(flow)
            unreadable += 1
    session.flush()
    return RotationResult(rotated, unreadable, tuple(lost))
