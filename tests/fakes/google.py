"""Fake Google OAuth 2.0 + Calendar API v3 server for tests (and manual runs).

It is a real HTTP server on 127.0.0.1 that the real client libraries talk to:
``google_auth_oauthlib.flow.Flow`` (consent + code exchange with PKCE),
``google.oauth2.credentials.Credentials`` (refresh), ``googleapiclient`` built with
``static_discovery=True`` and ``client_options={"api_endpoint": fake.api_endpoint}``,
and ``googleapiclient.http.BatchHttpRequest(batch_uri=fake.batch_uri)``.

Endpoints (``url`` is ``http://127.0.0.1:PORT``)::

    GET  /o/oauth2/auth           consent page (HTML form)
    POST /o/oauth2/approve        consent form target -> 302 to redirect_uri
    POST /token                   authorization_code and refresh_token grants
    POST /revoke                  token in form body or query
    GET  /oauth2/v3/userinfo      {sub, email, email_verified} for a bearer token
    GET  /oauth2/v1/certs         PEM keys that sign id_tokens (openid scope)
    *    /calendar/v3/...         Calendar API (api_endpoint = url + "/calendar/v3/")
    POST /batch/calendar/v3       multipart/mixed batch of Calendar API calls

Client-library facts this fake is built around (verified against the installed
versions):

* ``client_options.api_endpoint`` replaces ``rootUrl + servicePath`` *entirely*
  (``googleapiclient.discovery.build_from_document``), so it must include
  ``/calendar/v3/``; giving just the host sends requests to ``/calendars/...``,
  which this fake answers with a 404 that says so.
* ``service.new_batch_http_request()`` uses the discovery document's rootUrl and
  ignores ``api_endpoint``; build ``BatchHttpRequest(batch_uri=fake.batch_uri)``.
* ``BatchHttpRequest`` parses each response part's ``Content-ID`` as
  ``<anything + id>`` and splits the embedded response on the first ``"\\n"``
  (status line) and the first ``"\\r\\n\\r\\n"`` (end of headers), so parts are
  written with CRLF and always carry at least one header.
* oauthlib refuses ``http://`` token URLs unless ``OAUTHLIB_INSECURE_TRANSPORT=1``
  is set, and raises ``Warning("Scope has changed ...")`` when fewer scopes are
  granted than requested unless ``OAUTHLIB_RELAX_TOKEN_SCOPE=1`` is set.
* httplib2 re-sends a request once when a kept-alive connection closes without a
  response (it assumes the connection was stale), so a "committed but lost" write
  is silently replayed; see ``Faults.drop_mode``.

Semantics worth knowing (modelled on Google's documented behaviour):

* A refresh token is issued only for ``access_type=offline``, and, like Google,
  only on the first consent of a user for a client unless ``prompt=consent``.
* Event ``start``/``end`` are read back normalised: ``dateTime`` rendered with an
  offset in the event's ``timeZone`` when one was given, else in the calendar's
  time zone (``Z`` for UTC); fractional seconds dropped.
* Deleting an event makes it ``status: cancelled`` (still returned by
  ``events.get``; listed only with ``showDeleted`` or ``updatedMin``/``syncToken``);
  its id stays taken (insert -> 409 ``duplicate``); ``update``/``patch`` with
  ``status: confirmed`` restores it.
* Scopes: ``calendar`` allows everything, ``calendar.events`` allows events on any
  of the user's calendars but not calendar management, ``calendar.app.created``
  allows creating calendars and touching only calendars created by the same OAuth
  client (403 ``insufficientPermissions`` otherwise, including ``primary``).
* Not modelled: recurrence expansion (``singleEvents`` is accepted, recurring
  events come back as their master), sharing/ACLs, attendees' copies, watch
  channels, ``events.import``/``move``/``quickAdd``/``instances``.
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import email.message
import email.parser
import functools
import hashlib
import html
import http
import json
import secrets
import signal
import sys
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from tests.fakes.faults import Fault, Faults, Stats, run_with_fault
from tests.fakes.server import (
    FakeHTTPServer,
    HTTPError,
    Request,
    Response,
    html_response,
    json_response,
    parse_target,
    redirect,
)

SCOPE_CALENDAR = "https://www.googleapis.com/auth/calendar"
SCOPE_CALENDAR_READONLY = "https://www.googleapis.com/auth/calendar.readonly"
SCOPE_EVENTS = "https://www.googleapis.com/auth/calendar.events"
SCOPE_EVENTS_READONLY = "https://www.googleapis.com/auth/calendar.events.readonly"
SCOPE_EVENTS_OWNED = "https://www.googleapis.com/auth/calendar.events.owned"
SCOPE_EVENTS_OWNED_READONLY = "https://www.googleapis.com/auth/calendar.events.owned.readonly"
SCOPE_APP_CREATED = "https://www.googleapis.com/auth/calendar.app.created"
SCOPE_CALENDARS = "https://www.googleapis.com/auth/calendar.calendars"
SCOPE_CALENDARS_READONLY = "https://www.googleapis.com/auth/calendar.calendars.readonly"
SCOPE_CALENDARLIST = "https://www.googleapis.com/auth/calendar.calendarlist"
SCOPE_CALENDARLIST_READONLY = "https://www.googleapis.com/auth/calendar.calendarlist.readonly"

API_PREFIX = "/calendar/v3"
BATCH_PATHS = ("/batch/calendar/v3", "/batch")
DEFAULT_CLIENT_ID = "test-client"
DEFAULT_CLIENT_SECRET = "test-secret"
DEFAULT_REDIRECT_URI = "http://127.0.0.1:8000/api/calendar/google/callback"

_EVENT_ID_ALPHABET = "0123456789abcdefghijklmnopqrstuv"  # base32hex, lowercase
_READ_OPS = frozenset(
    {"calendars.get", "calendarList.list", "calendarList.get", "events.get", "events.list"}
)
_EVENT_WRITE_SCOPES = frozenset({SCOPE_CALENDAR, SCOPE_EVENTS, SCOPE_EVENTS_OWNED})
_EVENT_READ_SCOPES = _EVENT_WRITE_SCOPES | {
    SCOPE_CALENDAR_READONLY,
    SCOPE_EVENTS_READONLY,
    SCOPE_EVENTS_OWNED_READONLY,
}
_CAL_WRITE_SCOPES = frozenset({SCOPE_CALENDAR, SCOPE_CALENDARS})
_CAL_READ_SCOPES = _CAL_WRITE_SCOPES | {SCOPE_CALENDAR_READONLY, SCOPE_CALENDARS_READONLY}
_LIST_SCOPES = frozenset(
    {SCOPE_CALENDAR, SCOPE_CALENDAR_READONLY, SCOPE_CALENDARLIST, SCOPE_CALENDARLIST_READONLY}
)
# Fields of an event resource that only the server sets.
_SERVER_EVENT_FIELDS = frozenset(
    {"kind", "etag", "id", "htmlLink", "created", "updated", "creator", "organizer", "sequence"}
)
_STATUS_NAMES = {
    400: "INVALID_ARGUMENT",
    401: "UNAUTHENTICATED",
    403: "PERMISSION_DENIED",
    404: "NOT_FOUND",
    409: "ALREADY_EXISTS",
    410: "NOT_FOUND",
    412: "FAILED_PRECONDITION",
    429: "RESOURCE_EXHAUSTED",
    500: "INTERNAL",
    503: "UNAVAILABLE",
}


# ------------------------------------------------------------------------ error shapes


class ApiError(Exception):
    """A Calendar API error, rendered in Google's JSON error format."""

    def __init__(
        self,
        status: int,
        reason: str,
        message: str,
        *,
        domain: str = "global",
        headers: dict[str, str] | None = None,
        location: str | None = None,
    ) -> None:
        """Describe the error; ``reason`` lands in ``error.errors[0].reason``."""
        super().__init__(f"{status} {reason}: {message}")
        self.status = status
        self.reason = reason
        self.message = message
        self.domain = domain
        self.headers = headers or {}
        self.location = location

    def response(self) -> Response:
        """Render as a response."""
        detail: dict[str, Any] = {
            "domain": self.domain,
            "reason": self.reason,
            "message": self.message,
        }
        if self.location:
            detail.update(location=self.location, locationType="header")
        body = {
            "error": {
                "code": self.status,
                "message": self.message,
                "errors": [detail],
                "status": _STATUS_NAMES.get(self.status, "UNKNOWN"),
            }
        }
        return json_response(body, self.status, self.headers)


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


# ------------------------------------------------------------------------------ state


@dataclass
class OAuthClient:
    """A registered OAuth client."""

    client_id: str
    client_secret: str
    redirect_uris: list[str]


@dataclass
class _AuthCode:
    code: str
    client_id: str
    redirect_uri: str
    email: str
    scopes: tuple[str, ...]
    offline: bool
    force_consent: bool
    code_challenge: str | None
    code_challenge_method: str | None
    nonce: str | None
    expires_at: float
    used: bool = False


@dataclass
class _Grant:
    grant_id: str
    client_id: str
    email: str
    scopes: tuple[str, ...]
    refresh_token: str | None
    created_at: float
    revoked: bool = False


@dataclass
class _AccessToken:
    token: str
    grant: _Grant
    scopes: tuple[str, ...]
    expires_at: float


@dataclass
class _User:
    email: str
    time_zone: str
    sub: str


@dataclass
class _When:
    """An event start/end: either an all-day ``date`` or an instant."""

    date: str | None = None
    instant: datetime | None = None
    time_zone: str | None = None

    def sort_key(self, cal_tz: ZoneInfo) -> datetime:
        """The instant this point in time denotes (all-day: midnight in ``cal_tz``)."""
        if self.instant is not None:
            return self.instant
        assert self.date is not None
        return datetime.combine(date.fromisoformat(self.date), datetime.min.time(), cal_tz)

    def render(self, cal_tz: ZoneInfo) -> dict[str, str]:
        """Render as Google does: offset form in the event's or calendar's zone."""
        if self.date is not None:
            out = {"date": self.date}
        else:
            assert self.instant is not None
            zone = ZoneInfo(self.time_zone) if self.time_zone else cal_tz
            text = self.instant.astimezone(zone).isoformat(timespec="seconds")
            out = {
                "dateTime": text.removesuffix("+00:00") + "Z" if text.endswith("+00:00") else text
            }
        if self.time_zone:
            out["timeZone"] = self.time_zone
        return out


@dataclass
class _Event:
    calendar_id: str
    data: dict[str, Any]
    start: _When
    end: _When
    seq: int
    mod: int


@dataclass
class _Calendar:
    id: str
    owner: str
    summary: str
    time_zone: str
    created_by_client: str | None
    primary: bool
    etag: str
    description: str | None = None
    location: str | None = None
    events: dict[str, _Event] = field(default_factory=dict)

    @property
    def tz(self) -> ZoneInfo:
        """The calendar's zone."""
        return ZoneInfo(self.time_zone)

    def resource(self) -> dict[str, Any]:
        """The ``calendar#calendar`` resource."""
        out: dict[str, Any] = {
            "kind": "calendar#calendar",
            "etag": self.etag,
            "id": self.id,
            "summary": self.summary,
            "timeZone": self.time_zone,
            "conferenceProperties": {"allowedConferenceSolutionTypes": ["hangoutsMeet"]},
        }
        if self.description is not None:
            out["description"] = self.description
        if self.location is not None:
            out["location"] = self.location
        return out


@dataclass
class _Auth:
    email: str
    client_id: str
    scopes: frozenset[str]


@dataclass
class ApiCall:
    """One Calendar API call as seen by the fake (direct or batch member)."""

    op: str
    method: str
    path: str
    status: int
    in_batch: bool
    email: str | None


# --------------------------------------------------------------------------- helpers


def _random_id(length: int = 26) -> str:
    return "".join(secrets.choice(_EVENT_ID_ALPHABET) for _ in range(length))


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _rfc3339_ms(ts: float) -> str:
    moment = datetime.fromtimestamp(ts, UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


def _parse_rfc3339(value: str, param: str) -> datetime:
    """Parse a timestamp that must carry an offset (Google rejects naive ones)."""
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        parsed = None
    if parsed is None or parsed.tzinfo is None:
        raise ApiError(400, "badRequest", f"Bad Request: {param} must be RFC3339 with offset")
    return parsed


def _merge_patch(target: dict[str, Any], patch: dict[str, Any]) -> None:
    # Google patch semantics: nested objects merge, arrays and scalars replace,
    # an explicit null clears the field.
    for key, value in patch.items():
        if value is None:
            target.pop(key, None)
        elif isinstance(value, dict) and isinstance(target.get(key), dict):
            _merge_patch(target[key], value)
        else:
            target[key] = json.loads(json.dumps(value))


def _parse_fields(spec: str) -> dict[str, Any]:
    """Parse a partial-response ``fields`` selector (``a,b(c,d),e/f``) into a tree."""
    pos = 0

    def parse_list() -> dict[str, Any]:
        nonlocal pos
        tree: dict[str, Any] = {}
        while pos < len(spec):
            start = pos
            while pos < len(spec) and spec[pos] not in ",()":
                pos += 1
            path = [part.strip() for part in spec[start:pos].split("/") if part.strip()]
            sub: Any = None
            if pos < len(spec) and spec[pos] == "(":
                pos += 1
                sub = parse_list()
                pos += 1  # the closing ")"
            if path:
                node = tree
                for name in path[:-1]:
                    child = node.get(name)
                    if not isinstance(child, dict):
                        child = node[name] = {}
                    node = child
                node[path[-1]] = sub
            if pos < len(spec) and spec[pos] == ",":
                pos += 1
                continue
            if pos < len(spec) and spec[pos] == ")":
                return tree
        return tree

    return parse_list()


def _apply_fields(value: Any, tree: dict[str, Any] | None) -> Any:
    if tree is None or "*" in tree:
        return value
    if isinstance(value, list):
        return [_apply_fields(item, tree) for item in value]
    if isinstance(value, dict):
        return {key: _apply_fields(value[key], sub) for key, sub in tree.items() if key in value}
    return value


# --------------------------------------------------------------------------- the fake


class FakeGoogle(FakeHTTPServer):
    """Fake Google OAuth 2.0 and Calendar API v3 server (see module docstring)."""

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

    # ---------------------------------------------------------------- endpoints

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

    # ------------------------------------------------------------ test controls

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

    # --------------------------------------------------------------- dispatch

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

    def _api_fault_response(self, fault: Fault) -> Response:
        status = fault.status or 500
        headers = {}
        if fault.retry_after is not None:
            headers["Retry-After"] = str(int(fault.retry_after))
        if fault.kind == "rate_limit":
            return ApiError(
                429,
                "rateLimitExceeded",
                "Rate Limit Exceeded",
                domain="usageLimits",
                headers=headers,
            ).response()
        if fault.kind == "quota":
            return ApiError(
                403,
                "rateLimitExceeded",
                "Rate Limit Exceeded",
                domain="usageLimits",
                headers=headers,
            ).response()
        message = "Backend Error" if status >= 500 else http.HTTPStatus(status).phrase
        reason = "backendError" if status >= 500 else "injectedError"
        return ApiError(status, reason, message, headers=headers).response()

    # ----------------------------------------------------------------- OAuth

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

    # ------------------------------------------------------- grants and users

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

    # ------------------------------------------------------------ Calendar API

    def _api_call(self, request: Request, *, in_batch: bool) -> Response:
        op = "unknown"
        email = None
        try:
            op, handler, args = self._route(request)
            with self._lock:
                auth = self._authenticate(request)
                email = auth.email
                response = handler(request, auth, *args)
        except ApiError as exc:
            response = exc.response()
        except HTTPError as exc:
            response = exc.response
        self.stats.incr(op)
        with self._lock:
            self.calls.append(
                ApiCall(op, request.method, request.path, response.status, in_batch, email)
            )
        fields = request.param("fields")
        if fields and response.status == 200 and response.body:
            body = _apply_fields(json.loads(response.body), _parse_fields(fields))
            response = json_response(body, 200, response.headers)
        return response

    def _route(self, request: Request) -> tuple[str, Callable[..., Response], tuple[str, ...]]:
        raw = request.raw_path[len(API_PREFIX) :].strip("/")
        parts = [urllib.parse.unquote(p) for p in raw.split("/")] if raw else []
        method = request.method
        table: dict[tuple[int, str], tuple[str, Callable[..., Response]]] = {}
        if parts[:1] == ["calendars"]:
            table = {
                (1, "POST"): ("calendars.insert", self._calendars_insert),
                (2, "GET"): ("calendars.get", self._calendars_get),
                (2, "DELETE"): ("calendars.delete", self._calendars_delete),
                (2, "PATCH"): ("calendars.patch", self._calendars_patch),
                (2, "PUT"): ("calendars.update", self._calendars_update),
            }
            if len(parts) >= 3 and parts[2] == "events":
                table = {
                    (3, "GET"): ("events.list", self._events_list),
                    (3, "POST"): ("events.insert", self._events_insert),
                    (4, "GET"): ("events.get", self._events_get),
                    (4, "PUT"): ("events.update", self._events_update),
                    (4, "PATCH"): ("events.patch", self._events_patch),
                    (4, "DELETE"): ("events.delete", self._events_delete),
                }
            entry = table.get((len(parts), method))
            if entry is not None:
                args = tuple(p for i, p in enumerate(parts) if i in (1, 3))
                return entry[0], entry[1], args
        if parts[:3] == ["users", "me", "calendarList"]:
            if len(parts) == 3 and method == "GET":
                return "calendarList.list", self._calendar_list, ()
            if len(parts) == 4 and method == "GET":
                return "calendarList.get", self._calendar_list_get, (parts[3],)
        raise ApiError(404, "notFound", f"Not Found: {method} {request.path}")

    def _check_scope(self, auth: _Auth, op: str, cal: _Calendar | None) -> None:
        scopes = auth.scopes
        read = op in _READ_OPS
        if op.startswith("events."):
            allowed = _EVENT_READ_SCOPES if read else _EVENT_WRITE_SCOPES
        elif op.startswith("calendarList."):
            allowed = _LIST_SCOPES
        else:
            allowed = _CAL_READ_SCOPES if read else _CAL_WRITE_SCOPES
        if scopes & allowed:
            return
        if SCOPE_APP_CREATED in scopes and (
            op == "calendars.insert"
            or op == "calendarList.list"
            or (cal is not None and cal.created_by_client == auth.client_id)
        ):
            return
        raise ApiError(
            403,
            "insufficientPermissions",
            "Request had insufficient authentication scopes.",
        )

    def _calendar(self, auth: _Auth, calendar_id: str, op: str) -> _Calendar:
        cal_id = auth.email if calendar_id == "primary" else calendar_id
        cal = self._calendars.get(cal_id)
        if cal is None or cal.owner != auth.email:
            # Scope errors win over existence, as with Google: an app.created token
            # learns nothing about calendars it may not touch.
            self._check_scope(auth, op, None)
            raise ApiError(404, "notFound", "Not Found")
        self._check_scope(auth, op, cal)
        return cal

    def _next_etag(self) -> str:
        self._mod += 1
        return f'"{self._mod}"'

    # calendars -----------------------------------------------------------------

    def _calendars_insert(self, request: Request, auth: _Auth) -> Response:
        self._check_scope(auth, "calendars.insert", None)
        body = request.json()
        if not isinstance(body, dict) or not body.get("summary"):
            raise ApiError(400, "required", "Missing title.")
        time_zone = body.get("timeZone") or self._users[auth.email].time_zone
        self._check_time_zone(time_zone, "timeZone")
        cal = _Calendar(
            id=f"c_{_random_id(40)}@group.calendar.google.com",
            owner=auth.email,
            summary=str(body["summary"]),
            time_zone=time_zone,
            created_by_client=auth.client_id,
            primary=False,
            etag=self._next_etag(),
            description=body.get("description"),
            location=body.get("location"),
        )
        self._calendars[cal.id] = cal
        return json_response(cal.resource())

    def _calendars_get(self, request: Request, auth: _Auth, calendar_id: str) -> Response:
        return json_response(self._calendar(auth, calendar_id, "calendars.get").resource())

    def _calendars_delete(self, request: Request, auth: _Auth, calendar_id: str) -> Response:
        cal = self._calendar(auth, calendar_id, "calendars.delete")
        if cal.primary:
            raise ApiError(400, "cannotDeletePrimaryCalendar", "Cannot delete primary calendar.")
        del self._calendars[cal.id]
        return Response(204, b"", {})

    def _calendars_patch(self, request: Request, auth: _Auth, calendar_id: str) -> Response:
        return self._calendars_write(request, auth, calendar_id, "calendars.patch")

    def _calendars_update(self, request: Request, auth: _Auth, calendar_id: str) -> Response:
        return self._calendars_write(request, auth, calendar_id, "calendars.update")

    def _calendars_write(
        self, request: Request, auth: _Auth, calendar_id: str, op: str
    ) -> Response:
        cal = self._calendar(auth, calendar_id, op)
        body = request.json()
        if op == "calendars.update" and not body.get("summary"):
            raise ApiError(400, "required", "Missing title.")
        if body.get("summary"):
            cal.summary = str(body["summary"])
        if body.get("timeZone"):
            self._check_time_zone(body["timeZone"], "timeZone")
            cal.time_zone = body["timeZone"]
        for attr in ("description", "location"):
            if attr in body or op == "calendars.update":
                setattr(cal, attr, body.get(attr))
        cal.etag = self._next_etag()
        return json_response(cal.resource())

    def _calendar_list(self, request: Request, auth: _Auth) -> Response:
        self._check_scope(auth, "calendarList.list", None)
        only_app = not (auth.scopes & _LIST_SCOPES)
        items = []
        for cal in self._calendars.values():
            if cal.owner != auth.email:
                continue
            if only_app and cal.created_by_client != auth.client_id:
                continue
            items.append(self._list_entry(cal))
        items.sort(key=lambda item: not item.get("primary", False))
        return json_response(
            {"kind": "calendar#calendarList", "etag": self._next_etag(), "items": items}
        )

    def _calendar_list_get(self, request: Request, auth: _Auth, calendar_id: str) -> Response:
        cal = self._calendar(auth, calendar_id, "calendarList.get")
        return json_response(self._list_entry(cal))

    @staticmethod
    def _list_entry(cal: _Calendar) -> dict[str, Any]:
        entry = cal.resource() | {"kind": "calendar#calendarListEntry", "accessRole": "owner"}
        if cal.primary:
            entry["primary"] = True
        return entry

    @staticmethod
    def _check_time_zone(name: str, param: str) -> None:
        try:
            ZoneInfo(str(name))
        except (ZoneInfoNotFoundError, ValueError) as exc:
            raise ApiError(400, "invalid", f"Invalid time zone definition for {param}.") from exc

    # events --------------------------------------------------------------------

    def _render_event(self, cal: _Calendar, event: _Event) -> dict[str, Any]:
        out = json.loads(json.dumps(event.data))
        out["start"] = event.start.render(cal.tz)
        out["end"] = event.end.render(cal.tz)
        return out

    def _parse_when(self, value: Any, which: str) -> _When:
        if not isinstance(value, dict) or not (value.get("date") or value.get("dateTime")):
            raise ApiError(400, "required", f"Missing {which} time.")
        tz_name = value.get("timeZone") or None
        if tz_name is not None:
            self._check_time_zone(tz_name, f"{which} time")
        if value.get("date"):
            try:
                day = date.fromisoformat(str(value["date"]))
            except ValueError as exc:
                raise ApiError(400, "invalid", f"Invalid {which} time.") from exc
            return _When(date=day.isoformat(), time_zone=tz_name)
        try:
            moment = datetime.fromisoformat(str(value["dateTime"]))
        except ValueError as exc:
            raise ApiError(400, "invalid", f"Invalid {which} time.") from exc
        if moment.tzinfo is None:
            if tz_name is None:
                raise ApiError(400, "required", f"Missing time zone definition for {which} time.")
            moment = moment.replace(tzinfo=ZoneInfo(tz_name))
        return _When(instant=moment.replace(microsecond=0).astimezone(UTC), time_zone=tz_name)

    def _check_range(self, start: _When, end: _When, cal: _Calendar) -> None:
        if (start.date is None) != (end.date is None):
            raise ApiError(
                400, "invalid", "Start and end times must either both be date or both be dateTime."
            )
        tz = cal.tz
        if end.sort_key(tz) < start.sort_key(tz) or (
            start.date is not None and end.sort_key(tz) == start.sort_key(tz)
        ):
            raise ApiError(400, "timeRangeEmpty", "The specified time range is empty.")

    def _touch(self, cal: _Calendar, event: _Event, now: str) -> None:
        event.mod = self._mod + 1
        event.data["etag"] = self._next_etag()
        event.data["updated"] = now
        cal.etag = event.data["etag"]

    def _event(self, cal: _Calendar, event_id: str) -> _Event:
        event = cal.events.get(event_id)
        if event is None:
            raise ApiError(404, "notFound", "Not Found")
        return event

    def _check_if_match(self, request: Request, event: _Event) -> None:
        wanted = request.header("If-Match")
        if wanted and wanted != "*" and wanted != event.data["etag"]:
            raise ApiError(412, "conditionNotMet", "Precondition Failed", location="If-Match")

    def _events_insert(self, request: Request, auth: _Auth, calendar_id: str) -> Response:
        cal = self._calendar(auth, calendar_id, "events.insert")
        body = request.json()
        if not isinstance(body, dict):
            raise ApiError(400, "badRequest", "Bad Request")
        event_id = body.get("id")
        if event_id is not None:
            event_id = str(event_id)
            if not (5 <= len(event_id) <= 1024) or any(
                ch not in _EVENT_ID_ALPHABET for ch in event_id
            ):
                raise ApiError(400, "invalid", "Invalid resource id value.")
            if event_id in cal.events:
                raise ApiError(409, "duplicate", "The requested identifier already exists.")
        else:
            event_id = _random_id()
        start = self._parse_when(body.get("start"), "start")
        end = self._parse_when(body.get("end"), "end")
        self._check_range(start, end, cal)
        now = _rfc3339_ms(self.clock())
        data = {k: v for k, v in body.items() if k not in _SERVER_EVENT_FIELDS | {"start", "end"}}
        eid = _b64url(f"{event_id} {cal.id}".encode())
        data.update(
            kind="calendar#event",
            id=event_id,
            status=body.get("status") or "confirmed",
            htmlLink=f"https://www.google.com/calendar/event?eid={eid}",
            created=now,
            creator={"email": auth.email, "self": True},
            organizer=self._organizer(cal),
            iCalUID=body.get("iCalUID") or f"{event_id}@google.com",
            sequence=0,
            reminders=body.get("reminders") or {"useDefault": True},
            eventType=body.get("eventType") or "default",
        )
        self._seq += 1
        event = _Event(cal.id, data, start, end, seq=self._seq, mod=0)
        self._touch(cal, event, now)
        cal.events[event_id] = event
        return json_response(self._render_event(cal, event))

    @staticmethod
    def _organizer(cal: _Calendar) -> dict[str, Any]:
        organizer: dict[str, Any] = {"email": cal.id, "self": True}
        if not cal.primary:
            organizer["displayName"] = cal.summary
        return organizer

    def _events_get(
        self, request: Request, auth: _Auth, calendar_id: str, event_id: str
    ) -> Response:
        cal = self._calendar(auth, calendar_id, "events.get")
        return json_response(self._render_event(cal, self._event(cal, event_id)))

    def _events_update(
        self, request: Request, auth: _Auth, calendar_id: str, event_id: str
    ) -> Response:
        cal = self._calendar(auth, calendar_id, "events.update")
        event = self._event(cal, event_id)
        self._check_if_match(request, event)
        body = request.json()
        if not isinstance(body, dict):
            raise ApiError(400, "badRequest", "Bad Request")
        start = self._parse_when(body.get("start"), "start")
        end = self._parse_when(body.get("end"), "end")
        self._check_range(start, end, cal)
        kept = {k: event.data[k] for k in _SERVER_EVENT_FIELDS if k in event.data}
        data = {k: v for k, v in body.items() if k not in _SERVER_EVENT_FIELDS | {"start", "end"}}
        data.update(kept)
        # A full update describes the whole event: no status means confirmed,
        # which is how a cancelled event gets restored.
        data["status"] = body.get("status") or "confirmed"
        data["iCalUID"] = event.data["iCalUID"]
        data.setdefault("reminders", {"useDefault": True})
        data.setdefault("eventType", "default")
        self._apply_write(cal, event, data, start, end)
        return json_response(self._render_event(cal, event))

    def _events_patch(
        self, request: Request, auth: _Auth, calendar_id: str, event_id: str
    ) -> Response:
        cal = self._calendar(auth, calendar_id, "events.patch")
        event = self._event(cal, event_id)
        self._check_if_match(request, event)
        body = request.json()
        if not isinstance(body, dict):
            raise ApiError(400, "badRequest", "Bad Request")
        # start/end are replaced as a whole: merging a new dateTime into an old
        # all-day {"date": ...} would produce an invalid mix.
        start = self._parse_when(body["start"], "start") if "start" in body else event.start
        end = self._parse_when(body["end"], "end") if "end" in body else event.end
        self._check_range(start, end, cal)
        data = json.loads(json.dumps(event.data))
        patch = {
            k: v
            for k, v in body.items()
            if k not in _SERVER_EVENT_FIELDS | {"start", "end", "iCalUID"}
        }
        _merge_patch(data, patch)
        data.setdefault("status", "confirmed")
        self._apply_write(cal, event, data, start, end)
        return json_response(self._render_event(cal, event))

    def _apply_write(
        self, cal: _Calendar, event: _Event, data: dict[str, Any], start: _When, end: _When
    ) -> None:
        moved = (start, end) != (event.start, event.end)
        if moved or data.get("status") != event.data.get("status"):
            data["sequence"] = int(event.data.get("sequence", 0)) + 1
        event.data, event.start, event.end = data, start, end
        self._touch(cal, event, _rfc3339_ms(self.clock()))

    def _events_delete(
        self, request: Request, auth: _Auth, calendar_id: str, event_id: str
    ) -> Response:
        cal = self._calendar(auth, calendar_id, "events.delete")
        event = self._event(cal, event_id)
        if event.data.get("status") == "cancelled":
            raise ApiError(410, "deleted", "Resource has been deleted")
        self._check_if_match(request, event)
        event.data["status"] = "cancelled"
        event.data["sequence"] = int(event.data.get("sequence", 0)) + 1
        self._touch(cal, event, _rfc3339_ms(self.clock()))
        return Response(204, b"", {})

    def _events_list(self, request: Request, auth: _Auth, calendar_id: str) -> Response:
        cal = self._calendar(auth, calendar_id, "events.list")
        q = request.query
        sync_token = request.param("syncToken")
        since = 0
        if sync_token:
            clash = {
                "iCalUID",
                "orderBy",
                "privateExtendedProperty",
                "q",
                "sharedExtendedProperty",
                "timeMin",
                "timeMax",
                "updatedMin",
            } & set(q)
            if clash:
                raise ApiError(
                    400, "invalid", f"Sync token cannot be used with {', '.join(sorted(clash))}."
                )
            since = self._decode_token(sync_token, "s")
            if since < self._sync_floor:
                raise ApiError(
                    410,
                    "fullSyncRequired",
                    "Sync token is no longer valid, a full sync is required.",
                )
        max_results = self._int_param(request, "maxResults", 250, 1)
        max_results = min(max_results, 2500)
        show_deleted = request.param("showDeleted") == "true" or bool(sync_token)
        updated_min = request.param("updatedMin")
        updated_floor = _parse_rfc3339(updated_min, "updatedMin") if updated_min else None
        if updated_floor is not None:
            # Google: with updatedMin, deletions since then are always included.
            show_deleted = True
        time_min = request.param("timeMin")
        time_max = request.param("timeMax")
        lo = _parse_rfc3339(time_min, "timeMin") if time_min else None
        hi = _parse_rfc3339(time_max, "timeMax") if time_max else None
        filters: list[tuple[str, str, str]] = []
        for kind, param in (
            ("private", "privateExtendedProperty"),
            ("shared", "sharedExtendedProperty"),
        ):
            for item in q.get(param, []):
                key, sep, value = item.partition("=")
                if not sep or not key:
                    raise ApiError(400, "invalid", f"Invalid {param} value.")
                filters.append((kind, key, value))
        ical_uid = request.param("iCalUID")
        text = (request.param("q") or "").lower()
        order_by = request.param("orderBy")
        if order_by == "startTime" and request.param("singleEvents") != "true":
            raise ApiError(
                400,
                "badRequest",
                "The requested ordering is not available for the particular query.",
            )
        tz = cal.tz

        def keep(event: _Event) -> bool:
            data = event.data
            if data.get("status") == "cancelled" and not show_deleted:
                return False
            if sync_token and event.mod <= since:
                return False
            if (
                updated_floor is not None
                and datetime.fromisoformat(data["updated"]) < updated_floor
            ):
                return False
            if lo is not None and event.end.sort_key(tz) <= lo:
                return False
            if hi is not None and event.start.sort_key(tz) >= hi:
                return False
            props = data.get("extendedProperties") or {}
            for kind, key, value in filters:
                if (props.get(kind) or {}).get(key) != value:
                    return False
            if ical_uid and data.get("iCalUID") != ical_uid:
                return False
            fields = ("summary", "description", "location")
            return not text or any(text in str(data.get(f) or "").lower() for f in fields)

        events = [e for e in cal.events.values() if keep(e)]
        page_token = request.param("pageToken")
        snapshot = self._decode_token(page_token, "m") if page_token else self._mod
        if order_by in ("startTime", "updated"):
            if order_by == "startTime":
                events.sort(key=lambda e: (e.start.sort_key(tz), e.seq))
            else:
                events.sort(key=lambda e: (e.data["updated"], e.seq))
            offset = self._decode_token(page_token, "o") if page_token else 0
            page, rest = events[offset : offset + max_results], events[offset + max_results :]
            next_token = (
                self._encode_token({"o": offset + max_results, "m": snapshot}) if rest else None
            )
        else:
            # Keyset paging by insertion order stays stable while events are
            # being written between pages (offsets would skip or repeat).
            events.sort(key=lambda e: e.seq)
            after = self._decode_token(page_token, "a") if page_token else 0
            events = [e for e in events if e.seq > after]
            page, rest = events[:max_results], events[max_results:]
            next_token = (
                self._encode_token({"a": page[-1].seq, "m": snapshot}) if rest and page else None
            )
        body: dict[str, Any] = {
            "kind": "calendar#events",
            "etag": cal.etag,
            "summary": cal.summary,
            "updated": _rfc3339_ms(self.clock()),
            "timeZone": cal.time_zone,
            "accessRole": "owner",
            "defaultReminders": [],
            "items": [self._render_event(cal, e) for e in page],
        }
        if cal.description:
            body["description"] = cal.description
        if next_token:
            body["nextPageToken"] = next_token
        else:
            body["nextSyncToken"] = self._encode_token({"s": snapshot})
        return json_response(body)

    @staticmethod
    def _encode_token(payload: dict[str, int]) -> str:
        return _b64url(json.dumps(payload, separators=(",", ":")).encode())

    @staticmethod
    def _decode_token(token: str, key: str) -> int:
        try:
            padded = token + "=" * (-len(token) % 4)
            return int(json.loads(base64.urlsafe_b64decode(padded))[key])
        except (ValueError, KeyError, TypeError) as exc:
            raise ApiError(400, "invalid", "Invalid page or sync token.") from exc

    @staticmethod
    def _int_param(request: Request, name: str, default: int, minimum: int) -> int:
        raw = request.param(name)
        if raw is None:
            return default
        try:
            value = int(raw)
        except ValueError as exc:
            raise ApiError(400, "invalid", f"Invalid value for {name}.") from exc
        if value < minimum:
            raise ApiError(400, "invalid", f"Invalid value for {name}.")
        return value

    # ------------------------------------------------------------------ batch

    def _batch(self, request: Request) -> Response:
        if request.method != "POST":
            return ApiError(405, "methodNotAllowed", "Batch requests must be POSTed.").response()
        parts = self._parse_batch(request)
        if len(parts) > self.max_batch_size:
            return ApiError(
                400,
                "badRequest",
                f"Too many requests in batch: {len(parts)} (limit {self.max_batch_size}).",
            ).response()
        self.stats.incr("batch_members", n=len(parts))
        results: list[tuple[str | None, Response]] = []
        for content_id, sub in parts:
            if not sub.path.startswith(API_PREFIX + "/"):
                results.append((content_id, self._not_found(sub)))
                continue
            # A drop fault on a member drops the whole batch connection; members
            # already processed stay committed, which is the interesting case.
            response = run_with_fault(
                self.faults.decide("batch"),
                functools.partial(self._api_call, sub, in_batch=True),
                self._api_fault_response,
                self.faults.drop_mode,
            )
            results.append((content_id, response))
        return self._batch_response(results)

    def _parse_batch(self, request: Request) -> list[tuple[str | None, Request]]:
        content_type = request.header("Content-Type") or ""
        if not content_type.lower().startswith("multipart/"):
            raise HTTPError(
                ApiError(400, "badRequest", "Batch body must be multipart/mixed.").response()
            )
        text = request.body.decode("utf-8")
        outer = email.parser.Parser().parsestr(f"Content-Type: {content_type}\r\n\r\n{text}")
        if not outer.is_multipart():
            raise HTTPError(ApiError(400, "badRequest", "Malformed batch body.").response())
        parts: list[tuple[str | None, Request]] = []
        for part in outer.get_payload():
            assert isinstance(part, email.message.Message)
            payload = part.get_payload()
            if not isinstance(payload, str):
                raise HTTPError(ApiError(400, "badRequest", "Nested multipart.").response())
            request_line, _, rest = payload.lstrip("\r\n").partition("\n")
            pieces = request_line.strip().split(" ")
            if len(pieces) < 2:
                raise HTTPError(ApiError(400, "badRequest", "Malformed batch part.").response())
            inner = email.parser.Parser().parsestr(rest)
            body = inner.get_payload()
            body_bytes = body.encode("utf-8") if isinstance(body, str) else b""
            if inner.get("Authorization") is None and request.header("Authorization"):
                inner["Authorization"] = request.header("Authorization") or ""
            target = pieces[1]
            if target.startswith(("http://", "https://")):
                split = urllib.parse.urlsplit(target)
                target = split.path + (f"?{split.query}" if split.query else "")
            content_id = part.get("Content-ID")
            parts.append(
                (
                    str(content_id) if content_id else None,
                    parse_target(pieces[0], target, inner, body_bytes),
                )
            )
        return parts

    @staticmethod
    def _batch_response(results: list[tuple[str | None, Response]]) -> Response:
        boundary = "batch_" + secrets.token_hex(12)
        chunks = []
        for content_id, response in results:
            body = response.body.decode("utf-8")
            lines = [f"--{boundary}", "Content-Type: application/http"]
            if content_id:
                lines.append(f"Content-ID: <response-{content_id.strip().strip('<>')}>")
            reason = http.HTTPStatus(response.status).phrase
            lines += ["", f"HTTP/1.1 {response.status} {reason}"]
            # googleapiclient splits the embedded response at the first CRLFCRLF,
            # so there must always be a header line, even for a bodiless 204.
            headers = dict(response.headers)
            headers["Content-Length"] = str(len(response.body))
            lines += [f"{name}: {value}" for name, value in headers.items()]
            lines += ["", body]
            chunks.append("\r\n".join(lines))
        text = "\r\n".join(chunks) + f"\r\n--{boundary}--\r\n"
        return Response(
            200, text.encode("utf-8"), {"Content-Type": f"multipart/mixed; boundary={boundary}"}
        )


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    """Makes urllib surface a redirect as an HTTPError instead of following it."""

    def redirect_request(self, *args: Any, **kwargs: Any) -> None:
        """Refuse to follow."""
        return None


# ------------------------------------------------------------------------- standalone


def main(argv: list[str] | None = None) -> int:
    """Run the fake until Ctrl-C (``python -m tests.fakes.google --port 8765``)."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8765)
    parser.add_argument("--client-id", default=DEFAULT_CLIENT_ID)
    parser.add_argument("--client-secret", default=DEFAULT_CLIENT_SECRET)
    parser.add_argument(
        "--redirect-uri", action="append", help=f"repeatable; default {DEFAULT_REDIRECT_URI}"
    )
    parser.add_argument("--time-zone", default="UTC", help="default zone for new users")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--error-rate", type=float, default=0.0)
    parser.add_argument("--rate-limit-rate", type=float, default=0.0)
    parser.add_argument("--drop-rate", type=float, default=0.0)
    parser.add_argument("--drop-after-commit-rate", type=float, default=0.0)
    parser.add_argument("--verbose", action="store_true", help="log every request")
    args = parser.parse_args(argv)

    fake = FakeGoogle(args.host, args.port, seed=args.seed, verbose=args.verbose)
    fake.default_time_zone = args.time_zone
    fake.faults.error_rate = args.error_rate
    fake.faults.rate_limit_rate = args.rate_limit_rate
    fake.faults.drop_rate = args.drop_rate
    fake.faults.drop_after_commit_rate = args.drop_after_commit_rate
    redirect_uris = args.redirect_uri or [DEFAULT_REDIRECT_URI]
    fake.register_client(args.client_id, args.client_secret, redirect_uris)
    fake.start()
    out = sys.stdout
    out.write(
        f"Fake Google listening on {fake.url}\n"
        f"  auth_uri      {fake.auth_uri}\n"
        f"  token_uri     {fake.token_uri}\n"
        f"  revoke_uri    {fake.revoke_uri}\n"
        f"  api_endpoint  {fake.api_endpoint}\n"
        f"  batch_uri     {fake.batch_uri}\n"
        f"  client_id     {args.client_id}\n"
        f"  client_secret {args.client_secret}\n"
        f"  redirect_uris {' '.join(redirect_uris)}\n"
        "Set OAUTHLIB_INSECURE_TRANSPORT=1 in the app (http:// token URL). Ctrl-C stops.\n"
    )
    out.flush()

    def on_term(signum: int, frame: Any) -> None:
        raise KeyboardInterrupt

    # SIGTERM (e.g. from a test harness or `kill`) stops as cleanly as Ctrl-C.
    signal.signal(signal.SIGTERM, on_term)
    with contextlib.suppress(KeyboardInterrupt):
        while True:
            time.sleep(3600)
    fake.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
