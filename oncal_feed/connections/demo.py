"""The demo calendar's OAuth flow: an authorization code with PKCE, against a built-in page.

Shaped like Google's and Microsoft's flows so the demo goes through the same connect,
callback, vault and credentials code: `start` sends the browser to `/demo/authorize`
(`web/demo.py`), which asks the signed-in person to allow access and redirects to the
usual callback with a code. The code is signed with the app's `SECRET_KEY`, lives ten
minutes and binds the account and the PKCE challenge; `exchange` checks both, as a
token endpoint would, and issues a grant for that account's demo calendars. The
"server" is this app, so the exchange is a function call rather than an HTTP request.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
from collections.abc import Mapping
from datetime import datetime, timedelta
from typing import Any
from urllib.parse import urlencode

from flask import Flask
from itsdangerous import BadSignature, URLSafeTimedSerializer

from oncal_feed.connections.errors import OAuthError
from oncal_feed.connections.oauth import Grant, SaveTokens
from oncal_feed.db import get_database
from oncal_feed.providers.base import AuthorizationLost
from oncal_feed.providers.demo import DemoCalendarProvider

__all__ = [
    "CLIENT_ID",
    "SCOPE",
    "authorization_code",
    "build_adapter",
    "callback_url",
    "exchange",
    "revoke_grant",
    "start",
]

CLIENT_ID = "oncal-feed"
SCOPE = "demo.calendar"
CODE_LIFETIME = timedelta(minutes=10)
# A demo grant does not expire (there is no refresh to show); ten years is "never".
GRANT_LIFETIME = timedelta(days=3650)
_SALT = "oncal-feed demo calendar authorization code"


def _serializer(app: Flask) -> URLSafeTimedSerializer:
    return URLSafeTimedSerializer(app.config["SECRET_KEY"], salt=_SALT)


def _challenge(verifier: str) -> str:
    """RFC 7636 S256: base64url(sha256(verifier)) without padding."""
    digest = hashlib.sha256(verifier.encode("ascii")).digest()
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode("ascii")


def callback_url(app: Flask) -> str:
    """Where the authorization page sends the browser back: the usual callback."""
    return f"{app.config['BASE_URL']}/api/calendar/demo/callback"


def authorization_code(app: Flask, account_email: str, code_challenge: str) -> str:
    """The code the authorization page hands out once the person allowed access."""
    return _serializer(app).dumps({"account": account_email, "challenge": code_challenge})


def start(
    app: Flask, state: str, *, login_hint: str, use_primary: bool
) -> tuple[str, dict[str, Any]]:
    """The built-in authorization page's URL, and the PKCE verifier to keep."""
    verifier = secrets.token_urlsafe(64)
    query = urlencode(
        {
            "response_type": "code",
            "client_id": CLIENT_ID,
            "redirect_uri": callback_url(app),
            "scope": SCOPE,
            "state": state,
            "code_challenge": _challenge(verifier),
            "code_challenge_method": "S256",
            "login_hint": login_hint,
        }
    )
    return f"{app.config['BASE_URL']}/demo/authorize?{query}", {"code_verifier": verifier}


def exchange(
    app: Flask,
    secret: Mapping[str, Any],
    params: Mapping[str, str],
    *,
    use_primary: bool,
    now: datetime,
) -> Grant:
    """Redeem the code: signed, fresh, and issued for the kept verifier's challenge."""
    try:
        payload = _serializer(app).loads(params["code"], max_age=int(CODE_LIFETIME.total_seconds()))
    except BadSignature:
        raise OAuthError(
            "code_rejected",
            "The demo calendar did not accept the sign-in (it expired or was altered). "
            "Please connect again.",
        ) from None
    verifier = str(secret.get("code_verifier") or "")
    if not isinstance(payload, dict) or not hmac.compare_digest(
        str(payload.get("challenge")), _challenge(verifier)
    ):
        raise OAuthError(
            "code_rejected",
            "The demo calendar did not accept the sign-in. Please connect again.",
        )
    account = str(payload["account"])
    document = {"kind": "demo", "access_token": secrets.token_urlsafe(32), "account": account}
    return Grant(document, now + GRANT_LIFETIME, (SCOPE,), account)


def build_adapter(
    app: Flask,
    document: dict[str, Any],
    save: SaveTokens,
    *,
    now: datetime,
    refresh_now: bool,
    expires_at: datetime | None,
) -> DemoCalendarProvider:
    """The demo calendar adapter for a grant (nothing to refresh)."""
    if not app.config.get("DEMO_CALENDAR_CONFIGURED"):
        # A demo connection left in a database now served in another mode.
        raise AuthorizationLost("the demo calendar exists only in demo mode")
    return DemoCalendarProvider(get_database(app), str(document["account"]))


def revoke_grant(app: Flask, document: Mapping[str, Any]) -> bool:
    """Nothing is kept at the "provider" per grant: it is gone once we drop it."""
    return True
