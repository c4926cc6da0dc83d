"""Microsoft identity platform for Outlook calendars: auth code flow, refresh, token cache.

Built on msal's `ConfidentialClientApplication` (`initiate_auth_code_flow` /
`acquire_token_by_auth_code_flow`, with PKCE and nonce handled by msal). We ask for
`Calendars.ReadWrite`; msal adds `openid profile offline_access` by itself. Each
connection keeps its own msal token cache, serialized and encrypted in the vault; msal
refreshes from it (and rotates the refresh token) in `acquire_token_silent`.

Microsoft has no token revocation endpoint for this flow: disconnecting drops the cache.

Tests and demos route msal to the fake server through `MSAL_CLIENT_OPTIONS` in the app
config (a dict of extra `ConfidentialClientApplication` arguments, e.g.
`instance_discovery`, `validate_authority` and `http_client`), never through globals.
"""

from __future__ import annotations

import logging
import warnings
from collections.abc import Callable, Mapping, MutableMapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

import msal
import requests
from flask import Flask

from oncal_feed.connections.errors import OAuthError, UpstreamError
from oncal_feed.connections.oauth import Grant, SaveTokens
from oncal_feed.connections.transport import allow_loopback_http
from oncal_feed.db import utcnow
from oncal_feed.providers.base import AuthorizationLost, PermanentError, TransientError
from oncal_feed.providers.graph import GraphCalendarProvider

__all__ = [
    "SCOPES",
    "MicrosoftAccount",
    "MicrosoftSettings",
    "TokenSource",
    "authorization_url",
    "exchange_code",
]

log = logging.getLogger(__name__)

SCOPES = ["Calendars.ReadWrite"]
# Errors after which only a new interactive sign-in helps.
_REAUTH_ERRORS = frozenset(
    {"invalid_grant", "interaction_required", "consent_required", "login_required"}
)
_TRANSIENT_ERRORS = frozenset({"temporarily_unavailable", "server_error", "slow_down"})


@dataclass(frozen=True)
class MicrosoftSettings:
    """The application registration and endpoints, read from the app's settings."""

    client_id: str
    client_secret: str = field(repr=False)
    authority: str
    graph_endpoint: str
    redirect_uri: str
    timeout: float
    msal_options: Mapping[str, Any] = field(default_factory=dict, repr=False)
    http_cache: MutableMapping[str, Any] | None = field(default=None, repr=False)

    @classmethod
    def from_config(
        cls, config: Mapping[str, Any], http_cache: MutableMapping[str, Any] | None = None
    ) -> MicrosoftSettings:
        """Build from app settings (`MICROSOFT_*`, `GRAPH_ENDPOINT`, `MSAL_CLIENT_OPTIONS`).

        `http_cache` lets msal keep the authority's metadata between applications, so
        each sync doesn't fetch the OpenID configuration again.
        """
        host = str(config["MICROSOFT_AUTHORITY_HOST"]).rstrip("/")
        settings = cls(
            client_id=config["MICROSOFT_CLIENT_ID"],
            client_secret=config["MICROSOFT_CLIENT_SECRET"],
            authority=f"{host}/{config['MICROSOFT_TENANT_ID']}",
            graph_endpoint=str(config["GRAPH_ENDPOINT"]).rstrip("/"),
            redirect_uri=f"{config['BASE_URL']}/api/calendar/microsoft/callback",
            timeout=float(config.get("PROVIDER_TIMEOUT") or 30),
            msal_options=dict(config.get("MSAL_CLIENT_OPTIONS") or {}),
            http_cache=http_cache,
        )
        # msal itself insists on an https authority; Graph calls go through requests.
        allow_loopback_http(config, [settings.graph_endpoint])
        return settings

    def client(self, cache: msal.TokenCache | None = None) -> msal.ConfidentialClientApplication:
        """A msal application over `cache` (raises `TransientError` if discovery fails)."""
        options: dict[str, Any] = {"timeout": self.timeout}
        if self.http_cache is not None:
            options["http_cache"] = self.http_cache
        options.update(self.msal_options)
        try:
            return msal.ConfidentialClientApplication(
                self.client_id,
                client_credential=self.client_secret,
                authority=self.authority,
                token_cache=cache,
                **options,
            )
        except (requests.RequestException, ValueError) as exc:
            # msal fetches the authority's metadata while constructing.
            log.warning("microsoft authority unusable: %s", type(exc).__name__)
            raise TransientError("Microsoft's sign-in service could not be reached") from None


@dataclass(frozen=True)
class MicrosoftAccount:
    """A fresh grant: the serialized msal cache plus what we show about the account."""

    cache: str = field(repr=False)
    home_account_id: str
    username: str | None
    expires_at: datetime
    scopes: tuple[str, ...]

    def to_dict(self) -> dict[str, Any]:
        """The vault document."""
        return {
            "kind": "microsoft",
            "cache": self.cache,
            "home_account_id": self.home_account_id,
            "username": self.username,
            "scopes": list(self.scopes),
        }


def authorization_url(
    settings: MicrosoftSettings, state: str, *, login_hint: str | None = None
) -> tuple[str, dict[str, Any]]:
    """Return `(url, flow)`: where to send the user, and msal's flow dict to keep secret.

    The flow dict holds the PKCE verifier and the nonce; it is stored server-side only.
    """
    try:
        app = settings.client()
    except TransientError:
        raise UpstreamError(
            "provider_unavailable", "Microsoft could not be reached. Please try again shortly."
        ) from None
    with warnings.catch_warnings():
        # msal recommends response_mode=form_post, but that answer is a cross-site POST,
        # which browsers send without our SameSite=Lax session cookie, so the state could
        # not be tied to the session. The code in the query is useless without our client
        # secret and the PKCE verifier, which never leave the server.
        warnings.filterwarnings("ignore", message=".*form_post.*", category=UserWarning)
        flow: dict[str, Any] = app.initiate_auth_code_flow(
            SCOPES,
            redirect_uri=settings.redirect_uri,
            state=state,
            login_hint=login_hint,
            prompt="select_account",
        )
    return str(flow["auth_uri"]), flow


def exchange_code(
    settings: MicrosoftSettings,
    flow: Mapping[str, Any],
    params: Mapping[str, str],
    *,
    now: datetime,
) -> MicrosoftAccount:
    """Redeem the callback's code with msal (which checks state, PKCE and nonce)."""
    cache = msal.SerializableTokenCache()
    try:
        app = settings.client(cache)
    except TransientError:
        raise UpstreamError(
            "provider_unavailable", "Microsoft could not be reached. Please try again shortly."
        ) from None
    try:
        result = app.acquire_token_by_auth_code_flow(dict(flow), dict(params), scopes=SCOPES)
    except ValueError:
        # msal's own state / nonce checks; our signed state was already verified.
        raise OAuthError(
            "invalid_state", "The sign-in could not be verified. Start connecting again."
        ) from None
    except requests.RequestException as exc:
        log.warning("microsoft token endpoint unreachable: %s", type(exc).__name__)
        raise UpstreamError(
            "provider_unavailable", "Microsoft could not be reached. Please try again shortly."
        ) from None
    if "error" in result:
        error = str(result.get("error"))
        log.warning("microsoft code exchange refused: %s", error[:64])
        if error == "invalid_grant":
            raise OAuthError(
                "code_rejected",
                "Microsoft did not accept the sign-in (it expired or was already used). "
                "Please connect again.",
            )
        raise OAuthError(
            "exchange_failed", "Microsoft refused to complete the sign-in. Please connect again."
        )
    granted = tuple(str(result.get("scope") or "").split())
    if not any(scope.endswith("Calendars.ReadWrite") for scope in granted):
        raise OAuthError(
            "scope_not_granted",
            "Calendar access was not granted. Connect again and accept the permissions.",
        )
    claims = result.get("id_token_claims") or {}
    username = claims.get("preferred_username") or claims.get("email")
    accounts = app.get_accounts()
    if not accounts or "refresh_token" not in result:
        raise OAuthError(
            "no_refresh_token",
            "Microsoft did not grant offline access. Please connect again.",
        )
    return MicrosoftAccount(
        cache=cache.serialize(),
        home_account_id=str(accounts[0]["home_account_id"]),
        username=str(username) if username else None,
        expires_at=now + timedelta(seconds=int(result.get("expires_in") or 3600)),
        scopes=granted,
    )


class TokenSource:
    """Access tokens for one connection, refreshed by msal from its encrypted cache.

    `on_change(document, expires_at)` receives the new vault document whenever msal
    changed the cache (a refresh, which also rotates the refresh token).
    """

    def __init__(
        self,
        settings: MicrosoftSettings,
        document: Mapping[str, Any],
        on_change: Callable[[dict[str, Any], datetime | None], None],
    ) -> None:
        self._settings = settings
        self._document = dict(document)
        self._on_change = on_change
        self._cache = msal.SerializableTokenCache()
        self._cache.deserialize(str(document.get("cache") or "{}"))
        self._app: msal.ConfidentialClientApplication | None = None

    def access_token(self, *, force_refresh: bool = False, now: datetime | None = None) -> str:
        """Return a valid access token; `AuthorizationLost` when the grant is gone."""
        now = now or utcnow()
        if self._app is None:
            self._app = self._settings.client(self._cache)
        accounts = [
            account
            for account in self._app.get_accounts()
            if account.get("home_account_id") == self._document.get("home_account_id")
        ]
        if not accounts:
            raise AuthorizationLost("no Microsoft account is stored; reconnect the calendar")
        try:
            result = self._app.acquire_token_silent_with_error(
                SCOPES, accounts[0], force_refresh=force_refresh
            )
        except requests.RequestException:
            raise TransientError("Microsoft's token service could not be reached") from None
        if self._cache.has_state_changed:
            self._document["cache"] = self._cache.serialize()
            expires_in = (result or {}).get("expires_in")
            expires_at = now + timedelta(seconds=int(expires_in)) if expires_in else None
            self._on_change(dict(self._document), expires_at)
            self._cache.has_state_changed = False
        if result is None:
            raise AuthorizationLost(
                "Microsoft holds no usable sign-in for this connection; reconnect the calendar"
            )
        if "access_token" in result:
            return str(result["access_token"])
        error = str(result.get("error") or "")
        if error in _REAUTH_ERRORS:
            raise AuthorizationLost(
                "Microsoft no longer accepts this connection (access was revoked or has "
                "expired); reconnect the calendar."
            )
        if error in _TRANSIENT_ERRORS:
            raise TransientError("Microsoft's token service failed; will retry")
        if error == "invalid_client":
            raise PermanentError("Microsoft rejected the server's application credentials")
        raise PermanentError(f"Microsoft refused to refresh access ({error or 'unknown error'})")


# ------------------------------------------------------ as a `connections.oauth.OAuthClient`


def _settings(app: Flask) -> MicrosoftSettings:
    # msal keeps the authority's metadata in this cache, one per app, between clients.
    cache = app.extensions.setdefault("oncal_msal_http_cache", {})
    return MicrosoftSettings.from_config(app.config, http_cache=cache)


def start(
    app: Flask, state: str, *, login_hint: str, use_primary: bool
) -> tuple[str, dict[str, Any]]:
    """The authorization URL, and msal's flow dict to keep until the callback.

    Graph's scope is the same for the primary and a dedicated calendar.
    """
    url, flow = authorization_url(_settings(app), state, login_hint=login_hint)
    return url, {"flow": flow}


def exchange(
    app: Flask,
    secret: Mapping[str, Any],
    params: Mapping[str, str],
    *,
    use_primary: bool,
    now: datetime,
) -> Grant:
    """Redeem the callback's code with the kept flow dict."""
    account = exchange_code(_settings(app), secret.get("flow") or {}, params, now=now)
    return Grant(account.to_dict(), account.expires_at, account.scopes, account.username)


def build_adapter(
    app: Flask,
    document: dict[str, Any],
    save: SaveTokens,
    *,
    now: datetime,
    refresh_now: bool,
    expires_at: datetime | None,
) -> GraphCalendarProvider:
    """The Graph adapter for a token document (msal's cache), refreshed first when `refresh_now`.

    msal refreshes when fewer than five minutes are left, like Google's `REFRESH_MARGIN`,
    and keeps the expiry in its cache, so `expires_at` is not needed.
    """
    ms = _settings(app)
    source = TokenSource(ms, document, on_change=save)
    if refresh_now:
        source.access_token(now=now)
    return GraphCalendarProvider(
        source.access_token, graph_endpoint=ms.graph_endpoint, timeout=ms.timeout
    )


def revoke_grant(app: Flask, document: Mapping[str, Any]) -> bool:
    """Microsoft has no revocation endpoint for this flow: dropping the tokens is all."""
    return True
