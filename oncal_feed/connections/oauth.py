"""What each provider's OAuth module (`connections/google.py`, `connections/microsoft.py`)
offers the connect flow, the credentials and the disconnect: one shape for all of them.

`oauth_client(name)` returns the module the provider registry names for `name`.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol, Self, cast

from flask import Flask

from oncal_feed.providers.base import CalendarProvider
from oncal_feed.providers.registry import provider_info

__all__ = ["Grant", "ManagedProvider", "OAuthClient", "SaveTokens", "oauth_client"]

# Receives a refreshed token document and its expiry (None: unchanged).
SaveTokens = Callable[[dict[str, Any], datetime | None], None]


@dataclass(frozen=True)
class Grant:
    """A fresh grant from a callback, ready for the vault."""

    document: dict[str, Any]
    expires_at: datetime
    scopes: tuple[str, ...]
    account_email: str | None


class ManagedProvider(CalendarProvider, Protocol):
    """A `CalendarProvider` holding HTTP connections: close it, or use it in `with`."""

    def close(self) -> None:
        """Close the HTTP connections."""
        ...

    def __enter__(self) -> Self:
        """Use as a context manager that closes the connections."""
        ...

    def __exit__(self, *_exc: object) -> None:
        """Close the connections."""
        ...


class OAuthClient(Protocol):
    """A provider's OAuth flow and adapter factory (a module with these functions)."""

    def start(
        self, app: Flask, state: str, *, login_hint: str, use_primary: bool
    ) -> tuple[str, dict[str, Any]]:
        """Return the authorization URL and the secret to keep until the callback."""
        ...

    def exchange(
        self,
        app: Flask,
        secret: Mapping[str, Any],
        params: Mapping[str, str],
        *,
        use_primary: bool,
        now: datetime,
    ) -> Grant:
        """Redeem the callback's code; raise `OAuthError` or `UpstreamError`."""
        ...

    def build_adapter(
        self,
        app: Flask,
        document: dict[str, Any],
        save: SaveTokens,
        *,
        now: datetime,
        refresh_now: bool,
        expires_at: datetime | None,
    ) -> ManagedProvider:
        """The adapter for a decrypted token document; `save` receives refreshed ones."""
        ...

    def revoke_grant(self, app: Flask, document: Mapping[str, Any]) -> bool:
        """Revoke the grant at the provider; True when it is gone (or nothing to do)."""
        ...


def oauth_client(name: str) -> OAuthClient:
    """The OAuth module of the provider called `name` (which must be registered)."""
    info = provider_info(name)
    if info is None:
        raise KeyError(name)
    return cast(OAuthClient, importlib.import_module(info.oauth_module))
