"""A fake OpenID Connect issuer on 127.0.0.1: discovery, authorization, token and JWKS.

It follows OpenID Connect Core 1.0 and Discovery 1.0 closely enough for Authlib's client:

- ``GET /.well-known/openid-configuration``: the discovery document (``issuer`` is the
  fake's URL, or Microsoft's ``.../{tenantid}/v2.0`` template with ``tenant_template``).
- ``GET /authorize``: checks ``response_type=code``, the client id, the redirect URI,
  a ``state``, a ``nonce`` and an S256 ``code_challenge``; "signs in" ``fake.person``
  without a page and redirects back with ``code`` and ``state`` (or with
  ``error=access_denied`` when ``fake.deny`` is set). Every request is kept in
  ``fake.authorizations`` so tests can check what was asked for (the scopes).
- ``POST /token``: client authentication (``client_secret_basic`` or ``_post``),
  one use per code, the PKCE verifier against the challenge, the redirect URI again;
  answers an access token and an ID token signed RS256 with a real 2048-bit RSA key whose
  public half is served at ``GET /jwks``.

Knobs for refusals (``fake.tamper``, applied to the next ID token): ``iss``, ``aud``,
``nonce`` (claims to override), ``expired`` (issued and expired an hour ago),
``other_key`` (signed by a key the JWKS doesn't hold, under the published key id).
"""

from __future__ import annotations

import base64
import hashlib
import secrets
import threading
import time
import urllib.parse
from typing import Any

from joserfc import jwt
from joserfc.jwk import RSAKey

from tests.fakes.server import (
    FakeHTTPServer,
    HTTPError,
    Request,
    Response,
    json_response,
    redirect,
)

__all__ = ["CLIENT_ID", "CLIENT_SECRET", "FakeOIDC"]

CLIENT_ID = "oncal-test-client"
CLIENT_SECRET = "oncal-test-client-secret"
KEY_ID = "fake-key-1"
TENANT_ID = "9188040d-6c67-4c5b-b112-36a304b66dad"


def _oauth_error(error: str, description: str, status: int = 400) -> HTTPError:
    return HTTPError(json_response({"error": error, "error_description": description}, status))


class FakeOIDC(FakeHTTPServer):
    """An OIDC issuer for one registered client (``CLIENT_ID`` / ``CLIENT_SECRET``)."""

    def __init__(self, *, tenant_template: bool = False, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.tenant_template = tenant_template
        self.key = RSAKey.generate_key(2048, parameters={"kid": KEY_ID, "use": "sig"})
        self.other_key = RSAKey.generate_key(2048, parameters={"kid": KEY_ID, "use": "sig"})
        self.redirect_uris: set[str] = set()
        self.person: dict[str, Any] = {
            "sub": "person-1",
            "email": "kim@example.com",
            "email_verified": True,
            "name": "Kim Lee",
        }
        self.tamper: dict[str, Any] = {}
        self.deny = False
        self.authorizations: list[dict[str, str]] = []
        self.tokens_issued = 0
        self._codes: dict[str, dict[str, Any]] = {}
        self._lock = threading.Lock()

    # ------------------------------------------------------------------ addresses

    @property
    def issuer(self) -> str:
        """The issuer tokens carry (Microsoft's per-tenant form with the template)."""
        return f"{self.url}/{TENANT_ID}/v2.0" if self.tenant_template else self.url

    @property
    def discovery_url(self) -> str:
        """Where the discovery document is served."""
        return f"{self.url}/.well-known/openid-configuration"

    def metadata(self) -> dict[str, Any]:
        """The discovery document."""
        issuer = f"{self.url}/{{tenantid}}/v2.0" if self.tenant_template else self.url
        return {
            "issuer": issuer,
            "authorization_endpoint": f"{self.url}/authorize",
            "token_endpoint": f"{self.url}/token",
            "jwks_uri": f"{self.url}/jwks",
            "response_types_supported": ["code"],
            "subject_types_supported": ["public"],
            "id_token_signing_alg_values_supported": ["RS256"],
            "scopes_supported": ["openid", "email", "profile"],
            "token_endpoint_auth_methods_supported": ["client_secret_basic", "client_secret_post"],
            "code_challenge_methods_supported": ["S256"],
            "claims_supported": ["sub", "email", "email_verified", "name", "iss", "aud"],
        }

    # ------------------------------------------------------------------ handler

    def handle(self, request: Request) -> Response:
        """Route one request."""
        if request.method == "GET" and request.path == "/.well-known/openid-configuration":
            return json_response(self.metadata())
        if request.method == "GET" and request.path == "/jwks":
            return json_response({"keys": [self.key.as_dict(private=False)]})
        if request.method == "GET" and request.path == "/authorize":
            return self._authorize(request)
        if request.method == "POST" and request.path == "/token":
            return self._token(request)
        return json_response({"error": "not_found"}, 404)

    def _authorize(self, request: Request) -> Response:
        params = {name: values[0] for name, values in request.query.items()}
        self.authorizations.append(params)
        redirect_uri = params.get("redirect_uri", "")
        if params.get("client_id") != CLIENT_ID:
            raise _oauth_error("invalid_client", "unknown client_id")
        if self.redirect_uris and redirect_uri not in self.redirect_uris:
            raise _oauth_error("invalid_request", "redirect_uri is not registered")
        for name in ("state", "nonce", "code_challenge"):
            if not params.get(name):
                raise _oauth_error("invalid_request", f"{name} is required")
        if params.get("response_type") != "code" or params.get("code_challenge_method") != "S256":
            raise _oauth_error("invalid_request", "only response_type=code with S256 PKCE")
        if "openid" not in params.get("scope", "").split():
            raise _oauth_error("invalid_scope", "openid is required")
        back: dict[str, str] = {"state": params["state"]}
        if self.deny:
            back["error"] = "access_denied"
        else:
            code = secrets.token_urlsafe(24)
            with self._lock:
                self._codes[code] = {**params, "person": dict(self.person)}
            back["code"] = code
        return redirect(f"{redirect_uri}?{urllib.parse.urlencode(back)}")

    def _client_ok(self, request: Request, form: dict[str, str]) -> bool:
        header = request.header("Authorization") or ""
        if header.lower().startswith("basic "):
            decoded = base64.b64decode(header[6:]).decode()
            client_id, _, secret = decoded.partition(":")
            client_id, secret = urllib.parse.unquote(client_id), urllib.parse.unquote(secret)
        else:
            client_id, secret = form.get("client_id", ""), form.get("client_secret", "")
        return client_id == CLIENT_ID and secret == CLIENT_SECRET

    def _token(self, request: Request) -> Response:
        form = request.form()
        if not self._client_ok(request, form):
            raise _oauth_error("invalid_client", "client authentication failed", 401)
        if form.get("grant_type") != "authorization_code":
            raise _oauth_error("unsupported_grant_type", "authorization_code only")
        with self._lock:
            grant = self._codes.pop(form.get("code", ""), None)
        if grant is None:
            raise _oauth_error("invalid_grant", "unknown or used code")
        if form.get("redirect_uri") != grant.get("redirect_uri"):
            raise _oauth_error("invalid_grant", "redirect_uri differs from the authorization")
        verifier = form.get("code_verifier", "")
        challenge = (
            base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest())
            .rstrip(b"=")
            .decode()
        )
        if not verifier or challenge != grant["code_challenge"]:
            raise _oauth_error("invalid_grant", "PKCE verification failed")
        self.tokens_issued += 1
        return json_response(
            {
                "access_token": secrets.token_urlsafe(24),
                "token_type": "Bearer",
                "expires_in": 3600,
                "scope": grant.get("scope", ""),
                "id_token": self._id_token(grant),
            },
            headers={"Cache-Control": "no-store"},
        )

    def _id_token(self, grant: dict[str, Any]) -> str:
        tamper, self.tamper = self.tamper, {}
        now = int(time.time())
        issued = now - 7200 if tamper.get("expired") else now
        claims: dict[str, Any] = {
            **grant["person"],
            "iss": self.issuer,
            "aud": CLIENT_ID,
            "nonce": grant["nonce"],
            "iat": issued,
            "exp": issued + 3600,
        }
        if self.tenant_template:
            claims["tid"] = TENANT_ID
        for name in ("iss", "aud", "nonce"):
            if name in tamper:
                claims[name] = tamper[name]
        key = self.other_key if tamper.get("other_key") else self.key
        return jwt.encode({"alg": "RS256", "kid": KEY_ID}, claims, key)
