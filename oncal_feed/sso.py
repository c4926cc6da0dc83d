"""Single sign-on with OpenID Connect: Google, Microsoft and any issuer by discovery URL.

Authlib does the protocol: discovery, the authorization redirect with PKCE (S256), a
nonce and a `state` kept in this browser's session, the code exchange, and the ID token
check (signature against the issuer's JWKS, `iss`, `aud`, `exp`, `nonce`). This module
chooses the providers from the configuration, turns Authlib's and joserfc's refusals
into `SignInRefused` with words for people, and decides which account a verified
identity signs in to (`account_for`).

Sign-in asks for `openid email profile` only, separately from the calendar connections
(`oncal_feed.connections`): signing in never grants calendar access, and the tokens it
receives are dropped once the ID token is read.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import requests
from authlib.integrations.base_client.errors import MismatchingStateError
from authlib.integrations.base_client.errors import OAuthError as AuthlibOAuthError
from authlib.integrations.flask_client import OAuth
from flask import Flask, Response, current_app
from joserfc.errors import (
    BadSignatureError,
    ClaimError,
    ExpiredTokenError,
    JoseError,
)
from sqlalchemy import select
from sqlalchemy.orm import Session

from oncal_feed.errors import OncalError
from oncal_feed.models import User

__all__ = [
    "SCOPES",
    "Identity",
    "SignInProvider",
    "SignInRefused",
    "account_for",
    "finish_sign_in",
    "init_sso",
    "signin_providers",
    "start_sign_in",
]

log = logging.getLogger(__name__)

SCOPES = "openid email profile"
_EXTENSION = "oncal_sso"
_LABELS = {"google": "Google", "microsoft": "Microsoft"}
# Microsoft's multi-tenant endpoints publish an issuer template; the token's own tenant
# (`tid`) completes it.
_TENANT_PLACEHOLDER = "{tenantid}"


class SignInRefused(OncalError):
    """A sign-in was refused; `reason` is a short code, `message` is for the person."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(f"{reason}: {message}")
        self.reason = reason
        self.message = message


@dataclass(frozen=True)
class SignInProvider:
    """One configured way to sign in: an OIDC client of one issuer."""

    name: str  # "google" | "microsoft" | "oidc"
    label: str  # on the button: "Sign in with {label}"
    client_id: str
    client_secret: str
    metadata_url: str


@dataclass(frozen=True)
class Identity:
    """What a verified ID token says about the person."""

    provider: str
    subject: str
    email: str
    email_verified: bool
    name: str


def signin_providers(config: Mapping[str, Any]) -> list[SignInProvider]:
    """The providers `SIGNIN_PROVIDERS` turns on, in the order given (checked in config)."""
    found = []
    for name in config["SIGNIN_PROVIDERS"]:
        if name == "google":
            found.append(
                SignInProvider(
                    "google",
                    "Google",
                    config["GOOGLE_CLIENT_ID"],
                    config["GOOGLE_CLIENT_SECRET"],
                    config["GOOGLE_DISCOVERY_URL"],
                )
            )
        elif name == "microsoft":
            found.append(
                SignInProvider(
                    "microsoft",
                    "Microsoft",
                    config["MICROSOFT_CLIENT_ID"],
                    config["MICROSOFT_CLIENT_SECRET"],
                    config["MICROSOFT_DISCOVERY_URL"],
                )
            )
        else:
            found.append(
                SignInProvider(
                    "oidc",
                    config["OIDC_LABEL"],
                    config["OIDC_CLIENT_ID"],
                    config["OIDC_CLIENT_SECRET"],
                    config["OIDC_DISCOVERY_URL"],
                )
            )
    return found


def init_sso(app: Flask) -> None:
    """Register an Authlib client for each configured sign-in provider on `app`."""
    # Authlib logs the PKCE verifier at debug level; it is a secret of the flow.
    logging.getLogger("authlib").setLevel(logging.INFO)
    oauth = OAuth()
    oauth.init_app(app)
    providers = {}
    for provider in signin_providers(app.config):
        # Client names of our own, so Authlib finds none of its `<NAME>_*` settings in
        # the app config (GOOGLE_CLIENT_ID and friends belong to push sync).
        oauth.register(
            f"signin_{provider.name}",
            client_id=provider.client_id,
            client_secret=provider.client_secret,
            server_metadata_url=provider.metadata_url,
            client_kwargs={
                "scope": SCOPES,
                "code_challenge_method": "S256",
                "default_timeout": app.config["PROVIDER_TIMEOUT"],
            },
        )
        providers[provider.name] = provider
    app.extensions[_EXTENSION] = (oauth, providers)


def _client(name: str) -> tuple[Any, SignInProvider]:
    oauth, providers = current_app.extensions[_EXTENSION]
    if name not in providers:
        raise SignInRefused("unknown_provider", "This way of signing in is not offered here.")
    return oauth.create_client(f"signin_{name}"), providers[name]


def start_sign_in(name: str, redirect_uri: str) -> Response:
    """Redirect the browser to the provider; state, nonce and PKCE verifier stay in the
    session, so only this browser can finish the flow."""
    client, provider = _client(name)
    try:
        response: Response = client.authorize_redirect(redirect_uri)
    except (requests.RequestException, ValueError, KeyError):
        # Discovery failed: unreachable, not JSON, or without an authorization endpoint.
        log.warning("sign-in discovery failed for %s", name)
        raise SignInRefused(
            "provider_unavailable",
            f"{provider.label} could not be reached. Try again in a minute.",
        ) from None
    return response


def finish_sign_in(name: str) -> Identity:
    """Check the provider's answer in this request and return the verified identity.

    Raises `SignInRefused` for anything but a verified ID token of this flow.
    """
    client, provider = _client(name)
    label = provider.label
    try:
        token = client.authorize_access_token(claims_options=_claims_options(client))
    except MismatchingStateError:
        raise SignInRefused(
            "state",
            "This sign-in was started in another browser or tab, or too long ago, so it "
            "can't be finished here. Start again.",
        ) from None
    except AuthlibOAuthError as exc:
        if exc.error == "access_denied":
            raise SignInRefused("cancelled", f"Signing in with {label} was cancelled.") from None
        log.info("sign-in refused by %s: %s", name, exc.error)
        raise SignInRefused(
            "provider_error", f"{label} did not sign you in. Start again."
        ) from None
    except ExpiredTokenError:
        raise _unverified(label, "it has expired") from None
    except ClaimError as exc:
        raise _unverified(label, _CLAIM_WORDS.get(exc.claim, "it is not valid")) from None
    except BadSignatureError:
        raise _unverified(label, "its signature is not valid") from None
    except JoseError:
        raise _unverified(label, "it could not be read") from None
    except requests.RequestException:
        log.warning("sign-in token exchange failed for %s", name)
        raise SignInRefused(
            "provider_unavailable", f"{label} could not be reached. Try again in a minute."
        ) from None
    claims = token.get("userinfo")
    if not claims:
        raise _unverified(label, "there was no ID token in it")
    return _identity(name, claims)


_CLAIM_WORDS = {
    "iss": "it was issued by another provider",
    "aud": "it was meant for another application",
    "azp": "it was meant for another application",
    "nonce": "it does not belong to this sign-in",
    "exp": "it has expired",
    "iat": "its issue time is not valid",
    "sub": "it names nobody",
}


def _unverified(label: str, why: str) -> SignInRefused:
    return SignInRefused(
        "id_token",
        f"The answer from {label} could not be verified ({why}), so you were not signed in.",
    )


def _claims_options(client: Any) -> dict[str, Any]:
    """The issuer check: the discovery document's `issuer`, with Microsoft's tenant
    template completed by the token's own `tid`."""
    issuer = str(client.load_server_metadata().get("issuer") or "")

    def same_issuer(claims: Mapping[str, Any], value: Any) -> bool:
        expected = issuer
        if _TENANT_PLACEHOLDER in expected:
            expected = expected.replace(_TENANT_PLACEHOLDER, str(claims.get("tid") or ""))
        return bool(issuer) and value == expected

    return {"iss": {"essential": True, "validate": same_issuer}}


def _identity(provider: str, claims: Mapping[str, Any]) -> Identity:
    email = str(claims.get("email") or "").strip().lower()
    verified = claims.get("email_verified") is True or claims.get("email_verified") == "true"
    if provider == "microsoft" and not verified:
        # Entra ID sends no email_verified; `xms_edov` says the domain's owner verified it.
        verified = claims.get("xms_edov") is True or claims.get("xms_edov") == "1"
    name = str(claims.get("name") or "").strip()
    return Identity(provider, str(claims.get("sub") or ""), email, verified, name)


def account_for(
    session: Session, identity: Identity, config: Mapping[str, Any], label: str, now: datetime
) -> User:
    """The account a verified identity signs in to, made when configured; else refused.

    Checked in this order: an email address at all, verified by the provider, in an
    allowed domain, then an existing user with that email (a person the scheduling tool
    or a source already knows), or a new one when `SIGNIN_CREATE_ACCOUNTS` is on.
    Nothing is written unless every check passed.
    """
    if not identity.email or "@" not in identity.email:
        raise SignInRefused(
            "no_email", f"{label} did not tell us your email address, so you were not signed in."
        )
    if not identity.email_verified:
        raise SignInRefused(
            "email_unverified",
            f"{label} has not verified your email address ({identity.email}), so it can't be "
            "matched to an account. Verify it with them, or ask an admin for an invitation.",
        )
    domain = identity.email.rsplit("@", 1)[1]
    allowed = config["SIGNIN_ALLOWED_DOMAINS"]
    if allowed and domain not in allowed:
        raise SignInRefused(
            "domain",
            f"Addresses at {domain} can't sign in here. Sign in with your "
            f"{' or '.join(allowed)} account.",
        )
    user = session.scalar(select(User).where(User.email == identity.email))
    if user is not None:
        return user
    if not config["SIGNIN_CREATE_ACCOUNTS"]:
        raise SignInRefused(
            "no_account",
            f"oncal-feed has no account for {identity.email}. Ask an admin to add or invite you.",
        )
    user = User(
        email=identity.email,
        display_name=(identity.name or identity.email.split("@")[0])[:200],
        created_at=now,
        updated_at=now,
    )
    session.add(user)
    session.flush()
    return user
