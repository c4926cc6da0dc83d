"""``FakeGoogle``: the server, its test controls and inspection, and the request dispatch."""

from __future__ import annotations

import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterable
from typing import Any
from zoneinfo import ZoneInfo

from tests.fakes.faults import Faults, Stats, run_with_fault
from tests.fakes.google.batch import BATCH_PATHS, BatchMixin
from tests.fakes.google.calendar import CalendarMixin
from tests.fakes.google.identity import IdentityMixin, _oauth_error
from tests.fakes.google.model import (
    API_PREFIX,
    DEFAULT_CLIENT_ID,
    SCOPE_CALENDAR,
    ApiCall,
    ApiError,
    OAuthClient,
    _AccessToken,
    _AuthCode,
    _Calendar,
    _Grant,
    _random_id,
    _rfc3339_ms,
    _User,
)
from tests.fakes.server import (
    FakeHTTPServer,
    Request,
    Response,
)


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    """Makes urllib surface a redirect as an HTTPError instead of following it."""

    def redirect_request(self, *args: Any, **kwargs: Any) -> None:
        """Refuse to follow."""
        return None


class FakeGoogle(IdentityMixin, CalendarMixin, BatchMixin, FakeHTTPServer):
    """Fake Google OAuth + Calendar API server (see the package docstring)."""

    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = 0,
        *,
        seed: int = 0,
        verbose: bool = False,
        clock: Callable[[], float] = time.time,
    ) -> None:
        """Create the fake (call ``start()`` or use it as a context manager)."""
        super().__init__(host, port, verbose=verbose)
        self._lock = threading.RLock()
        self.clock = clock
        self.stats = Stats()
        self.faults = Faults(seed=seed, targets={"api", "batch"})
        self.access_token_lifetime = 3600
        self.code_lifetime = 600
        self.max_batch_size = 50
        self.default_email = "alice@example.com"
        self.default_time_zone = "UTC"
        self.revoked_tokens: list[str] = []
        self.revocations: list[dict[str, Any]] = []
        self.calls: list[ApiCall] = []
        self._clients: dict[str, OAuthClient] = {}
        self._codes: dict[str, _AuthCode] = {}
        self._grants: dict[str, _Grant] = {}
        self._refresh_tokens: dict[str, _Grant] = {}
        self._access_tokens: dict[str, _AccessToken] = {}
        self._users: dict[str, _User] = {}
        self._calendars: dict[str, _Calendar] = {}
        self._seq = 0
        self._mod = 3_000_000_000_000_000
        self._sync_floor = 0
        self._signing_key: Any = None
        self._signing_kid = _random_id(16)

    @property
    def auth_uri(self) -> str:
        """Authorization (consent) endpoint."""
        return f"{self.url}/o/oauth2/auth"

    @property
    def token_uri(self) -> str:
        """Token endpoint."""
        return f"{self.url}/token"

    @property
    def revoke_uri(self) -> str:
        """Revocation endpoint."""
        return f"{self.url}/revoke"

    @property
    def userinfo_uri(self) -> str:
        """OpenID userinfo endpoint."""
        return f"{self.url}/oauth2/v3/userinfo"

    @property
    def certs_uri(self) -> str:
        """PEM keys for id_token verification (``google.oauth2.id_token`` certs_url)."""
        return f"{self.url}/oauth2/v1/certs"

    @property
    def api_endpoint(self) -> str:
        """Value for ``client_options={"api_endpoint": ...}`` (replaces rootUrl+servicePath)."""
        return f"{self.url}{API_PREFIX}/"

    @property
    def batch_uri(self) -> str:
        """Value for ``BatchHttpRequest(batch_uri=...)``."""
        return f"{self.url}/batch/calendar/v3"

    def client_config(
        self,
        client_id: str = DEFAULT_CLIENT_ID,
    ) -> dict[str, Any]:
        """A ``Flow.from_client_config`` config ("web" type) for a registered client."""
        with self._lock:
            client = self._clients[client_id]
            return {
                "web": {
                    "client_id": client.client_id,
                    "client_secret": client.client_secret,
                    "auth_uri": self.auth_uri,
                    "token_uri": self.token_uri,
                    "redirect_uris": list(client.redirect_uris),
                }
            }

    def register_client(
        self, client_id: str, client_secret: str, redirect_uris: Iterable[str]
    ) -> OAuthClient:
        """Register (or replace) an OAuth client."""
        client = OAuthClient(client_id, client_secret, list(redirect_uris))
        with self._lock:
            self._clients[client_id] = client
        return client

    def add_user(self, email: str, time_zone: str | None = None) -> None:
        """Create a user (and primary calendar) or change its time zone."""
        with self._lock:
            user = self._ensure_user(email)
            if time_zone is not None:
                ZoneInfo(time_zone)  # fail fast on a typo
                user.time_zone = time_zone
                self._calendars[email].time_zone = time_zone

    def issue_token(
        self,
        email: str,
        scopes: Iterable[str] = (SCOPE_CALENDAR,),
        client_id: str = DEFAULT_CLIENT_ID,
        *,
        offline: bool = True,
    ) -> dict[str, Any]:
        """Mint a grant without the consent dance; returns the token endpoint JSON."""
        with self._lock:
            if client_id not in self._clients:
                raise KeyError(f"unknown client {client_id!r}")
            self._ensure_user(email)
            return self._new_grant(client_id, email, tuple(scopes), offline=offline)

    def revoke_grants(self, email: str, client_id: str | None = None) -> int:
        """Simulate the user removing the app's access; returns grants revoked."""
        with self._lock:
            grants = [
                grant
                for grant in self._grants.values()
                if grant.email == email
                and not grant.revoked
                and (client_id is None or grant.client_id == client_id)
            ]
            for grant in grants:
                self._revoke_grant(grant)
            return len(grants)

    def expire_access_tokens(self, email: str | None = None) -> int:
        """Expire access tokens (all, or one user's); returns how many."""
        with self._lock:
            now = self.clock()
            count = 0
            for token in self._access_tokens.values():
                if (email is None or token.grant.email == email) and token.expires_at > now:
                    token.expires_at = now - 1
                    count += 1
            return count

    def invalidate_sync_tokens(self) -> None:
        """Make every sync token issued so far answer 410 ``fullSyncRequired``."""
        with self._lock:
            self._sync_floor = self._mod

    def reset_stats(self) -> None:
        """Zero ``stats`` and clear ``calls``."""
        self.stats.reset()
        with self._lock:
            self.calls.clear()

    def grants(self, email: str | None = None) -> list[dict[str, Any]]:
        """Grants (optionally of one user) as dicts, for assertions."""
        with self._lock:
            return [
                {
                    "client_id": grant.client_id,
                    "email": grant.email,
                    "scopes": list(grant.scopes),
                    "refresh_token": grant.refresh_token,
                    "revoked": grant.revoked,
                }
                for grant in self._grants.values()
                if email is None or grant.email == email
            ]

    def calendars(self, email: str) -> list[dict[str, Any]]:
        """The user's calendars as ``calendar#calendar`` resources (primary first)."""
        with self._lock:
            cals = [cal for cal in self._calendars.values() if cal.owner == email]
            cals.sort(key=lambda cal: not cal.primary)
            return [cal.resource() | {"primary": cal.primary} for cal in cals]

    def events(
        self, email: str, calendar_id: str | None = None, include_cancelled: bool = False
    ) -> list[dict[str, Any]]:
        """Stored events of one calendar (or all of the user's), as read back by the API."""
        with self._lock:
            if calendar_id == "primary":
                calendar_id = email
            out = []
            for cal in self._calendars.values():
                if cal.owner != email or (calendar_id is not None and cal.id != calendar_id):
                    continue
                for event in sorted(cal.events.values(), key=lambda e: e.seq):
                    if include_cancelled or event.data.get("status") != "cancelled":
                        out.append(self._render_event(cal, event))
            return out

    def edit_event(
        self, email: str, calendar_id: str, event_id: str, changes: dict[str, Any]
    ) -> dict[str, Any]:
        """Change top-level fields of an event as if the user edited it (new etag)."""
        with self._lock:
            cal = self._calendars[calendar_id]
            assert cal.owner == email, "not this user's calendar"
            event = cal.events[event_id]
            event.data.update(changes)
            self._touch(cal, event, _rfc3339_ms(self.clock()))
            return self._render_event(cal, event)

    def remove_event(self, email: str, calendar_id: str, event_id: str) -> None:
        """Delete an event as if the user deleted it in Google Calendar (cancelled)."""
        with self._lock:
            cal = self._calendars[calendar_id]
            assert cal.owner == email, "not this user's calendar"
            event = cal.events[event_id]
            event.data["status"] = "cancelled"
            event.data["sequence"] = int(event.data.get("sequence", 0)) + 1
            self._touch(cal, event, _rfc3339_ms(self.clock()))

    def remove_calendar(self, email: str, calendar_id: str) -> None:
        """Delete a secondary calendar and its events as if the user did, in Google Calendar."""
        with self._lock:
            cal = self._calendars[calendar_id]
            assert cal.owner == email, "not this user's calendar"
            assert not cal.primary, "Google never deletes a primary calendar"
            del self._calendars[calendar_id]

    def fail_next(
        self, count: int = 1, status: int = 503, *, retry_after: float | None = None, **kw: Any
    ) -> None:
        """Shortcut for ``faults.fail_next`` (see ``faults.Faults``)."""
        self.faults.fail_next(count, status, retry_after=retry_after, **kw)

    def consent(
        self,
        authorize_url: str,
        email: str | None = None,
        allow: bool = True,
        scopes: Iterable[str] | None = None,
    ) -> str:
        """Load the consent page and submit it over HTTP; return the redirect Location.

        ``scopes`` limits what the user ticks (granular consent); default all.
        Raises ``RuntimeError`` with the error page text if the request is invalid.
        """
        split = urllib.parse.urlsplit(authorize_url)
        params = urllib.parse.parse_qsl(split.query, keep_blank_values=True)
        page_url = f"{self.url}/o/oauth2/auth?{split.query}"
        # No proxies: the fake is on loopback and tests must not leave the host.
        plain = urllib.request.build_opener(urllib.request.ProxyHandler({}))
        try:
            with plain.open(page_url, timeout=10) as page:
                page.read()
        except urllib.error.HTTPError as exc:
            raise RuntimeError(f"consent page refused: {exc.read().decode()}") from exc
        requested = dict(params).get("scope", "").split()
        granted = requested if scopes is None else [s for s in requested if s in set(scopes)]
        form = [
            *params,
            ("granular", "1"),
            ("email", email or dict(params).get("login_hint") or self.default_email),
            ("action", "allow" if allow else "deny"),
        ]
        form.extend(("scope_grant", scope) for scope in granted)
        opener = urllib.request.build_opener(urllib.request.ProxyHandler({}), _NoRedirect)
        request = urllib.request.Request(
            f"{self.url}/o/oauth2/approve",
            data=urllib.parse.urlencode(form).encode(),
            method="POST",
        )
        try:
            with opener.open(request, timeout=10) as response:
                raise RuntimeError(f"consent did not redirect: {response.status}")
        except urllib.error.HTTPError as exc:
            if exc.code in (301, 302, 303, 307) and exc.headers.get("Location"):
                return str(exc.headers["Location"])
            raise RuntimeError(f"consent refused: {exc.code} {exc.read().decode()}") from exc

    def handle(self, request: Request) -> Response:
        """Route one HTTP request."""
        self.stats.incr("http")
        path = request.path
        if path.startswith(API_PREFIX + "/"):
            self.stats.incr("api", "api_round_trips")
            fault = self.faults.decide("api")
            return run_with_fault(
                fault,
                lambda: self._api_call(request, in_batch=False),
                self._api_fault_response,
                self.faults.drop_mode,
            )
        if path.rstrip("/") in BATCH_PATHS:
            self.stats.incr("batch", "api_round_trips")
            return self._batch(request)
        oauth_routes: dict[tuple[str, str], tuple[str, Callable[[Request], Response]]] = {
            ("GET", "/o/oauth2/auth"): ("auth", self._authorize_page),
            ("GET", "/o/oauth2/v2/auth"): ("auth", self._authorize_page),
            ("POST", "/o/oauth2/approve"): ("auth", self._approve),
            ("POST", "/token"): ("token", self._token),
            ("POST", "/revoke"): ("revoke", self._revoke),
            ("GET", "/revoke"): ("revoke", self._revoke),
            ("GET", "/oauth2/v3/userinfo"): ("userinfo", self._userinfo),
            ("GET", "/oauth2/v2/userinfo"): ("userinfo", self._userinfo),
            ("GET", "/oauth2/v1/certs"): ("certs", self._certs),
        }
        route = oauth_routes.get((request.method, path.rstrip("/") or "/"))
        if route is None:
            return self._not_found(request)
        target, handler = route
        self.stats.incr(target)
        return run_with_fault(
            self.faults.decide(target),
            lambda: handler(request),
            lambda fault: _oauth_error(fault.status or 500, "server_error", "injected fault"),
            self.faults.drop_mode,
        )

    def _not_found(self, request: Request) -> Response:
        hint = ""
        if request.path.startswith(("/calendars", "/users/me")):
            hint = (
                f" (Calendar API lives under {API_PREFIX}/: api_endpoint must be "
                f"{self.api_endpoint!r}, it replaces rootUrl+servicePath)"
            )
        return ApiError(404, "notFound", f"Not Found: {request.path}{hint}").response()
