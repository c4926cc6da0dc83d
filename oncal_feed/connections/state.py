"""OAuth `state`: signed, short-lived, single-use and bound to the user who started it.

The state sent to Google or Microsoft is an itsdangerous token over a random flow id and
the provider name, nothing else (an earlier plan put the bare user id there, which lets
an attacker send a victim a callback link that attaches the attacker's calendar to the
victim's account). The flow itself lives in `oauth_flows`, with the PKCE verifier or
MSAL's flow dict encrypted, and the flow id is also kept in the starter's session cookie.
A callback is accepted only when all of these agree:

- the signature is valid and the state is at most ten minutes old,
- a stored flow with that id exists for that provider and has not been used,
- it belongs to the signed-in user,
- the same browser session started it.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from flask import session as cookie_session
from itsdangerous import BadSignature, SignatureExpired, URLSafeTimedSerializer
from sqlalchemy import delete, select
from sqlalchemy.orm import Session

from oncal_feed.connections.errors import OAuthError
from oncal_feed.connections.vault import TokenVault, VaultError
from oncal_feed.models import OAuthFlow, User

__all__ = [
    "FLOW_MAX_AGE",
    "PendingFlow",
    "new_flow_id",
    "read_state",
    "save_flow",
    "sign_state",
    "take_flow",
]

FLOW_MAX_AGE = timedelta(minutes=10)
_STATE_SALT = "oncal-feed.oauth-state"
_COOKIE_KEY = "oauth_flows"  # provider -> flow id, in the signed session cookie

_INVALID_STATE = (
    "This sign-in link is not valid: it was altered, it is too old, or it was started by "
    "someone else. Start connecting your calendar again."
)


@dataclass(frozen=True)
class PendingFlow:
    """A flow taken out of storage by a valid callback (the row is gone by then)."""

    flow_id: str
    provider: str
    use_primary: bool
    secret: dict[str, Any]


def _serializer(secret_key: str) -> URLSafeTimedSerializer:
    return URLSafeTimedSerializer(secret_key, salt=_STATE_SALT)


def sign_state(secret_key: str, flow_id: str, provider: str) -> str:
    """Return the `state` value for a flow."""
    return _serializer(secret_key).dumps({"f": flow_id, "p": provider})


def read_state(secret_key: str, state: str | None, provider: str) -> str:
    """Return the flow id in a valid, fresh `state` for `provider`; raise `OAuthError`."""
    if not state:
        raise OAuthError("invalid_state", _INVALID_STATE)
    try:
        payload = _serializer(secret_key).loads(state, max_age=int(FLOW_MAX_AGE.total_seconds()))
    except SignatureExpired:
        raise OAuthError(
            "expired_state", "This sign-in took longer than ten minutes. Please start again."
        ) from None
    except BadSignature:
        raise OAuthError("invalid_state", _INVALID_STATE) from None
    if (
        not isinstance(payload, dict)
        or payload.get("p") != provider
        or not isinstance(payload.get("f"), str)
    ):
        raise OAuthError("invalid_state", _INVALID_STATE)
    return str(payload["f"])


def new_flow_id() -> str:
    """Return a random, unguessable flow id."""
    return secrets.token_urlsafe(24)


def save_flow(
    session: Session,
    vault: TokenVault,
    user: User,
    provider: str,
    flow_id: str,
    secret: dict[str, Any],
    *,
    use_primary: bool,
    now: datetime,
) -> None:
    """Store a pending flow for `user` and remember it in the session cookie.

    `secret` (PKCE verifier, MSAL flow dict) is kept encrypted. Older pending flows of the
    same user and provider, and expired ones of anybody, are dropped here, so the table
    stays small without a sweeper.
    """
    session.execute(delete(OAuthFlow).where(OAuthFlow.created_at < now - FLOW_MAX_AGE))
    session.execute(
        delete(OAuthFlow).where(OAuthFlow.user_id == user.id, OAuthFlow.provider == provider)
    )
    session.add(
        OAuthFlow(
            id=flow_id,
            user_id=user.id,
            provider=provider,
            secret_ciphertext=vault.encrypt(secret),
            use_primary=use_primary,
            created_at=now,
        )
    )
    session.flush()
    flows = dict(cookie_session.get(_COOKIE_KEY) or {})
    flows[provider] = flow_id
    cookie_session[_COOKIE_KEY] = flows


def take_flow(
    session: Session,
    vault: TokenVault,
    secret_key: str,
    user: User,
    provider: str,
    state: str | None,
    *,
    now: datetime,
) -> PendingFlow:
    """Validate a callback's `state` and consume its flow; raise `OAuthError` if invalid.

    The flow row is deleted (single use) but not committed: the caller commits, and
    should do so even when a later step fails, so a state can't be replayed.
    """
    flow_id = read_state(secret_key, state, provider)
    flow = session.scalar(
        select(OAuthFlow).where(OAuthFlow.id == flow_id, OAuthFlow.provider == provider)
    )
    if flow is None or flow.user_id != user.id:
        # Used already, superseded by a newer attempt, or someone else's: same answer,
        # and another user's flow is left alone.
        raise OAuthError("invalid_state", _INVALID_STATE)
    flows = dict(cookie_session.get(_COOKIE_KEY) or {})
    if flows.get(provider) != flow_id:
        raise OAuthError("invalid_state", _INVALID_STATE)
    # A statement, not `session.delete`: of two concurrent callbacks with one state,
    # the second deletes nothing and is refused, instead of failing on stale data.
    taken = session.execute(delete(OAuthFlow).where(OAuthFlow.id == flow_id))
    if getattr(taken, "rowcount", 0) != 1:
        raise OAuthError("invalid_state", _INVALID_STATE)
    flows.pop(provider)
    cookie_session[_COOKIE_KEY] = flows
    if flow.created_at < now - FLOW_MAX_AGE:
        raise OAuthError(
            "expired_state", "This sign-in took longer than ten minutes. Please start again."
        )
    try:
        secret = vault.decrypt(flow.secret_ciphertext)
    except VaultError:
        raise OAuthError("invalid_state", _INVALID_STATE) from None
    return PendingFlow(flow.id, provider, flow.use_primary, secret)
