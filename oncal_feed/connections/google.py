"""Google OAuth 2.0 for Calendar: authorization URL, code exchange, refresh, revocation.

Built on google-auth-oauthlib's `Flow` (authorization code with PKCE, offline access) and
google-auth's `Credentials` (refresh). Least privilege by default: the scope
`calendar.app.created` only lets the app touch calendars it created, so shifts go into a
dedicated "On-call shifts" calendar. Writing into the primary calendar instead asks for
`calendar.events`.

No function here lets a token reach a log line or an exception message: library errors
are caught and replaced by our own words.
"""

from __future__ import annotations

import logging
import secrets
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from typing import Any

import google.auth.exceptions
import google.auth.transport.requests
import requests
from flask import Flask
from google.oauth2.credentials import Credentials
from google_auth_oauthlib.flow import Flow
from oauthlib.oauth2.rfc6749.errors import InvalidGrantError, OAuth2Error

from oncal_feed.connections.errors import OAuthError, UpstreamError
from oncal_feed.connections.oauth import Grant, SaveTokens
from oncal_feed.connections.transport import allow_loopback_http
from oncal_feed.providers.base import TransientError
from oncal_feed.providers.google import GoogleCalendarProvider, refresh_error

__all__ = [
    "SCOPE_APP_CREATED",
    "SCOPE_EVENTS",
    "GoogleSettings",
    "GoogleTokens",
    "authorization_url",
    "build_credentials",
    "exchange_code",
    "refresh",
    "revoke",
    "scopes_for",
]

log = logging.getLogger(__name__)

SCOPE_APP_CREATED = "https://www.googleapis.com/auth/calendar.app.created"
SCOPE_EVENTS = "https://www.googleapis.com/auth/calendar.events"


@dataclass(frozen=True)
class GoogleSettings:
    """The OAuth client and endpoints, read from the app's settings."""

    client_id: str
    client_secret: str = field(repr=False)
    auth_uri: str
    token_uri: str
    revoke_uri: str
    api_endpoint: str
    batch_uri: str
    redirect_uri: str
    timeout: float

    @classmethod
    def from_config(cls, config: Mapping[str, Any]) -> GoogleSettings:
        """Build from app settings (`GOOGLE_*`, `BASE_URL`, `PROVIDER_TIMEOUT`)."""
        settings = cls(
            client_id=config["GOOGLE_CLIENT_ID"],
            client_secret=config["GOOGLE_CLIENT_SECRET"],
            auth_uri=config["GOOGLE_AUTH_URI"],
            token_uri=config["GOOGLE_TOKEN_URI"],
            revoke_uri=config["GOOGLE_REVOKE_URI"],
            api_endpoint=config["GOOGLE_API_ENDPOINT"],
            batch_uri=config.get("GOOGLE_BATCH_URI")
            or default_batch_uri(config["GOOGLE_API_ENDPOINT"]),
            redirect_uri=f"{config['BASE_URL']}/api/calendar/google/callback",
            timeout=float(config.get("PROVIDER_TIMEOUT") or 30),
        )
        allow_loopback_http(config, [settings.auth_uri, settings.token_uri, settings.revoke_uri])
        return settings

    def client_config(self) -> dict[str, Any]:
        """The "web" client config `Flow.from_client_config` expects."""
        return {
            "web": {
                "client_id": self.client_id,
                "client_secret": self.client_secret,
                "auth_uri": self.auth_uri,
                "token_uri": self.token_uri,
                "redirect_uris": [self.redirect_uri],
            }
        }


def default_batch_uri(api_endpoint: str) -> str:
    """Google's batch URL on the API endpoint's host (`.../batch/calendar/v3`)."""
    from urllib.parse import urlsplit

    parts = urlsplit(api_endpoint)
    return f"{parts.scheme}://{parts.netloc}/batch/calendar/v3"


@dataclass(frozen=True)
class GoogleTokens:
    """One Google grant as we store it (encrypted) in the vault."""

    access_token: str = field(repr=False)
    refresh_token: str = field(repr=False)
    expires_at: datetime
    scopes: tuple[str, ...]

    def to_dict(self) -> dict[str, Any]:
        """The vault document."""
        return {
            "kind": "google",
            "access_token": self.access_token,
            "refresh_token": self.refresh_token,
            "expires_at": self.expires_at.isoformat(),
            "scopes": list(self.scopes),
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> GoogleTokens:
        """Read a vault document written by `to_dict`."""
        return cls(
            access_token=str(data["access_token"]),
            refresh_token=str(data["refresh_token"]),
            expires_at=datetime.fromisoformat(data["expires_at"]),
            scopes=tuple(data.get("scopes") or ()),
        )


def scopes_for(use_primary: bool) -> list[str]:
    """The one scope we ask for: events of the primary calendar, or our own calendar."""
    return [SCOPE_EVENTS if use_primary else SCOPE_APP_CREATED]


def _flow(settings: GoogleSettings, use_primary: bool, code_verifier: str) -> Flow:
    return Flow.from_client_config(
        settings.client_config(),
        scopes=scopes_for(use_primary),
        redirect_uri=settings.redirect_uri,
        code_verifier=code_verifier,
        autogenerate_code_verifier=False,
    )


def authorization_url(
    settings: GoogleSettings, state: str, *, use_primary: bool
) -> tuple[str, str]:
    """Return `(url, code_verifier)`: where to send the user, and the PKCE secret to keep."""
    # 64 random bytes -> 86 characters from the unreserved set, within RFC 7636's 43..128.
    code_verifier = secrets.token_urlsafe(64)
    url, _ = _flow(settings, use_primary, code_verifier).authorization_url(
        state=state,
        access_type="offline",
        # Google issues a refresh token only on a consent screen; a reconnect after a
        # revoked grant must get a fresh one, so always show it.
        prompt="consent",
    )
    return url, code_verifier


def exchange_code(
    settings: GoogleSettings, code: str, code_verifier: str, *, use_primary: bool, now: datetime
) -> GoogleTokens:
    """Trade the callback's code (plus PKCE verifier) for tokens; raise `OAuthError`."""
    flow = _flow(settings, use_primary, code_verifier)
    try:
        token: Mapping[str, Any] = flow.fetch_token(code=code, timeout=settings.timeout)
    except Warning as changed:
        # oauthlib *raises* Warning("Scope has changed") when the user ticked fewer scopes
        # on Google's granular consent screen; the token is attached. Whether what was
        # granted is enough is checked below, for this case and the normal one alike.
        attached: Mapping[str, Any] | None = getattr(changed, "token", None)
        if attached is None:
            raise  # some other warning turned into an error, not oauthlib's
        token = attached
    except InvalidGrantError:
        raise OAuthError(
            "code_rejected",
            "Google did not accept the sign-in (it expired or was already used). "
            "Please connect again.",
        ) from None
    except OAuth2Error as exc:
        log.warning("google code exchange refused: %s", exc.error)
        raise OAuthError(
            "exchange_failed", "Google refused to complete the sign-in. Please connect again."
        ) from None
    except requests.RequestException as exc:
        log.warning("google token endpoint unreachable: %s", type(exc).__name__)
        raise UpstreamError(
            "provider_unavailable", "Google could not be reached. Please try again shortly."
        ) from None
    scope = token.get("scope") or []
    granted = tuple(scope.split() if isinstance(scope, str) else scope)
    needed = scopes_for(use_primary)[0]
    if needed not in granted:
        raise OAuthError(
            "scope_not_granted",
            "Calendar access was not granted. Connect again and allow access to the calendar.",
        )
    if not token.get("access_token") or not token.get("refresh_token"):
        raise OAuthError(
            "no_refresh_token",
            "Google did not grant offline access. Remove oncal-feed under "
            "myaccount.google.com/permissions, then connect again.",
        )
    return GoogleTokens(
        access_token=str(token["access_token"]),
        refresh_token=str(token["refresh_token"]),
        expires_at=now + timedelta(seconds=int(token.get("expires_in") or 3600)),
        scopes=granted,
    )


class _TimedRequest(google.auth.transport.requests.Request):
    """google-auth's transport with our timeout instead of its 120 s default."""

    def __init__(self, session: requests.Session, timeout: float) -> None:
        super().__init__(session)
        self._timeout = timeout

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        """Send the request, with our timeout unless the caller gave one."""
        kwargs.setdefault("timeout", self._timeout)
        return super().__call__(*args, **kwargs)


class _NotifyingCredentials(Credentials):
    """Credentials that report every refresh, so the new access token gets stored."""

    _on_refresh: Callable[[Credentials], None] | None = None

    def refresh(self, request: Any) -> None:
        """Refresh as usual, then tell the owner."""
        super().refresh(request)
        if self._on_refresh is not None:
            self._on_refresh(self)


def build_credentials(
    settings: GoogleSettings,
    tokens: GoogleTokens,
    on_refresh: Callable[[GoogleTokens], None] | None = None,
) -> Credentials:
    """Return google-auth credentials for `tokens`.

    When google-auth refreshes them by itself (on a 401, or near expiry during a long
    sync) `on_refresh` receives the new tokens.
    """
    credentials = _NotifyingCredentials(
        token=tokens.access_token,
        # google-auth compares expiry with a naive UTC "now".
        expiry=tokens.expires_at.astimezone(UTC).replace(tzinfo=None),
        refresh_token=tokens.refresh_token,
        token_uri=settings.token_uri,
        client_id=settings.client_id,
        client_secret=settings.client_secret,
        scopes=list(tokens.scopes),
    )
    if on_refresh is not None:

        def notify(refreshed: Credentials) -> None:
            on_refresh(_tokens_from(refreshed, tokens))

        credentials._on_refresh = notify
    return credentials


def _tokens_from(credentials: Credentials, previous: GoogleTokens) -> GoogleTokens:
    expiry = credentials.expiry
    expires_at = (
        expiry.replace(tzinfo=UTC) if expiry is not None else datetime.now(UTC) + timedelta(hours=1)
    )
    return GoogleTokens(
        access_token=str(credentials.token),
        # Google keeps the refresh token unchanged on refresh, but take a new one if sent.
        refresh_token=credentials.refresh_token or previous.refresh_token,
        expires_at=expires_at,
        scopes=previous.scopes,
    )


def refresh(settings: GoogleSettings, tokens: GoogleTokens) -> GoogleTokens:
    """Get a new access token; `AuthorizationLost` on invalid_grant, else provider errors."""
    credentials = build_credentials(settings, tokens)
    try:
        with requests.Session() as http:
            credentials.refresh(_TimedRequest(http, settings.timeout))
    except google.auth.exceptions.RefreshError as exc:
        raise refresh_error(exc) from None
    except (google.auth.exceptions.TransportError, requests.RequestException):
        raise TransientError("Google's token service could not be reached") from None
    return _tokens_from(credentials, tokens)


def revoke(settings: GoogleSettings, tokens: GoogleTokens) -> bool:
    """Revoke the whole grant at Google; True when it is gone (or was already)."""
    try:
        response = requests.post(
            settings.revoke_uri,
            data={"token": tokens.refresh_token},
            headers={"Content-Type": "application/x-www-form-urlencoded"},
            timeout=settings.timeout,
        )
    except requests.RequestException as exc:
        log.warning("google revocation failed: %s", type(exc).__name__)
        return False
    if response.status_code == 200:
        return True
    # 400 invalid_token: the grant was revoked already (by the user, or an earlier try).
    if response.status_code == 400:
        return True
    log.warning("google revocation answered %s", response.status_code)
    return False


# ------------------------------------------------------ as a `connections.oauth.OAuthClient`

# Refresh this long before the access token expires, so a sync never starts with a
# token that dies halfway through.
REFRESH_MARGIN = timedelta(minutes=5)


def start(
    app: Flask, state: str, *, login_hint: str, use_primary: bool
) -> tuple[str, dict[str, Any]]:
    """The authorization URL, and the PKCE verifier to keep until the callback."""
    settings = GoogleSettings.from_config(app.config)
    url, verifier = authorization_url(settings, state, use_primary=use_primary)
    return url, {"code_verifier": verifier}


def exchange(
    app: Flask,
    secret: Mapping[str, Any],
    params: Mapping[str, str],
    *,
    use_primary: bool,
    now: datetime,
) -> Grant:
    """Redeem the callback's code with the kept verifier."""
    settings = GoogleSettings.from_config(app.config)
    tokens = exchange_code(
        settings,
        params["code"],
        str(secret.get("code_verifier") or ""),
        use_primary=use_primary,
        now=now,
    )
    return Grant(tokens.to_dict(), tokens.expires_at, tokens.scopes, None)


def build_adapter(
    app: Flask,
    document: dict[str, Any],
    save: SaveTokens,
    *,
    now: datetime,
    refresh_now: bool,
    expires_at: datetime | None,
) -> GoogleCalendarProvider:
    """The Google Calendar adapter for a token document, refreshed first when `refresh_now`.

    `expires_at` (the connection's `token_expires_at` column) wins over the expiry in
    the document, so an operator or the sync engine can force a refresh by moving it.
    """
    settings = GoogleSettings.from_config(app.config)
    tokens = GoogleTokens.from_dict(document)
    if expires_at is not None:
        tokens = replace(tokens, expires_at=expires_at)
    if refresh_now and tokens.expires_at - now < REFRESH_MARGIN:
        tokens = refresh(settings, tokens)
        save(tokens.to_dict(), tokens.expires_at)
    credentials = build_credentials(
        settings, tokens, on_refresh=lambda t: save(t.to_dict(), t.expires_at)
    )
    return GoogleCalendarProvider(
        credentials,
        api_endpoint=settings.api_endpoint,
        batch_uri=settings.batch_uri,
        timeout=settings.timeout,
    )


def revoke_grant(app: Flask, document: Mapping[str, Any]) -> bool:
    """Revoke the whole grant at Google; True when it is gone (or was already)."""
    return revoke(GoogleSettings.from_config(app.config), GoogleTokens.from_dict(document))
