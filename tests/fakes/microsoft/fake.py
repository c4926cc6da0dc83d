"""``FakeMicrosoft``: the server, its test controls and inspection, and the request dispatch."""

from __future__ import annotations

import threading
import time
import urllib.parse
from collections.abc import Callable, Iterable
from typing import Any

import requests

from tests.fakes.faults import Faults, Stats
from tests.fakes.microsoft.batch import BatchMixin
from tests.fakes.microsoft.graph import GraphMixin
from tests.fakes.microsoft.identity import IdentityMixin, _aad_error
from tests.fakes.microsoft.loopback import LoopbackSession, _FormParser, _rewrite
from tests.fakes.microsoft.model import (
    DEFAULT_AUTHORITY_HOST,
    DEFAULT_CLIENT_ID,
    DEFAULT_TENANT_ID,
    GRAPH_HOST,
    GraphCall,
    OAuthClient,
    _AuthCode,
    _Token,
    _User,
)
from tests.fakes.microsoft.odata import ODataMixin, _as_value_error
from tests.fakes.server import (
    FakeHTTPServer,
    Request,
    Response,
    json_response,
)


class FakeMicrosoft(IdentityMixin, GraphMixin, ODataMixin, BatchMixin, FakeHTTPServer):
    """Fake Microsoft identity platform + Graph calendar server (see the package docstring)."""

    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = 0,
        *,
        seed: int = 0,
        verbose: bool = False,
        authority_host: str = DEFAULT_AUTHORITY_HOST,
        tenant_id: str = DEFAULT_TENANT_ID,
        clock: Callable[[], float] = time.time,
    ) -> None:
        """Create the fake (call ``start()`` or use it as a context manager)."""
        super().__init__(host, port, verbose=verbose)
        self._lock = threading.RLock()
        self.clock = clock
        self._authority_host = authority_host.rstrip("/")
        self.tenant_id = tenant_id
        self.stats = Stats()
        # False: expanded properties are dropped from a $select'ed listing (see odata.py).
        self.expanded_under_select = True
        self.faults = Faults(seed=seed, targets={"graph", "batch"})
        self.faults.error_statuses = (500, 503, 504)
        self.access_token_lifetime = 3600
        self.default_email = "alice@example.com"
        self.default_page_size = 10
        self.calls: list[GraphCall] = []
        self._clients: dict[str, OAuthClient] = {}
        self._users: dict[str, _User] = {}
        self._codes: dict[str, _AuthCode] = {}
        self._tokens: dict[str, _Token] = {}

    @property
    def authority_host(self) -> str:
        """The https authority host the app is configured with (routed to the fake)."""
        return self._authority_host

    @property
    def graph_endpoint(self) -> str:
        """Graph base URL for the app (``{url}/v1.0``)."""
        return f"{self.url}/v1.0"

    def authority(self, tenant: str = "common") -> str:
        """The msal ``authority`` for ``tenant`` (https, on ``authority_host``)."""
        return f"{self._authority_host}/{tenant}"

    def loopback_http_client(self, timeout: float | None = 10.0) -> LoopbackSession:
        """An msal ``http_client`` routing ``authority_host`` and Graph's host to the fake."""
        return LoopbackSession({self._authority_host: self.url, GRAPH_HOST: self.url}, timeout)

    def msal_kwargs(self, tenant: str = "common") -> dict[str, Any]:
        """Keyword arguments for ``msal.ConfidentialClientApplication`` against the fake."""
        return {
            "authority": self.authority(tenant),
            "instance_discovery": False,
            "validate_authority": False,
            "http_client": self.loopback_http_client(),
        }

    def register_client(
        self, client_id: str, client_secret: str, redirect_uris: Iterable[str]
    ) -> OAuthClient:
        """Register (or replace) an application."""
        client = OAuthClient(client_id, client_secret, list(redirect_uris))
        with self._lock:
            self._clients[client_id] = client
        return client

    def add_user(self, email: str, display_name: str | None = None) -> dict[str, Any]:
        """Create a user with a default calendar (idempotent); return its ``/me`` JSON."""
        with self._lock:
            user = self._ensure_user(email)
            if display_name:
                user.display_name = display_name
            return self._render_me(user)

    def revoke_grants(self, email: str) -> None:
        """Revoke every grant of ``email``: refresh -> invalid_grant, Graph -> 401."""
        with self._lock:
            self._ensure_user(email).grant_epoch += 1

    def expire_access_tokens(self, email: str | None = None) -> int:
        """Expire issued access tokens (of ``email``, or all); return how many."""
        count = 0
        with self._lock:
            for token in self._tokens.values():
                if token.kind == "access" and (email is None or token.email == email.lower()):
                    token.expires_at = 0.0
                    count += 1
        return count

    def access_token(
        self,
        email: str | None = None,
        scopes: Iterable[str] = ("Calendars.ReadWrite",),
        client_id: str = DEFAULT_CLIENT_ID,
    ) -> str:
        """Issue an access token directly (no OAuth dance), for Graph-only tests."""
        with self._lock:
            user = self._ensure_user(email or self.default_email)
            return self._new_token("access", user, client_id, tuple(scopes))

    def reset_stats(self) -> None:
        """Zero the request counters and forget the call log."""
        self.stats.reset()
        with self._lock:
            self.calls.clear()

    def fail_next(
        self, count: int = 1, status: int = 503, *, retry_after: float | None = None, **kw: Any
    ) -> None:
        """Shortcut for ``faults.fail_next`` (see ``faults.Faults``)."""
        self.faults.fail_next(count, status, retry_after=retry_after, **kw)

    def calendars(self, email: str) -> list[dict[str, Any]]:
        """The user's calendars as Graph renders them."""
        with self._lock:
            user = self._ensure_user(email)
            return [self._render_calendar(user, cal) for cal in user.calendars.values()]

    def events(self, email: str, calendar_id: str | None = None) -> list[dict[str, Any]]:
        """The user's events (all calendars unless ``calendar_id``), in creation order.

        Rendered like Graph plus every extended property, so tests can check tags.
        """
        with self._lock:
            user = self._ensure_user(email)
            return [
                self._render_event(user, event, all_ext=True)
                for event in user.events.values()
                if calendar_id is None or event.calendar_id == calendar_id
            ]

    def put_event(
        self, email: str, body: dict[str, Any], calendar_id: str | None = None
    ) -> dict[str, Any]:
        """Create an event as if the user made it in Outlook (no faults, no counters).

        Raises ``ValueError`` with Graph's error message for an invalid body.
        """
        with self._lock, _as_value_error():
            user = self._ensure_user(email)
            cal = user.calendars[calendar_id or user.default_calendar_id]
            event = self._create_event(user, cal, body)
            return self._render_event(user, event, all_ext=True)

    def edit_event(self, email: str, event_id: str, changes: dict[str, Any]) -> dict[str, Any]:
        """Change an event as if the user edited it in Outlook (new changeKey)."""
        with self._lock, _as_value_error():
            user = self._ensure_user(email)
            event = user.events[event_id]
            self._apply_event_changes(user, event, changes, creating=False)
            self._touch(event)
            return self._render_event(user, event, all_ext=True)

    def remove_event(self, email: str, event_id: str) -> None:
        """Delete an event as if the user deleted it in Outlook."""
        with self._lock:
            self._ensure_user(email).events.pop(event_id)

    def remove_calendar(self, email: str, calendar_id: str) -> None:
        """Delete a calendar and its events as if the user did, in Outlook."""
        with self._lock:
            user = self._ensure_user(email)
            assert calendar_id != user.default_calendar_id, "Outlook keeps the default calendar"
            del user.calendars[calendar_id]
            for event_id in [e.id for e in user.events.values() if e.calendar_id == calendar_id]:
                del user.events[event_id]

    def consent_exchange(
        self, auth_uri: str, email: str | None = None, allow: bool = True
    ) -> tuple[str, dict[str, str]]:
        """Open the consent page and submit it over HTTP.

        Returns ``(redirect_uri, params)``: the callback address and the parameters
        the browser would deliver to it (query, fragment or form_post fields alike).
        Raises ``RuntimeError`` with the page text when the fake refuses the request.
        """
        _location, target, params = self._consent_round_trip(auth_uri, email, allow)
        return target, params

    def consent(self, auth_uri: str, email: str | None = None, allow: bool = True) -> str:
        """Consent (``allow``) or cancel over HTTP and return where the browser lands.

        That is the redirect ``Location`` for the ``query`` and ``fragment`` response
        modes; for ``form_post`` it is the form's action with its fields as a query.
        """
        location, target, params = self._consent_round_trip(auth_uri, email, allow)
        return location or f"{target}?{urllib.parse.urlencode(params)}"

    def consent_params(
        self, auth_uri: str, email: str | None = None, allow: bool = True
    ) -> dict[str, str]:
        """Consent over HTTP and return the auth response dict msal expects."""
        return self._consent_round_trip(auth_uri, email, allow)[2]

    def _consent_round_trip(
        self, auth_uri: str, email: str | None, allow: bool
    ) -> tuple[str | None, str, dict[str, str]]:
        page_url = _rewrite(auth_uri, {self._authority_host.lower(): self.url})
        with requests.Session() as session:
            # No proxies: the fake is on loopback and tests must not leave the host.
            session.trust_env = False
            page = session.get(page_url, timeout=10, allow_redirects=False)
            if page.status_code in (301, 302, 303):
                # prompt=none and request errors redirect straight away.
                location = page.headers["Location"]
                return (location, *self._split_redirect(location))
            if page.status_code != 200:
                raise RuntimeError(f"consent page refused: {page.status_code} {page.text}")
            form = _FormParser()
            form.feed(page.text)
            if form.action is None:
                raise RuntimeError("consent page has no form")
            fields = dict(form.fields)
            fields["login_email"] = email or fields.get("login_email") or self.default_email
            fields["consent_action"] = "accept" if allow else "cancel"
            answer = session.post(
                urllib.parse.urljoin(page_url, form.action),
                data=fields,
                timeout=10,
                allow_redirects=False,
            )
        if answer.status_code in (301, 302, 303):
            location = answer.headers["Location"]
            return (location, *self._split_redirect(location))
        if answer.status_code == 200:
            # response_mode=form_post: an auto-submitting form carries the result.
            result = _FormParser()
            result.feed(answer.text)
            if result.action:
                return None, result.action, dict(result.fields)
        raise RuntimeError(f"consent refused: {answer.status_code} {answer.text}")

    @staticmethod
    def _split_redirect(location: str) -> tuple[str, dict[str, str]]:
        split = urllib.parse.urlsplit(location)
        raw = split.fragment if split.fragment and not split.query else split.query
        params = dict(urllib.parse.parse_qsl(raw, keep_blank_values=True))
        base = urllib.parse.urlunsplit((split.scheme, split.netloc, split.path, "", ""))
        return base, params

    def handle(self, request: Request) -> Response:
        """Route one HTTP request."""
        self.stats.incr("http")
        path = request.path
        if path == "/v1.0" or path.startswith("/v1.0/"):
            return self._handle_graph(request)
        parts = [part for part in path.split("/") if part]
        if parts == ["common", "discovery", "instance"] and request.method == "GET":
            return self._identity("discovery", lambda: self._instance_discovery(request))
        if len(parts) >= 2:
            tenant, rest = parts[0], parts[1:]
            routes: dict[tuple[str, tuple[str, ...]], tuple[str, Callable[[], Response]]] = {
                ("GET", ("v2.0", ".well-known", "openid-configuration")): (
                    "discovery",
                    lambda: self._openid_configuration(tenant),
                ),
                ("GET", ("discovery", "v2.0", "keys")): (
                    "discovery",
                    lambda: json_response({"keys": []}),
                ),
                ("GET", ("oauth2", "v2.0", "authorize")): (
                    "authorize",
                    lambda: self._authorize_page(request, tenant),
                ),
                ("POST", ("oauth2", "v2.0", "consent")): (
                    "consent",
                    lambda: self._consent(request, tenant),
                ),
                ("POST", ("oauth2", "v2.0", "token")): (
                    "token",
                    lambda: self._token(request, tenant),
                ),
            }
            route = routes.get((request.method, tuple(rest)))
            if route is not None:
                if not self._known_tenant(tenant):
                    return _aad_error(
                        400,
                        "invalid_tenant",
                        90002,
                        f"Tenant '{tenant}' not found. Check to make sure you have the "
                        "correct tenant ID and are signing into the correct cloud.",
                    )
                return self._identity(*route)
        return json_response(
            {"error": "not_found", "error_description": f"fake: no route for {path}"}, 404
        )
