"""Google OAuth 2.0 part of the fake: consent page, token, revoke, userinfo, id_token keys.

``IdentityMixin`` is mixed into ``FakeGoogle`` and works on its state.
"""

from __future__ import annotations

import base64
import hashlib
import html
import json
import secrets
import urllib.error
import urllib.parse
import urllib.request
from typing import Any

from tests.fakes.google.model import (
    ApiError,
    OAuthClient,
    _AccessToken,
    _Auth,
    _AuthCode,
    _b64url,
    _Calendar,
    _Grant,
    _random_id,
    _User,
)
from tests.fakes.server import (
    HTTPError,
    Request,
    Response,
    html_response,
    json_response,
    redirect,
)


def _oauth_error(status: int, error: str, description: str) -> Response:
    """OAuth endpoints answer with the flat RFC 6749 error shape, not Google's API one."""
    return json_response(
        {"error": error, "error_description": description},
        status,
        {"Cache-Control": "no-store", "Pragma": "no-cache"},
    )


def _error_page(status: int, title: str, detail: str) -> Response:
    return html_response(
        "<!doctype html><html><head><title>Error</title></head><body>"
        f"<h1>Error {status}: {html.escape(title)}</h1><p>{html.escape(detail)}</p>"
        "</body></html>",
        status,
    )


class IdentityMixin:
    """OAuth endpoints, grants and users (see the package docstring)."""

    def _validate_auth_params(self, params: dict[str, str]) -> tuple[OAuthClient, str, list[str]]:
        client = self._clients.get(params.get("client_id", ""))
        if client is None:
            raise HTTPError(_error_page(401, "invalid_client", "The OAuth client was not found."))
        redirect_uri = params.get("redirect_uri", "")
        if redirect_uri not in client.redirect_uris:
            raise HTTPError(
                _error_page(
                    400,
                    "redirect_uri_mismatch",
                    f"redirect_uri {redirect_uri!r} is not registered for this client.",
                )
            )
        if params.get("response_type") != "code":
            raise HTTPError(
                _error_page(400, "unsupported_response_type", "response_type must be 'code'.")
            )
        scopes = params.get("scope", "").split()
        if not scopes:
            raise HTTPError(
                _error_page(400, "invalid_request", "Missing required parameter: scope")
            )
        method = params.get("code_challenge_method")
        if params.get("code_challenge") and method not in (None, "S256", "plain"):
            raise HTTPError(_error_page(400, "invalid_request", "Invalid code_challenge_method."))
        return client, redirect_uri, scopes

    def _authorize_page(self, request: Request) -> Response:
        params = {key: values[0] for key, values in request.query.items()}
        with self._lock:
            client, _, scopes = self._validate_auth_params(params)
        hidden = "".join(
            f'<input type="hidden" name="{html.escape(k)}" value="{html.escape(v)}">'
            for k, v in params.items()
        )
        boxes = "".join(
            f'<li><label><input type="checkbox" name="scope_grant" value="{html.escape(s)}"'
            f" checked> {html.escape(s)}</label></li>"
            for s in scopes
        )
        email = params.get("login_hint") or self.default_email
        page = f"""<!doctype html>
<html><head><meta charset="utf-8"><title>Sign in - Fake Google Accounts</title></head>
<body>
<h1>Fake Google</h1>
<p id="client">{html.escape(client.client_id)} wants to access your Google Account</p>
<form id="consent" method="post" action="/o/oauth2/approve">
{hidden}<input type="hidden" name="granular" value="1">
<label>Email <input id="email" type="email" name="email" value="{html.escape(email)}"></label>
<ul id="scopes">{boxes}</ul>
<button id="allow" type="submit" name="action" value="allow">Allow</button>
<button id="deny" type="submit" name="action" value="deny">Deny</button>
</form>
</body></html>"""
        return html_response(page)

    def _approve(self, request: Request) -> Response:
        form = urllib.parse.parse_qs(request.body.decode("utf-8"), keep_blank_values=True)
        params = {key: values[0] for key, values in form.items()}
        with self._lock:
            _, redirect_uri, scopes = self._validate_auth_params(params)
            state = params.get("state")
            extra: list[tuple[str, str]] = []
            if params.get("action") != "allow":
                extra.append(("error", "access_denied"))
            else:
                email = params.get("email", "").strip().lower()
                if "@" not in email:
                    return _error_page(400, "invalid_request", "Enter an email address.")
                granted = scopes
                if params.get("granular"):
                    ticked = set(form.get("scope_grant", []))
                    granted = [scope for scope in scopes if scope in ticked]
                if not granted:
                    extra.append(("error", "access_denied"))
                else:
                    self._ensure_user(email)
                    code = "4/0" + _b64url(secrets.token_bytes(30))
                    self._codes[code] = _AuthCode(
                        code=code,
                        client_id=params["client_id"],
                        redirect_uri=redirect_uri,
                        email=email,
                        scopes=tuple(granted),
                        offline=params.get("access_type") == "offline",
                        force_consent="consent" in params.get("prompt", "").split(),
                        code_challenge=params.get("code_challenge") or None,
                        code_challenge_method=(
                            params.get("code_challenge_method") or "plain"
                            if params.get("code_challenge")
                            else None
                        ),
                        nonce=params.get("nonce"),
                        expires_at=self.clock() + self.code_lifetime,
                    )
                    extra += [("code", code), ("scope", " ".join(granted))]
            if state is not None:
                extra.insert(0, ("state", state))
        separator = "&" if "?" in redirect_uri else "?"
        return redirect(redirect_uri + separator + urllib.parse.urlencode(extra))

    def _client_credentials(self, request: Request, form: dict[str, str]) -> tuple[str, str]:
        # requests-oauthlib (used by google-auth-oauthlib's Flow) sends HTTP Basic;
        # google-auth's refresh sends the credentials in the form body.
        header = request.header("Authorization") or ""
        if header.lower().startswith("basic "):
            try:
                decoded = base64.b64decode(header[6:].strip()).decode("utf-8")
            except (ValueError, UnicodeDecodeError):
                decoded = ":"
            client_id, _, secret = decoded.partition(":")
            return urllib.parse.unquote_plus(client_id), urllib.parse.unquote_plus(secret)
        return form.get("client_id", ""), form.get("client_secret", "")

    def _token(self, request: Request) -> Response:
        form = request.form()
        client_id, secret = self._client_credentials(request, form)
        grant_type = form.get("grant_type", "")
        self.stats.incr(f"token:{grant_type or 'missing'}")
        with self._lock:
            client = self._clients.get(client_id)
            if client is None or not secrets.compare_digest(client.client_secret, secret):
                return _oauth_error(401, "invalid_client", "Unauthorized")
            if grant_type == "authorization_code":
                return self._exchange_code(client, form)
            if grant_type == "refresh_token":
                return self._refresh(client, form)
            return _oauth_error(400, "unsupported_grant_type", f"Invalid grant_type: {grant_type}")

    def _exchange_code(self, client: OAuthClient, form: dict[str, str]) -> Response:
        code = self._codes.get(form.get("code", ""))
        if not form.get("code"):
            return _oauth_error(400, "invalid_request", "Missing required parameter: code")
        if code is None or code.client_id != client.client_id:
            return _oauth_error(400, "invalid_grant", "Malformed auth code.")
        if code.used or code.expires_at <= self.clock():
            return _oauth_error(400, "invalid_grant", "Bad Request")
        if form.get("redirect_uri") != code.redirect_uri:
            return _oauth_error(400, "redirect_uri_mismatch", "Bad Request")
        if code.code_challenge is not None:
            verifier = form.get("code_verifier")
            if not verifier:
                return _oauth_error(400, "invalid_grant", "Missing code verifier.")
            if code.code_challenge_method == "S256":
                expected = _b64url(hashlib.sha256(verifier.encode("ascii")).digest())
            else:
                expected = verifier
            if not secrets.compare_digest(expected, code.code_challenge):
                return _oauth_error(400, "invalid_grant", "Invalid code verifier.")
        code.used = True
        # Google hands out a refresh token on the first offline consent only,
        # unless the app forces the consent screen again (prompt=consent).
        has_live_refresh = any(
            g.client_id == client.client_id
            and g.email == code.email
            and g.refresh_token
            and not g.revoked
            for g in self._grants.values()
        )
        offline = code.offline and (code.force_consent or not has_live_refresh)
        body = self._new_grant(client.client_id, code.email, code.scopes, offline=offline)
        if "openid" in code.scopes:
            body["id_token"] = self._id_token(client.client_id, code.email, code.nonce)
        return json_response(body, 200, {"Cache-Control": "no-store", "Pragma": "no-cache"})

    def _refresh(self, client: OAuthClient, form: dict[str, str]) -> Response:
        grant = self._refresh_tokens.get(form.get("refresh_token", ""))
        if grant is None or grant.revoked:
            return _oauth_error(400, "invalid_grant", "Token has been expired or revoked.")
        if grant.client_id != client.client_id:
            return _oauth_error(400, "unauthorized_client", "Unauthorized")
        scopes = grant.scopes
        if form.get("scope"):
            wanted = tuple(form["scope"].split())
            if not set(wanted) <= set(grant.scopes):
                return _oauth_error(400, "invalid_scope", "Bad Request")
            scopes = wanted
        body = {
            "access_token": self._new_access_token(grant, scopes),
            "expires_in": self.access_token_lifetime,
            "scope": " ".join(scopes),
            "token_type": "Bearer",
        }
        return json_response(body, 200, {"Cache-Control": "no-store", "Pragma": "no-cache"})

    def _revoke(self, request: Request) -> Response:
        token = request.form().get("token") or request.param("token") or ""
        with self._lock:
            grant = self._refresh_tokens.get(token)
            kind = "refresh_token"
            if grant is None and token in self._access_tokens:
                grant, kind = self._access_tokens[token].grant, "access_token"
            if grant is None or grant.revoked:
                return _oauth_error(400, "invalid_token", "Token expired or revoked")
            self._revoke_grant(grant)
            self.revoked_tokens.append(token)
            self.revocations.append(
                {"token": token, "kind": kind, "email": grant.email, "client_id": grant.client_id}
            )
        return json_response({})

    def _userinfo(self, request: Request) -> Response:
        with self._lock:
            auth = self._authenticate(request)
            user = self._users[auth.email]
        body: dict[str, Any] = {"sub": user.sub}
        if auth.scopes & {"email", "https://www.googleapis.com/auth/userinfo.email"}:
            body.update(email=user.email, email_verified=True)
        return json_response(body)

    def _certs(self, request: Request) -> Response:
        from cryptography.hazmat.primitives import serialization

        with self._lock:
            key = self._key()
        pem = key.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )
        return json_response({self._signing_kid: pem.decode("ascii")})

    def _key(self) -> Any:
        # Generated lazily: only tests that ask for openid pay for RSA keygen.
        if self._signing_key is None:
            from cryptography.hazmat.primitives.asymmetric import rsa

            self._signing_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        return self._signing_key

    def _id_token(self, client_id: str, email: str, nonce: str | None) -> str:
        from cryptography.hazmat.primitives import hashes
        from cryptography.hazmat.primitives.asymmetric import padding

        now = int(self.clock())
        header = {"alg": "RS256", "kid": self._signing_kid, "typ": "JWT"}
        payload: dict[str, Any] = {
            "iss": "https://accounts.google.com",
            "aud": client_id,
            "azp": client_id,
            "sub": self._users[email].sub,
            "email": email,
            "email_verified": True,
            "iat": now,
            "exp": now + 3600,
        }
        if nonce:
            payload["nonce"] = nonce
        signing_input = (
            _b64url(json.dumps(header).encode()) + "." + _b64url(json.dumps(payload).encode())
        )
        signature = self._key().sign(signing_input.encode(), padding.PKCS1v15(), hashes.SHA256())
        return signing_input + "." + _b64url(signature)

    def _ensure_user(self, email: str) -> _User:
        user = self._users.get(email)
        if user is None:
            user = _User(email, self.default_time_zone, str(10**20 + len(self._users)))
            self._users[email] = user
            self._calendars[email] = _Calendar(
                id=email,
                owner=email,
                summary=email,
                time_zone=user.time_zone,
                created_by_client=None,
                primary=True,
                etag=self._next_etag(),
            )
        return user

    def _new_grant(
        self, client_id: str, email: str, scopes: tuple[str, ...], *, offline: bool
    ) -> dict[str, Any]:
        grant = _Grant(
            grant_id=_random_id(),
            client_id=client_id,
            email=email,
            scopes=scopes,
            refresh_token=("1//0" + _b64url(secrets.token_bytes(40))) if offline else None,
            created_at=self.clock(),
        )
        self._grants[grant.grant_id] = grant
        body: dict[str, Any] = {
            "access_token": self._new_access_token(grant, scopes),
            "expires_in": self.access_token_lifetime,
            "scope": " ".join(scopes),
            "token_type": "Bearer",
        }
        if grant.refresh_token:
            self._refresh_tokens[grant.refresh_token] = grant
            body["refresh_token"] = grant.refresh_token
        return body

    def _new_access_token(self, grant: _Grant, scopes: tuple[str, ...]) -> str:
        token = "ya29.fake-" + _b64url(secrets.token_bytes(30))
        self._access_tokens[token] = _AccessToken(
            token, grant, scopes, self.clock() + self.access_token_lifetime
        )
        return token

    def _revoke_grant(self, grant: _Grant) -> None:
        grant.revoked = True
        for token in [t for t, rec in self._access_tokens.items() if rec.grant is grant]:
            del self._access_tokens[token]

    def _authenticate(self, request: Request) -> _Auth:
        token = request.bearer_token()
        if token is None:
            raise ApiError(
                401,
                "required",
                "Request is missing required authentication credential. Expected OAuth 2 "
                "access token, login cookie or other valid authentication credential.",
                location="Authorization",
                headers={"WWW-Authenticate": 'Bearer realm="https://accounts.google.com/"'},
            )
        record = self._access_tokens.get(token)
        if record is None or record.grant.revoked or record.expires_at <= self.clock():
            raise ApiError(
                401,
                "authError",
                "Request had invalid authentication credentials. Expected OAuth 2 access "
                "token, login cookie or other valid authentication credential.",
                location="Authorization",
                headers={
                    "WWW-Authenticate": (
                        'Bearer realm="https://accounts.google.com/", error="invalid_token"'
                    )
                },
            )
        return _Auth(record.grant.email, record.grant.client_id, frozenset(record.scopes))
