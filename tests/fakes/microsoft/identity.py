"""Microsoft identity platform (v2.0) part of the fake: discovery, consent page, token endpoint.

``IdentityMixin`` is mixed into ``FakeMicrosoft`` and works on its state (``users``,
``clients``, ``codes``, ``tokens``, ``faults``, ``stats``).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import html
import html.parser
import json
import secrets
import urllib.parse
import uuid
from collections.abc import Callable, Iterable
from datetime import UTC, datetime
from typing import Any

from tests.fakes.faults import Fault, run_with_fault
from tests.fakes.microsoft.model import (
    _USER_NAMESPACE,
    CODE_LIFETIME,
    DEFAULT_AUTHORITY_HOST,
    GRAPH_APP_ID,
    GRAPH_HOST,
    ID_TOKEN_LIFETIME,
    OIDC_SCOPES,
    TENANT_ALIASES,
    OAuthClient,
    _AuthCode,
    _Calendar,
    _Token,
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


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _jwt(header: dict[str, Any], claims: dict[str, Any], key: bytes | None) -> str:
    signing_input = (
        _b64url(json.dumps(header, separators=(",", ":")).encode())
        + "."
        + _b64url(json.dumps(claims, separators=(",", ":")).encode())
    )
    if key is None:
        # Graph access tokens are opaque to clients; a random "signature" is enough.
        signature = secrets.token_bytes(32)
    else:
        signature = hmac.new(key, signing_input.encode("ascii"), hashlib.sha256).digest()
    return signing_input + "." + _b64url(signature)


def _aad_error(status: int, error: str, code: int, message: str) -> Response:
    """An identity-platform (AADSTS) error response for the token endpoint."""
    now = datetime.now(UTC)
    trace, correlation = str(uuid.uuid4()), str(uuid.uuid4())
    timestamp = f"{now:%Y-%m-%d %H:%M:%S}Z"
    return json_response(
        {
            "error": error,
            "error_description": (
                f"AADSTS{code}: {message} Trace ID: {trace} Correlation ID: {correlation} "
                f"Timestamp: {timestamp}"
            ),
            "error_codes": [code],
            "timestamp": timestamp,
            "trace_id": trace,
            "correlation_id": correlation,
            "error_uri": f"{DEFAULT_AUTHORITY_HOST}/error?code={code}",
        },
        status,
        {"Cache-Control": "no-store, no-cache", "Pragma": "no-cache"},
    )


def _normalise_scopes(scopes: Iterable[str]) -> list[str]:
    """Graph resource scopes in short form (``https://graph.microsoft.com/X`` -> ``X``)."""
    result: list[str] = []
    for scope in scopes:
        short = scope
        if scope.lower().startswith(GRAPH_HOST + "/"):
            short = scope[len(GRAPH_HOST) + 1 :]
        if short == ".default":
            result.extend(["Calendars.ReadWrite", "User.Read"])
            continue
        result.append(short)
    return result


class IdentityMixin:
    """Identity endpoints (see the package docstring)."""

    def _identity(self, target: str, process: Callable[[], Response]) -> Response:
        self.stats.incr(target)
        return run_with_fault(
            self.faults.decide(target),
            process,
            self._identity_fault_response,
            self.faults.drop_mode,
        )

    def _identity_fault_response(self, fault: Fault) -> Response:
        status = fault.status or 500
        response = _aad_error(
            status,
            "temporarily_unavailable",
            50196 if status == 429 else 90033,
            "The server is temporarily unable to handle the request (injected fault).",
        )
        if fault.retry_after is not None:
            response.headers["Retry-After"] = str(int(fault.retry_after))
        return response

    def _known_tenant(self, tenant: str) -> bool:
        return tenant.lower() in TENANT_ALIASES or tenant.lower() == self.tenant_id.lower()

    def _instance_discovery(self, request: Request) -> Response:
        host = urllib.parse.urlsplit(self._authority_host).netloc
        return json_response(
            {
                "tenant_discovery_endpoint": (
                    f"{self._authority_host}/common/v2.0/.well-known/openid-configuration"
                ),
                "api-version": request.param("api-version", "1.1"),
                "metadata": [
                    {"preferred_network": host, "preferred_cache": host, "aliases": [host]}
                ],
            }
        )

    def _openid_configuration(self, tenant: str) -> Response:
        public = f"{self._authority_host}/{tenant}"
        issuer_tenant = "{tenantid}" if tenant.lower() in TENANT_ALIASES else self.tenant_id
        return json_response(
            {
                "token_endpoint": f"{public}/oauth2/v2.0/token",
                "token_endpoint_auth_methods_supported": [
                    "client_secret_post",
                    "private_key_jwt",
                    "client_secret_basic",
                ],
                "jwks_uri": f"{public}/discovery/v2.0/keys",
                "response_modes_supported": ["query", "fragment", "form_post"],
                "subject_types_supported": ["pairwise"],
                "id_token_signing_alg_values_supported": ["RS256"],
                "response_types_supported": ["code", "id_token", "code id_token", "id_token token"],
                "scopes_supported": ["openid", "profile", "email", "offline_access"],
                "issuer": f"{self._authority_host}/{issuer_tenant}/v2.0",
                "request_uri_parameter_supported": False,
                "userinfo_endpoint": f"{GRAPH_HOST}/oidc/userinfo",
                # Loopback on purpose: a browser must be able to open this one, and msal
                # never parses it (only token_endpoint has to be https).
                "authorization_endpoint": f"{self.url}/{tenant}/oauth2/v2.0/authorize",
                "device_authorization_endpoint": f"{public}/oauth2/v2.0/devicecode",
                "http_logout_supported": True,
                "frontchannel_logout_supported": True,
                "end_session_endpoint": f"{public}/oauth2/v2.0/logout",
                "claims_supported": [
                    "sub",
                    "iss",
                    "aud",
                    "exp",
                    "iat",
                    "auth_time",
                    "nonce",
                    "preferred_username",
                    "name",
                    "tid",
                    "ver",
                    "email",
                    "oid",
                ],
                "tenant_region_scope": None,
                "cloud_instance_name": "microsoftonline.com",
                "cloud_graph_host_name": "graph.windows.net",
                "msgraph_host": "graph.microsoft.com",
                "rbac_url": "https://pas.windows.net",
            }
        )

    def _validate_authorize(self, params: dict[str, str]) -> OAuthClient:
        """Check what AAD checks before showing anything; errors are HTML pages."""
        client_id = params.get("client_id", "")
        with self._lock:
            client = self._clients.get(client_id)
        if client is None:
            raise HTTPError(
                self._error_page(
                    700016,
                    f"Application with identifier '{client_id}' was not found in the directory.",
                )
            )
        redirect_uri = params.get("redirect_uri", "")
        if redirect_uri not in client.redirect_uris:
            raise HTTPError(
                self._error_page(
                    50011,
                    f"The redirect URI '{redirect_uri}' specified in the request does not "
                    f"match the redirect URIs configured for the application '{client_id}'.",
                )
            )
        return client

    def _error_page(self, code: int, message: str) -> Response:
        return html_response(
            "<!DOCTYPE html><html><head><title>Sign in to your account</title></head>"
            f"<body><h1>Sorry, but we're having trouble signing you in.</h1>"
            f'<p id="error">AADSTS{code}: {html.escape(message)}</p></body></html>',
            400,
        )

    def _auth_response(self, params: dict[str, str], result: dict[str, str]) -> Response:
        """Deliver ``result`` to the redirect_uri the way ``response_mode`` asks."""
        if params.get("state") is not None:
            result = {**result, "state": params["state"]}
        redirect_uri = params["redirect_uri"]
        mode = params.get("response_mode", "query")
        if mode == "form_post":
            inputs = "".join(
                f'<input type="hidden" name="{html.escape(k)}" value="{html.escape(v)}"/>'
                for k, v in result.items()
            )
            return html_response(
                "<html><head><title>Working...</title></head><body>"
                f'<form method="POST" name="hiddenform" action="{html.escape(redirect_uri)}">'
                f"{inputs}<noscript><p>Script is disabled. Click Submit to continue.</p>"
                '<input type="submit" value="Submit" /></noscript></form>'
                "<script>document.forms[0].submit();</script></body></html>"
            )
        separator = "#" if mode == "fragment" else ("&" if "?" in redirect_uri else "?")
        return redirect(f"{redirect_uri}{separator}{urllib.parse.urlencode(result)}")

    def _authorize_page(self, request: Request, tenant: str) -> Response:
        params = {key: values[0] for key, values in request.query.items()}
        self._validate_authorize(params)
        if params.get("response_type") != "code":
            return self._auth_response(
                params,
                {
                    "error": "unsupported_response_type",
                    "error_description": "AADSTS700054: response_type is not enabled for "
                    "the application (the fake supports 'code').",
                },
            )
        if params.get("code_challenge") and params.get("code_challenge_method", "plain") not in (
            "S256",
            "plain",
        ):
            return self._auth_response(
                params,
                {
                    "error": "invalid_request",
                    "error_description": "AADSTS501491: Invalid code_challenge_method.",
                },
            )
        if params.get("prompt") == "none":
            # The fake keeps no browser session, so silent sign-in never succeeds.
            return self._auth_response(
                params,
                {
                    "error": "login_required",
                    "error_description": "AADSTS50058: A silent sign-in request was sent "
                    "but no user is signed in.",
                },
            )
        email = params.get("login_hint") or self.default_email
        hidden = "".join(
            f'<input type="hidden" name="{html.escape(k)}" value="{html.escape(v)}">'
            for k, v in params.items()
        )
        scopes = ", ".join(html.escape(s) for s in params.get("scope", "").split())
        return html_response(
            "<!DOCTYPE html><html><head><title>Permissions requested</title></head><body>"
            f"<h1>Permissions requested</h1><p>{html.escape(params['client_id'])} "
            f'wants to: <span id="scopes">{scopes}</span></p>'
            f'<form method="post" action="/{html.escape(tenant)}/oauth2/v2.0/consent" '
            f'id="consent-form">{hidden}'
            '<label for="email">Email</label> '
            f'<input type="email" id="email" name="login_email" value="{html.escape(email)}">'
            '<button type="submit" id="accept" name="consent_action" value="accept">'
            "Accept</button>"
            '<button type="submit" id="cancel" name="consent_action" value="cancel">'
            "Cancel</button></form></body></html>"
        )

    def _consent(self, request: Request, tenant: str) -> Response:
        form = request.form()
        action = form.pop("consent_action", "accept")
        email = form.pop("login_email", "").strip()
        params = form
        self._validate_authorize(params)
        if action != "accept":
            return self._auth_response(
                params,
                {
                    "error": "access_denied",
                    "error_subcode": "cancel",
                    "error_description": "AADSTS65004: User declined to consent to access the app.",
                },
            )
        if "@" not in email:
            raise HTTPError(self._error_page(50034, "Enter a valid email address."))
        scopes = tuple(dict.fromkeys(_normalise_scopes(params.get("scope", "").split())))
        code = "1.A" + _b64url(secrets.token_bytes(48))
        with self._lock:
            user = self._ensure_user(email)
            self._codes[code] = _AuthCode(
                client_id=params["client_id"],
                redirect_uri=params["redirect_uri"],
                email=user.email,
                scopes=scopes,
                nonce=params.get("nonce"),
                code_challenge=params.get("code_challenge"),
                code_challenge_method=params.get("code_challenge_method", "plain"),
                expires_at=self.clock() + CODE_LIFETIME,
            )
            result = {"code": code}
            if params.get("client_info") == "1":
                result["client_info"] = self._client_info(user)
        result["session_state"] = str(uuid.uuid4())
        return self._auth_response(params, result)

    def _client_credentials(self, request: Request, form: dict[str, str]) -> tuple[str, str]:
        header = request.header("Authorization") or ""
        if header.lower().startswith("basic "):
            try:
                decoded = base64.b64decode(header[6:].strip()).decode("utf-8")
            except ValueError:
                decoded = ":"
            client_id, _, secret = decoded.partition(":")
            return urllib.parse.unquote_plus(client_id), urllib.parse.unquote_plus(secret)
        return form.get("client_id", ""), form.get("client_secret", "")

    def _token(self, request: Request, tenant: str) -> Response:
        form = request.form()
        grant_type = form.get("grant_type", "")
        self.stats.incr(f"token:{grant_type or 'missing'}")
        client_id, secret = self._client_credentials(request, form)
        with self._lock:
            client = self._clients.get(client_id)
            if client is None:
                return _aad_error(
                    400,
                    "unauthorized_client",
                    700016,
                    f"Application with identifier '{client_id}' was not found in the directory.",
                )
            if not secret:
                return _aad_error(
                    401,
                    "invalid_client",
                    7000218,
                    "The request body must contain the following parameter: "
                    "'client_assertion' or 'client_secret'.",
                )
            if not hmac.compare_digest(secret, client.client_secret):
                return _aad_error(
                    401,
                    "invalid_client",
                    7000215,
                    "Invalid client secret provided. Ensure the secret being sent in the "
                    "request is the client secret value, not the client secret ID.",
                )
            if grant_type == "authorization_code":
                return self._redeem_code(client, form)
            if grant_type == "refresh_token":
                return self._redeem_refresh_token(client, form)
        return _aad_error(
            400,
            "unsupported_grant_type",
            70003,
            f"The app requested an unsupported grant type '{grant_type}'.",
        )

    def _redeem_code(self, client: OAuthClient, form: dict[str, str]) -> Response:
        code = self._codes.get(form.get("code", ""))
        if code is None or code.client_id != client.client_id:
            return _aad_error(
                400,
                "invalid_grant",
                70000,
                "The provided value for the 'code' parameter is not valid.",
            )
        if code.used:
            return _aad_error(
                400,
                "invalid_grant",
                54005,
                "OAuth2 Authorization code was already redeemed, please retry with a new "
                "valid code or use an existing refresh token.",
            )
        if self.clock() > code.expires_at:
            return _aad_error(
                400,
                "invalid_grant",
                70008,
                "The provided authorization code or refresh token has expired due to inactivity.",
            )
        if form.get("redirect_uri") != code.redirect_uri:
            return _aad_error(
                400,
                "invalid_grant",
                50148,
                "The redirect_uri does not match the redirect_uri of the authorization request.",
            )
        if code.code_challenge:
            verifier = form.get("code_verifier")
            if not verifier:
                return _aad_error(
                    400,
                    "invalid_request",
                    900144,
                    "The request body must contain the following parameter: 'code_verifier'.",
                )
            expected = (
                _b64url(hashlib.sha256(verifier.encode("ascii")).digest())
                if code.code_challenge_method == "S256"
                else verifier
            )
            if not hmac.compare_digest(expected, code.code_challenge):
                return _aad_error(
                    400,
                    "invalid_grant",
                    501481,
                    "The Code_Verifier does not match the code_challenge supplied in the "
                    "authorization request.",
                )
        code.used = True
        user = self._users[code.email]
        return json_response(
            self._issue(
                user,
                client,
                code.scopes,
                nonce=code.nonce,
                client_info=form.get("client_info") == "1",
            ),
            200,
            {"Cache-Control": "no-store, no-cache", "Pragma": "no-cache"},
        )

    def _redeem_refresh_token(self, client: OAuthClient, form: dict[str, str]) -> Response:
        record = self._tokens.get(form.get("refresh_token", ""))
        if record is None or record.kind != "refresh":
            return _aad_error(
                400,
                "invalid_grant",
                9002313,
                "Invalid request. Request is malformed or invalid.",
            )
        if record.client_id != client.client_id:
            return _aad_error(
                400,
                "invalid_grant",
                70000,
                "Provided grant is invalid or malformed.",
            )
        user = self._users[record.email]
        if record.epoch != user.grant_epoch:
            return _aad_error(
                400,
                "invalid_grant",
                50173,
                "The provided grant has expired due to it being revoked, a fresh auth "
                "token is needed. The user might have changed or reset their password.",
            )
        requested = _normalise_scopes(form.get("scope", "").split()) or list(record.scopes)
        missing = [
            scope for scope in requested if scope not in OIDC_SCOPES and scope not in record.scopes
        ]
        if missing:
            return _aad_error(
                400,
                "invalid_grant",
                65001,
                f"The user or administrator has not consented to use the application with "
                f"ID '{client.client_id}'. Send an interactive authorization request for "
                f"this user and resource. (missing: {' '.join(missing)})",
            )
        scopes = tuple(
            dict.fromkeys(
                [s for s in requested if s not in OIDC_SCOPES]
                + [s for s in record.scopes if s in OIDC_SCOPES]
            )
        )
        return json_response(
            self._issue(
                user, client, scopes, nonce=None, client_info=form.get("client_info") == "1"
            ),
            200,
            {"Cache-Control": "no-store, no-cache", "Pragma": "no-cache"},
        )

    def _client_info(self, user: _User) -> str:
        info = {"uid": user.oid, "utid": self.tenant_id}
        return _b64url(json.dumps(info, separators=(",", ":")).encode())

    def _new_token(self, kind: str, user: _User, client_id: str, scopes: tuple[str, ...]) -> str:
        now = self.clock()
        if kind == "access":
            resource = [s for s in scopes if s not in OIDC_SCOPES]
            claims = {
                "aud": GRAPH_APP_ID,
                "iss": f"https://sts.windows.net/{self.tenant_id}/",
                "iat": int(now),
                "nbf": int(now),
                "exp": int(now + self.access_token_lifetime),
                "appid": client_id,
                "name": user.display_name,
                "oid": user.oid,
                "scp": " ".join(resource or ["User.Read"]),
                "tid": self.tenant_id,
                "unique_name": user.email,
                "upn": user.email,
                "uti": _b64url(secrets.token_bytes(16)),
                "ver": "1.0",
            }
            token = _jwt({"typ": "JWT", "alg": "RS256", "kid": "fake"}, claims, None)
            expires_at = now + self.access_token_lifetime
        else:
            # Real refresh tokens are opaque, long and start with a version marker.
            token = "1.AR" + _b64url(secrets.token_bytes(96))
            expires_at = float("inf")
        self._tokens[token] = _Token(
            kind, user.email, client_id, tuple(scopes), user.grant_epoch, expires_at
        )
        return token

    def _issue(
        self,
        user: _User,
        client: OAuthClient,
        scopes: tuple[str, ...],
        *,
        nonce: str | None,
        client_info: bool,
    ) -> dict[str, Any]:
        now = int(self.clock())
        resource = [s for s in scopes if s not in OIDC_SCOPES]
        granted_oidc = [s for s in ("openid", "profile", "email") if s in scopes]
        if "openid" in scopes and "email" not in granted_oidc:
            granted_oidc.append("email")  # AAD reports email alongside openid
        response: dict[str, Any] = {
            "token_type": "Bearer",
            "scope": " ".join(resource + granted_oidc),
            "expires_in": self.access_token_lifetime,
            "ext_expires_in": self.access_token_lifetime,
            "access_token": self._new_token("access", user, client.client_id, scopes),
        }
        if "offline_access" in scopes:
            response["refresh_token"] = self._new_token("refresh", user, client.client_id, scopes)
        if "openid" in scopes:
            claims: dict[str, Any] = {
                "aud": client.client_id,
                "iss": f"{self._authority_host}/{self.tenant_id}/v2.0",
                "iat": now,
                "nbf": now,
                "exp": now + ID_TOKEN_LIFETIME,
                "email": user.email,
                "name": user.display_name,
                "oid": user.oid,
                "preferred_username": user.email,
                "rh": "0.fake",
                "sub": _b64url(hashlib.sha256(f"{client.client_id}:{user.oid}".encode()).digest())[
                    :43
                ],
                "tid": self.tenant_id,
                "uti": _b64url(secrets.token_bytes(16)),
                "ver": "2.0",
            }
            if nonce:
                claims["nonce"] = nonce
            response["id_token"] = _jwt(
                {"typ": "JWT", "alg": "HS256", "kid": "fake"},
                claims,
                client.client_secret.encode(),
            )
        if client_info:
            response["client_info"] = self._client_info(user)
        return response

    def _ensure_user(self, email: str) -> _User:
        key = email.strip().lower()
        user = self._users.get(key)
        if user is None:
            local = key.split("@", 1)[0]
            user = _User(
                email=key,
                oid=str(uuid.uuid5(_USER_NAMESPACE, key)),
                display_name=local.replace(".", " ").title(),
            )
            default = _Calendar(self._new_id("AAMkAGI"), "Calendar", self._change_key(), True)
            user.calendars[default.id] = default
            user.default_calendar_id = default.id
            self._users[key] = user
        return user
