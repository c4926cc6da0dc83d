"""Fake Microsoft identity platform (v2.0) + Microsoft Graph v1.0 calendar server.

A real HTTP server on 127.0.0.1 (built on ``tests.fakes.server``) that the REAL
``msal`` library and plain ``requests`` calls to Graph talk to, for tests and manual
runs (``python -m tests.fakes.microsoft --port 8766``).

Pointing msal at the fake
-------------------------
msal (checked against 1.39) only accepts an ``https://<host>/<tenant>`` authority:
``msal.authority.canonicalize`` raises ``ValueError`` for any other scheme, even with
``instance_discovery=False, validate_authority=False``, and it parses the *discovered*
``token_endpoint`` (and every cached token's endpoint) the same way.  So an
``http://127.0.0.1:PORT/<tenant>`` authority is impossible.  Instead the app keeps a
normal https authority and tests inject an HTTP client that routes that host to the
fake::

    with FakeMicrosoft() as fake:
        fake.register_client("test-client", "test-secret", [redirect_uri])
        app = msal.ConfidentialClientApplication(
            "test-client", client_credential="test-secret", **fake.msal_kwargs("common")
        )

``fake.msal_kwargs(tenant)`` is exactly::

    {"authority": f"{fake.authority_host}/{tenant}",   # https://login.microsoftonline.com/common
     "instance_discovery": False,
     "validate_authority": False,
     "http_client": fake.loopback_http_client()}

``loopback_http_client()`` is a ``requests.Session`` subclass (``LoopbackSession``)
that rewrites ``https://login.microsoftonline.com`` (``authority_host``, configurable in
the constructor) and ``https://graph.microsoft.com`` to ``fake.url``.  App settings:
``MICROSOFT_AUTHORITY_HOST = fake.authority_host`` (unchanged default),
``GRAPH_ENDPOINT = fake.graph_endpoint`` (``{url}/v1.0``), plus the injected
``http_client``.  Leaving ``instance_discovery`` at its default also works (the fake
answers ``/common/discovery/instance``).

The discovery document advertises the *loopback* ``authorization_endpoint`` (msal
never parses that one), so the ``auth_uri`` msal builds can be opened by a real
browser; the ``token_endpoint`` stays on the https authority host.

msal facts this fake is built around
------------------------------------
* Client secret goes in the form body (``client_secret_post``); Basic auth is also
  accepted.  msal always sends ``client_info=1`` (authorize and token requests) and
  only creates a cache *account* (``get_accounts()``) when the token response has
  ``client_info`` (base64url JSON ``{"uid": oid, "utid": tid}``); the fake returns it.
* msal sends ``nonce=sha256(flow nonce)`` in the authorize request and raises unless
  the id_token's ``nonce`` claim equals that value; it decodes but never verifies the
  id_token (signed here with HS256 and the client secret).  Claims: ``aud`` (client
  id), ``iss`` (``{authority_host}/{tid}/v2.0``), ``iat``/``nbf``/``exp``, ``nonce``,
  ``oid``, ``sub``, ``tid``, ``preferred_username``, ``name``, ``email``, ``ver``.
* msal adds ``openid profile offline_access`` to every request; a refresh token is only
  issued when ``offline_access`` was granted, an id_token only with ``openid``.
* ``acquire_token_silent`` treats a cached access token as expired when fewer than 300
  seconds remain (computed from ``expires_in`` at issue time), so a lifetime under
  300 s (``fake.access_token_lifetime``) makes every silent call refresh.
  ``expire_access_tokens()`` only affects the fake (Graph then answers 401); msal
  refreshes only when *it* thinks the token expired, or with ``force_refresh=True``.
* msal's ``ThrottledHttpClient`` caches HTTP 400 token responses for 60 s and 429/5xx
  for ``Retry-After``, so an identical failing refresh is not re-sent within that time.
* ``initiate_auth_code_flow`` warns (``UserWarning``) unless ``response_mode="form_post"``;
  the fake supports ``query`` (default), ``fragment`` and ``form_post``.

Identity endpoints (``{tenant}``: ``common``, ``organizations``, ``consumers`` or the
fake's ``tenant_id``)::

    GET  /{tenant}/v2.0/.well-known/openid-configuration
    GET  /{tenant}/oauth2/v2.0/authorize      consent page (HTML form)
    POST /{tenant}/oauth2/v2.0/consent        consent form target (Accept / Cancel)
    POST /{tenant}/oauth2/v2.0/token          authorization_code, refresh_token grants
    GET  /{tenant}/discovery/v2.0/keys        empty JWKS
    GET  /common/discovery/instance           instance discovery metadata

Graph (``Authorization: Bearer`` required; ``/users/{oid-or-upn}/...`` works like
``/me/...`` for the token's own user)::

    GET    /v1.0/me
    GET    /v1.0/me/calendars                 $top $skip $select $filter=name eq '..'
    POST   /v1.0/me/calendars                 {"name"}; duplicate name -> 409 ErrorFolderExists
    GET|PATCH|DELETE /v1.0/me/calendars/{id}
    GET    /v1.0/me/calendar                  default calendar ("Calendar")
    GET|POST /v1.0/me/calendars/{id}/events   (also /me/calendar/events)
    GET|POST /v1.0/me/events                  list: default calendar only (like Graph)
    GET|PATCH|DELETE /v1.0/me/events/{id}     (also /me/calendars/{id}/events/{id})
    GET    /v1.0/me/calendarView, /me/calendars/{id}/calendarView
                                              ?startDateTime=..&endDateTime=.. (required)
    POST   /v1.0/$batch                       JSON batching, max 20 members, dependsOn

Event list options: ``$top`` (default 10, max 1000), ``$skip``, ``@odata.nextLink``
(absolute URL at the fake, ``$skip`` based), ``$select``, ``$orderby``
(``start/dateTime``, ``end/dateTime``, ``createdDateTime``, ``lastModifiedDateTime``,
``subject``; ``asc``/``desc``), ``$count=true``, ``$expand`` and ``$filter``.
``$filter`` is one or more clauses joined with ``and``:

* ``singleValueExtendedProperties/Any(ep: ep/id eq '{id}' and ep/value eq '{v}')``,
  ``... and ep/value ne '{v}')``, ``... and ep/value ne null)``,
  ``... and contains(ep/value, '{v}'))``, ``... and startswith(ep/value, '{v}'))``
  (the documented forms; value comparison is case-insensitive, the property Name
  case-sensitive; an ``Any`` with only the id clause is rejected with 400
  ``ErrorInvalidUrlQueryFilter``, since Graph documents no such form);
* ``start/dateTime`` / ``end/dateTime`` with ``eq ne gt ge lt le`` and a quoted
  ISO date-time (UTC unless it has an offset);
* ``subject``, ``transactionId``, ``iCalUId``, ``showAs`` with ``eq``/``ne``.

``$expand=singleValueExtendedProperties($filter=id eq '{id}')`` (several ids joined
with ``or``) adds the matching properties; without it events carry no extended
properties, like Graph.  The key is left out when nothing matches.

Event semantics (modelled on Graph):

* ``start``/``end`` are read back as ``{"dateTime": "2026-03-08T09:00:00.0000000",
  "timeZone": "UTC"}`` whatever zone was sent (IANA names, ``UTC`` and a few Windows
  names accepted; others -> 400 ``TimeZoneNotSupportedException``), or in the zone of a
  ``Prefer: outlook.timezone="..."`` header; the sent zones are kept in
  ``originalStartTimeZone``/``originalEndTimeZone``.  End before start -> 400.
* A ``text`` body is stored and returned as ``contentType: html`` wrapped in an HTML
  document (``Prefer: outlook.body-content-type="text"`` returns text); ``bodyPreview``
  is the plain text.
* ``transactionId``: a POST whose ``transactionId`` matches an event that still exists
  in the same mailbox returns that event (201) instead of creating a duplicate; it
  cannot be changed by PATCH.  ``transactionId`` is returned only when set.
* Every event has a long opaque ``id``, ``changeKey`` and ``@odata.etag``
  (``W/"<changeKey>"``, new on every change), ``iCalUId``, ``webLink``,
  ``createdDateTime``, ``lastModifiedDateTime`` and Graph's defaults (``showAs: busy``,
  ``isReminderOn: true`` ...).  ``If-Match`` on PATCH/DELETE -> 412
  ``ErrorIrresolvableConflict`` on mismatch.  Unknown body properties -> 400
  ``RequestBodyRead``; ids that are not Graph-shaped -> 400 ``ErrorInvalidIdMalformed``;
  unknown ids -> 404 ``ErrorItemNotFound``.

Faults (``fake.faults``, see ``faults.Faults``; seeded, thread-safe).  Targets:
``"graph"`` (direct Graph calls) and ``"batch"`` (each ``$batch`` member) by default;
add ``"batch_envelope"`` (the ``$batch`` request as a whole), ``"token"``,
``"authorize"`` or ``"discovery"`` to ``faults.targets`` to fault those too.  In a
batch, an error fault becomes that member's status (429 carries ``Retry-After`` in
the member's headers, the envelope stays 200); a drop fault drops the whole
connection, members before it stay committed (``drop_after_commit``: that member
too).  Error statuses default to 500/503/504.

Counters (``fake.stats``, ``reset_stats()``): ``http`` (every request); ``graph``
(direct Graph requests); ``graph_round_trips`` (direct + ``$batch`` envelopes: a batch
is one round trip); ``batch``; ``batch_members``; ``graph_ops`` (operations that
reached a handler, direct or batch member, i.e. not answered by an injected fault)
and one counter per operation (``me.get``, ``calendars.list|get|create|update|delete``,
``events.list|get|create|update|delete``, ``calendarView.list``; ``unknown`` when the
token was refused first); ``discovery``, ``authorize``, ``consent``, ``token``,
``token:<grant_type>``.  Every Graph operation is also logged in ``fake.calls``
(``GraphCall(op, method, path, status, in_batch, email)``).

Test API (``FakeMicrosoft``): ``register_client``, ``add_user``, ``revoke_grants``,
``expire_access_tokens``, ``access_token_lifetime`` (seconds), ``access_token()`` (a
Graph token without the OAuth dance), ``consent`` / ``consent_params`` /
``consent_exchange`` (drive the consent page over HTTP), ``calendars``, ``events``,
``put_event`` / ``edit_event`` / ``remove_event`` (changes "made in Outlook"),
``faults``, ``fail_next``, ``stats``, ``calls``, ``clock`` (injectable time source).

Not modelled: recurrence expansion, attendees and meeting responses, other users'
mailboxes, delta queries, subscriptions, ``multiValueExtendedProperties`` filters,
ETag-based conditional GET, certificates/client assertions, device code flow.
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import copy
import hashlib
import hmac
import html
import html.parser
import json
import re
import secrets
import signal
import sys
import threading
import time
import urllib.parse
import uuid
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import requests

from tests.fakes.faults import Fault, Faults, Stats, run_with_fault
from tests.fakes.server import (
    FakeHTTPServer,
    HTTPError,
    Request,
    Response,
    empty_response,
    html_response,
    json_response,
    redirect,
)

__all__ = [
    "DEFAULT_AUTHORITY_HOST",
    "DEFAULT_CLIENT_ID",
    "DEFAULT_CLIENT_SECRET",
    "DEFAULT_REDIRECT_URI",
    "DEFAULT_TENANT_ID",
    "GRAPH_HOST",
    "FakeMicrosoft",
    "GraphCall",
    "LoopbackSession",
    "main",
]

DEFAULT_AUTHORITY_HOST = "https://login.microsoftonline.com"
GRAPH_HOST = "https://graph.microsoft.com"
DEFAULT_TENANT_ID = "9c2d4f1e-3a5b-4c6d-8e7f-0a1b2c3d4e5f"
DEFAULT_CLIENT_ID = "test-client"
DEFAULT_CLIENT_SECRET = "test-secret"
DEFAULT_REDIRECT_URI = "http://127.0.0.1:8000/api/calendar/microsoft/callback"
GRAPH_APP_ID = "00000003-0000-0000-c000-000000000000"

OIDC_SCOPES = frozenset({"openid", "profile", "email", "offline_access"})
TENANT_ALIASES = frozenset({"common", "organizations", "consumers"})
MAX_BATCH = 20
CODE_LIFETIME = 600
ID_TOKEN_LIFETIME = 3600

_ODATA_JSON = (
    "application/json;odata.metadata=minimal;odata.streaming=true;"
    "IEEE754Compatible=false;charset=utf-8"
)
_USER_NAMESPACE = uuid.UUID("5d9a8c1e-0b7f-4e21-9c43-7a6e2f1d0b58")
_ID_RE = re.compile(r"^[A-Za-z0-9_\-+/]{20,}={0,2}$")
_EXT_ID_RE = re.compile(
    r"^(?P<type>[A-Za-z]+)\s+(?:\{?(?P<guid>[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-"
    r"[0-9a-fA-F]{4}-[0-9a-fA-F]{12})\}?\s+(?P<kind>Name|Id)\s+(?P<name>\S.*?)|"
    r"(?P<tag>0x[0-9a-fA-F]{1,4}))\s*$"
)
_SHOW_AS = ("free", "tentative", "busy", "oof", "workingElsewhere", "unknown")
_IMPORTANCE = ("low", "normal", "high")
_SENSITIVITY = ("normal", "personal", "private", "confidential")

# A few Windows zone names clients commonly send; Graph accepts both kinds.
_WINDOWS_ZONES = {
    "Coordinated Universal Time": "UTC",
    "GMT Standard Time": "Europe/London",
    "W. Europe Standard Time": "Europe/Berlin",
    "Romance Standard Time": "Europe/Paris",
    "Central Europe Standard Time": "Europe/Budapest",
    "Eastern Standard Time": "America/New_York",
    "Central Standard Time": "America/Chicago",
    "Mountain Standard Time": "America/Denver",
    "Pacific Standard Time": "America/Los_Angeles",
    "India Standard Time": "Asia/Kolkata",
    "Tokyo Standard Time": "Asia/Tokyo",
    "AUS Eastern Standard Time": "Australia/Sydney",
}

# Event properties a client may send, with a check of the JSON type; anything else
# that is not a read-only event property is rejected like Graph's OData reader does.
_WRITABLE_EVENT_PROPS: dict[str, Callable[[Any], bool]] = {
    "subject": lambda v: isinstance(v, str),
    "body": lambda v: isinstance(v, dict),
    "start": lambda v: isinstance(v, dict),
    "end": lambda v: isinstance(v, dict),
    "showAs": lambda v: v in _SHOW_AS,
    "importance": lambda v: v in _IMPORTANCE,
    "sensitivity": lambda v: v in _SENSITIVITY,
    "isReminderOn": lambda v: isinstance(v, bool),
    "reminderMinutesBeforeStart": lambda v: isinstance(v, int) and not isinstance(v, bool),
    "isAllDay": lambda v: isinstance(v, bool),
    "categories": lambda v: isinstance(v, list) and all(isinstance(c, str) for c in v),
    "location": lambda v: isinstance(v, dict),
    "locations": lambda v: isinstance(v, list),
    "attendees": lambda v: isinstance(v, list),
    "recurrence": lambda v: v is None or isinstance(v, dict),
    "responseRequested": lambda v: isinstance(v, bool),
    "allowNewTimeProposals": lambda v: isinstance(v, bool),
    "isOnlineMeeting": lambda v: isinstance(v, bool),
    "onlineMeetingProvider": lambda v: isinstance(v, str),
    "hideAttendees": lambda v: isinstance(v, bool),
    "originalStartTimeZone": lambda v: isinstance(v, str),
    "originalEndTimeZone": lambda v: isinstance(v, str),
    "transactionId": lambda v: v is None or isinstance(v, str),
    "singleValueExtendedProperties": lambda v: isinstance(v, list),
}
_READ_ONLY_EVENT_PROPS = frozenset(
    {
        "@odata.etag",
        "@odata.context",
        "@odata.type",
        "id",
        "changeKey",
        "createdDateTime",
        "lastModifiedDateTime",
        "iCalUId",
        "webLink",
        "bodyPreview",
        "hasAttachments",
        "isCancelled",
        "isOrganizer",
        "isDraft",
        "seriesMasterId",
        "type",
        "organizer",
        "responseStatus",
        "onlineMeeting",
        "onlineMeetingUrl",
        "occurrenceId",
    }
)
_SELECTABLE_EVENT_PROPS = (frozenset(_WRITABLE_EVENT_PROPS) | _READ_ONLY_EVENT_PROPS) - {
    "singleValueExtendedProperties",
    "@odata.etag",
    "@odata.context",
    "@odata.type",
}
_CALENDAR_PROPS = frozenset(
    {
        "id",
        "name",
        "color",
        "hexColor",
        "isDefaultCalendar",
        "changeKey",
        "canShare",
        "canViewPrivateItems",
        "canEdit",
        "allowedOnlineMeetingProviders",
        "defaultOnlineMeetingProvider",
        "isTallyingResponses",
        "isRemovable",
        "owner",
    }
)


# --------------------------------------------------------------------------- helpers


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


def _graph_time(moment: datetime) -> str:
    """Render a UTC instant like Graph's ``createdDateTime`` (7 fractional digits, Z)."""
    moment = moment.astimezone(UTC)
    return f"{moment:%Y-%m-%dT%H:%M:%S}.{moment.microsecond:06d}0Z"


def _wall_time(moment: datetime, zone: ZoneInfo | None) -> str:
    """Render ``moment`` as Graph's zone-less ``dateTime`` in ``zone`` (UTC if None)."""
    local = moment.astimezone(zone or UTC)
    return f"{local:%Y-%m-%dT%H:%M:%S}.{local.microsecond:06d}0"


def _resolve_zone(name: Any) -> ZoneInfo | None:
    """Return the zone for a Graph ``timeZone`` value, None for UTC, raise on unknown."""
    if not isinstance(name, str) or not name.strip():
        raise _time_zone_error(name)
    name = name.strip()
    if name.upper() in ("UTC", "ETC/UTC", "Z", "GMT") or name == "Coordinated Universal Time":
        return None
    try:
        return ZoneInfo(_WINDOWS_ZONES.get(name, name))
    except (ZoneInfoNotFoundError, ValueError) as exc:
        raise _time_zone_error(name) from exc


def _time_zone_error(name: Any) -> HTTPError:
    return HTTPError(
        _graph_error(
            400,
            "TimeZoneNotSupportedException",
            "A valid TimeZone value must be specified. The following TimeZone value is "
            f"not supported: '{name if isinstance(name, str) else ''}'.",
        )
    )


def _parse_iso(value: str) -> datetime:
    """Parse an ISO date-time, keeping at most 6 fractional digits (Graph sends 7)."""
    text = value.strip()
    if text.endswith("Z"):
        text = text[:-1] + "+00:00"
    text = re.sub(r"(\.\d{6})\d+", r"\1", text)
    return datetime.fromisoformat(text)


def _parse_when(value: Any, which: str) -> tuple[datetime, str]:
    """Turn a ``dateTimeTimeZone`` into a UTC instant plus the zone name as sent."""
    if not isinstance(value, dict) or not isinstance(value.get("dateTime"), str):
        raise HTTPError(
            _graph_error(
                400, "RequestBodyRead", f"Property '{which}' must be a dateTimeTimeZone object."
            )
        )
    zone_name = value.get("timeZone")
    zone = _resolve_zone(zone_name)
    try:
        parsed = _parse_iso(value["dateTime"])
    except ValueError as exc:
        raise HTTPError(
            _graph_error(
                400,
                "RequestBodyRead",
                f"Cannot convert the literal '{value['dateTime']}' to the expected type "
                "'Edm.String' for a date-time.",
            )
        ) from exc
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=zone or UTC)
    return parsed.astimezone(UTC), str(zone_name)


def _text_to_html(text: str) -> str:
    lines = html.escape(text).replace("\r\n", "\n").split("\n")
    inner = "<br>\r\n".join(lines)
    return (
        '<html>\r\n<head>\r\n<meta http-equiv="Content-Type" content="text/html; '
        'charset=utf-8">\r\n</head>\r\n<body>\r\n<div>'
        f"{inner}</div>\r\n</body>\r\n</html>\r\n"
    )


def _html_to_text(markup: str) -> str:
    body = re.sub(r"(?is)<head.*?</head>", "", markup)
    body = re.sub(r"(?i)<br\s*/?>\s*", "\n", body)
    body = re.sub(r"(?i)</(p|div)>", "\n", body)
    body = re.sub(r"<[^>]+>", "", body)
    text = html.unescape(body).replace("\r\n", "\n")
    return "\n".join(line.rstrip() for line in text.strip("\r\n").split("\n")).strip()


def _preview(text: str) -> str:
    return " ".join(text.split())[:255]


def _graph_error(
    status: int, code: str, message: str, headers: dict[str, str] | None = None
) -> Response:
    """A Graph-shaped error response."""
    now = datetime.now(UTC)
    body = {
        "error": {
            "code": code,
            "message": message,
            "innerError": {
                "date": f"{now:%Y-%m-%dT%H:%M:%S}",
                "request-id": str(uuid.uuid4()),
                "client-request-id": str(uuid.uuid4()),
            },
        }
    }
    all_headers = {"Content-Type": "application/json", "Cache-Control": "no-cache"}
    all_headers.update(headers or {})
    return json_response(body, status, all_headers)


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


@contextlib.contextmanager
def _as_value_error() -> Iterator[None]:
    """Turn a Graph error raised by a test helper into a readable ``ValueError``."""
    try:
        yield
    except HTTPError as exc:
        raise ValueError(exc.response.body.decode("utf-8", "replace")) from exc


def _quote_literal(text: str) -> str:
    return text.replace("''", "'")


def _split_top(text: str, separator: str) -> list[str]:
    """Split on `` and ``/`` or `` outside quotes and parentheses (case-insensitive)."""
    parts: list[str] = []
    depth = 0
    in_quote = False
    start = 0
    i = 0
    token = f" {separator} "
    lowered = text.lower()
    while i < len(text):
        char = text[i]
        if char == "'":
            in_quote = not in_quote
        elif not in_quote and char == "(":
            depth += 1
        elif not in_quote and char == ")":
            depth -= 1
        elif not in_quote and depth == 0 and lowered.startswith(token, i):
            parts.append(text[start:i].strip())
            i += len(token)
            start = i
            continue
        i += 1
    parts.append(text[start:].strip())
    return [part for part in parts if part]


def _strip_parens(text: str) -> str:
    text = text.strip()
    while text.startswith("(") and text.endswith(")") and _balanced(text[1:-1]):
        text = text[1:-1].strip()
    return text


def _balanced(text: str) -> bool:
    depth = 0
    in_quote = False
    for char in text:
        if char == "'":
            in_quote = not in_quote
        elif not in_quote and char == "(":
            depth += 1
        elif not in_quote and char == ")":
            depth -= 1
            if depth < 0:
                return False
    return depth == 0 and not in_quote


def _filter_error(text: str) -> HTTPError:
    return HTTPError(
        _graph_error(
            400,
            "ErrorInvalidUrlQueryFilter",
            f"The query filter contains one or more invalid nodes. (fake: unsupported "
            f"$filter {text!r}; see tests/fakes/microsoft.py for the supported forms)",
        )
    )


_LITERAL = r"'((?:[^']|'')*)'"
_COMPARE = {
    "eq": lambda a, b: a == b,
    "ne": lambda a, b: a != b,
    "gt": lambda a, b: a > b,
    "ge": lambda a, b: a >= b,
    "lt": lambda a, b: a < b,
    "le": lambda a, b: a <= b,
}


def _ext_key(prop_id: str) -> tuple[str, ...]:
    """Canonical identity of an extended property id (Name case-sensitive, rest not)."""
    match = _EXT_ID_RE.match(prop_id or "")
    if match is None:
        raise HTTPError(
            _graph_error(
                400,
                "ErrorInvalidExtendedPropertyValue",
                f"The extended property id '{prop_id}' is not in a supported format.",
            )
        )
    if match.group("tag"):
        return (match.group("type").lower(), "tag", str(int(match.group("tag"), 16)))
    kind = match.group("kind").lower()
    name = match.group("name")
    if kind == "id":
        name = str(int(name, 16)) if name.lower().startswith("0x") else name
    return (match.group("type").lower(), match.group("guid").lower(), kind, name)


# ------------------------------------------------------------------------------ state


@dataclass
class OAuthClient:
    """A registered application (confidential client)."""

    client_id: str
    client_secret: str
    redirect_uris: list[str]


@dataclass(frozen=True)
class GraphCall:
    """One Graph operation as seen by the fake (direct or ``$batch`` member)."""

    op: str
    method: str
    path: str
    status: int
    in_batch: bool
    email: str | None


@dataclass
class _Calendar:
    id: str
    name: str
    change_key: str
    is_default: bool = False
    color: str = "auto"


@dataclass
class _Event:
    id: str
    calendar_id: str
    change_key: str
    created: datetime
    modified: datetime
    ical_uid: str
    start: datetime
    end: datetime
    start_zone: str
    end_zone: str
    body_html: str = ""
    body_text: str = ""
    transaction_id: str | None = None
    props: dict[str, Any] = field(default_factory=dict)
    # canonical key -> (id as first written, value)
    ext: dict[tuple[str, ...], tuple[str, str]] = field(default_factory=dict)


@dataclass
class _User:
    email: str
    oid: str
    display_name: str
    default_calendar_id: str = ""
    calendars: dict[str, _Calendar] = field(default_factory=dict)
    events: dict[str, _Event] = field(default_factory=dict)
    transactions: dict[str, str] = field(default_factory=dict)
    # Bumped by revoke_grants(); tokens from an older epoch are dead.
    grant_epoch: int = 0


@dataclass
class _AuthCode:
    client_id: str
    redirect_uri: str
    email: str
    scopes: tuple[str, ...]
    nonce: str | None
    code_challenge: str | None
    code_challenge_method: str
    expires_at: float
    used: bool = False


@dataclass
class _Token:
    kind: str  # "access" or "refresh"
    email: str
    client_id: str
    scopes: tuple[str, ...]
    epoch: int
    expires_at: float


@dataclass
class _GraphRequest:
    method: str
    path: str
    query: dict[str, list[str]]
    headers: dict[str, str]  # lower-case names
    body: bytes
    in_batch: bool = False

    def param(self, name: str) -> str | None:
        values = self.query.get(name)
        return values[0] if values else None

    def json(self) -> Any:
        if not self.body.strip():
            raise HTTPError(
                _graph_error(400, "BadRequest", "Empty Payload. JSON content expected.")
            )
        try:
            return json.loads(self.body.decode("utf-8"))
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise HTTPError(
                _graph_error(400, "BadRequest", f"Unable to read JSON request payload: {exc}")
            ) from exc


class _FormParser(html.parser.HTMLParser):
    """Collects the first form's action and its input fields from an HTML page."""

    def __init__(self) -> None:
        super().__init__()
        self.action: str | None = None
        self.method = "get"
        self.fields: dict[str, str] = {}
        self.buttons: dict[str, str] = {}

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        attributes = {key: value or "" for key, value in attrs}
        if tag == "form" and self.action is None:
            self.action = attributes.get("action", "")
            self.method = attributes.get("method", "get").lower()
        elif tag == "input" and attributes.get("name"):
            if attributes.get("type", "text") != "submit":
                self.fields[attributes["name"]] = attributes.get("value", "")
        elif tag == "button" and attributes.get("name"):
            self.buttons[attributes.get("value", "")] = attributes["name"]


# ------------------------------------------------------------------ loopback client


def _rewrite(url: str, rewrites: dict[str, str]) -> str:
    split = urllib.parse.urlsplit(url)
    origin = f"{split.scheme}://{split.netloc}".lower()
    target = rewrites.get(origin)
    if target is None:
        return url
    return target + url[len(origin) :]


class LoopbackSession(requests.Session):
    """A ``requests.Session`` that sends requests for public Microsoft hosts to the fake.

    Usable as msal's ``http_client=``: msal calls ``get(url, params=, headers=, **kw)``
    and ``post(url, params=, data=, headers=, **kw)``, both of which go through
    ``request``, where the URL is rewritten.
    """

    def __init__(self, rewrites: dict[str, str], timeout: float | None = 10.0) -> None:
        """``rewrites`` maps an origin (``https://host``) to its replacement origin."""
        super().__init__()
        # Environment proxies must not capture loopback traffic meant for the fake.
        self.trust_env = False
        self.timeout = timeout
        self.rewrites = {
            origin.rstrip("/").lower(): target.rstrip("/") for origin, target in rewrites.items()
        }

    def rewrite(self, url: str) -> str:
        """Return ``url`` with a rewritten origin (unchanged if no rule matches)."""
        return _rewrite(url, self.rewrites)

    def request(  # type: ignore[override]
        self, method: str | bytes, url: str | bytes, *args: Any, **kwargs: Any
    ) -> requests.Response:
        """Send the request to the rewritten URL (with a default timeout)."""
        if isinstance(url, bytes):
            url = url.decode()
        if self.timeout is not None:
            kwargs.setdefault("timeout", self.timeout)
        return super().request(method, self.rewrite(url), *args, **kwargs)


# --------------------------------------------------------------------------- the fake


class FakeMicrosoft(FakeHTTPServer):
    """Fake Microsoft identity platform + Graph calendar server (see module docstring)."""

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

    # ------------------------------------------------------------- configuration

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

    # ------------------------------------------------------------ test controls

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

    # ------------------------------------------------------------- inspection

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

    # ---------------------------------------------------------------- dispatch

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

    # ----------------------------------------------------------------- identity

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

    @staticmethod
    def _new_id(prefix: str = "AAMkAGE") -> str:
        return prefix + base64.urlsafe_b64encode(secrets.token_bytes(105)).decode("ascii")

    @staticmethod
    def _change_key() -> str:
        return "DwAAABYAAAA" + base64.b64encode(secrets.token_bytes(18)).decode("ascii")

    # -------------------------------------------------------------------- Graph

    def _handle_graph(self, request: Request) -> Response:
        sub_path = request.path[len("/v1.0") :] or "/"
        headers = {key.lower(): str(value) for key, value in request.headers.items()}
        if sub_path.rstrip("/") == "/$batch":
            self.stats.incr("batch", "graph_round_trips")
            return run_with_fault(
                self.faults.decide("batch_envelope"),
                lambda: self._batch(request, headers),
                self._graph_fault_response,
                self.faults.drop_mode,
            )
        self.stats.incr("graph", "graph_round_trips")
        call = _GraphRequest(request.method, sub_path, request.query, headers, request.body)
        return run_with_fault(
            self.faults.decide("graph"),
            lambda: self._graph_call(call),
            self._graph_fault_response,
            self.faults.drop_mode,
        )

    def _graph_fault_response(self, fault: Fault) -> Response:
        status = fault.status or 500
        headers: dict[str, str] = {}
        if fault.retry_after is not None:
            headers["Retry-After"] = str(int(fault.retry_after))
        if fault.kind == "rate_limit":
            headers.setdefault("Retry-After", str(int(self.faults.retry_after)))
            return _graph_error(
                429,
                "ApplicationThrottled",
                "Application is over its MailboxConcurrency limit.",
                headers,
            )
        if fault.kind == "quota":
            return _graph_error(
                403,
                "ErrorQuotaExceeded",
                "The process failed to get the correct properties.",
                headers,
            )
        codes = {
            500: ("UnknownError", "An internal server error occurred."),
            502: ("BadGateway", "Bad gateway."),
            503: ("ServiceNotAvailable", "The service is temporarily unavailable."),
            504: ("GatewayTimeout", "The gateway did not receive a response in time."),
        }
        code, message = codes.get(status, ("UnknownError", f"Injected HTTP {status}."))
        return _graph_error(status, code, message, headers)

    def _graph_call(self, call: _GraphRequest) -> Response:
        op = "unknown"
        email: str | None = None
        try:
            with self._lock:
                token = self._authenticate(call)
                email = token.email
                user = self._users[token.email]
                op, handler = self._graph_route(call, user)
                if op != "me.get":
                    # /me is granted to any token (User.Read is in every app's defaults).
                    self._check_scope(token, call.method)
                response = handler()
        except HTTPError as exc:
            response = exc.response
        self.stats.incr("graph_ops", op)
        with self._lock:
            self.calls.append(
                GraphCall(op, call.method, call.path, response.status, call.in_batch, email)
            )
        response.headers.setdefault("request-id", str(uuid.uuid4()))
        response.headers.setdefault(
            "client-request-id", call.headers.get("client-request-id") or str(uuid.uuid4())
        )
        return response

    def _authenticate(self, call: _GraphRequest) -> _Token:
        header = call.headers.get("authorization", "")
        scheme, _, value = header.partition(" ")
        challenge = {
            "WWW-Authenticate": (
                f'Bearer realm="", authorization_uri="{self._authority_host}/common/'
                f'oauth2/authorize", client_id="{GRAPH_APP_ID}"'
            )
        }
        if scheme.lower() != "bearer" or not value.strip():
            raise HTTPError(
                _graph_error(401, "InvalidAuthenticationToken", "Access token is empty.", challenge)
            )
        token = self._tokens.get(value.strip())
        if token is None or token.kind != "access":
            raise HTTPError(
                _graph_error(
                    401,
                    "InvalidAuthenticationToken",
                    "IDX14100: JWT is not well formed, or the token is not known.",
                    challenge,
                )
            )
        if token.epoch != self._users[token.email].grant_epoch:
            raise HTTPError(
                _graph_error(
                    401,
                    "InvalidAuthenticationToken",
                    "Access token has expired or is not yet valid.",
                    challenge,
                )
            )
        if self.clock() >= token.expires_at:
            raise HTTPError(
                _graph_error(
                    401,
                    "InvalidAuthenticationToken",
                    "Lifetime validation failed, the token is expired.",
                    challenge,
                )
            )
        return token

    def _check_scope(self, token: _Token, method: str) -> None:
        scopes = set(token.scopes)
        allowed = (
            {"Calendars.ReadWrite"}
            if method != "GET"
            else {
                "Calendars.ReadWrite",
                "Calendars.Read",
            }
        )
        if scopes & allowed:
            return
        raise HTTPError(
            _graph_error(
                403, "ErrorAccessDenied", "Access is denied. Check credentials and try again."
            )
        )

    def _graph_route(self, call: _GraphRequest, user: _User) -> tuple[str, Callable[[], Response]]:
        segments = [urllib.parse.unquote(s) for s in call.path.split("/") if s]
        if len(segments) >= 2 and segments[0].lower() == "users":
            target = segments[1].lower()
            if target not in (user.oid, user.email):
                raise HTTPError(
                    _graph_error(
                        403,
                        "ErrorAccessDenied",
                        "Access is denied. Check credentials and try again.",
                    )
                )
            segments = ["me", *segments[2:]]
        if not segments or segments[0] != "me":
            first = segments[0] if segments else ""
            raise HTTPError(
                _graph_error(400, "BadRequest", f"Resource not found for the segment '{first}'.")
            )
        rest = segments[1:]
        method = call.method
        default = user.default_calendar_id

        def pick(
            table: dict[str, tuple[str, Callable[[], Response]]],
        ) -> tuple[str, Callable[[], Response]]:
            if method not in table:
                raise HTTPError(
                    _graph_error(
                        405,
                        "Request_BadRequest",
                        "Specified HTTP method is not allowed for the request target.",
                    )
                )
            return table[method]

        match rest:
            case []:
                return pick({"GET": ("me.get", lambda: self._me(user))})
            case ["calendars"]:
                return pick(
                    {
                        "GET": ("calendars.list", lambda: self._calendars_list(call, user)),
                        "POST": ("calendars.create", lambda: self._calendars_create(call, user)),
                    }
                )
            case ["calendar"]:
                return pick(
                    {"GET": ("calendars.get", lambda: self._calendar_get(call, user, default))}
                )
            case ["calendars", cid]:
                return pick(
                    {
                        "GET": ("calendars.get", lambda: self._calendar_get(call, user, cid)),
                        "PATCH": (
                            "calendars.update",
                            lambda: self._calendar_update(call, user, cid),
                        ),
                        "DELETE": (
                            "calendars.delete",
                            lambda: self._calendar_delete(call, user, cid),
                        ),
                    }
                )
            case ["calendars", cid, "events"]:
                return pick(self._events_table(call, user, cid))
            case ["calendar", "events"] | ["events"]:
                return pick(self._events_table(call, user, default))
            case ["calendars", cid, "events", eid]:
                return pick(self._event_table(call, user, eid, cid))
            case ["calendar", "events", eid]:
                return pick(self._event_table(call, user, eid, default))
            case ["events", eid]:
                return pick(self._event_table(call, user, eid, None))
            case ["calendarView"]:
                return pick(
                    {"GET": ("calendarView.list", lambda: self._calendar_view(call, user, None))}
                )
            case ["calendar", "calendarView"]:
                return pick(
                    {"GET": ("calendarView.list", lambda: self._calendar_view(call, user, default))}
                )
            case ["calendars", cid, "calendarView"]:
                return pick(
                    {"GET": ("calendarView.list", lambda: self._calendar_view(call, user, cid))}
                )
        raise HTTPError(
            _graph_error(
                400,
                "BadRequest",
                f"Resource not found for the segment '{rest[-1] if rest else 'me'}'.",
            )
        )

    def _events_table(
        self, call: _GraphRequest, user: _User, calendar_id: str
    ) -> dict[str, tuple[str, Callable[[], Response]]]:
        return {
            "GET": ("events.list", lambda: self._events_list(call, user, calendar_id)),
            "POST": ("events.create", lambda: self._events_create(call, user, calendar_id)),
        }

    def _event_table(
        self, call: _GraphRequest, user: _User, event_id: str, calendar_id: str | None
    ) -> dict[str, tuple[str, Callable[[], Response]]]:
        return {
            "GET": ("events.get", lambda: self._event_get(call, user, event_id, calendar_id)),
            "PATCH": (
                "events.update",
                lambda: self._event_update(call, user, event_id, calendar_id),
            ),
            "DELETE": (
                "events.delete",
                lambda: self._event_delete(call, user, event_id, calendar_id),
            ),
        }

    # -- rendering

    def _context(self, user: _User, suffix: str) -> str:
        return f"{self.graph_endpoint}/$metadata#users('{user.oid}')/{suffix}"

    def _render_me(self, user: _User) -> dict[str, Any]:
        given, _, surname = user.display_name.partition(" ")
        return {
            "@odata.context": f"{self.graph_endpoint}/$metadata#users/$entity",
            "businessPhones": [],
            "displayName": user.display_name,
            "givenName": given,
            "jobTitle": None,
            "mail": user.email,
            "mobilePhone": None,
            "officeLocation": None,
            "preferredLanguage": "en-US",
            "surname": surname or None,
            "userPrincipalName": user.email,
            "id": user.oid,
        }

    def _render_calendar(self, user: _User, cal: _Calendar) -> dict[str, Any]:
        return {
            "@odata.etag": f'W/"{cal.change_key}"',
            "id": cal.id,
            "name": cal.name,
            "color": cal.color,
            "hexColor": "",
            "isDefaultCalendar": cal.is_default,
            "changeKey": cal.change_key,
            "canShare": True,
            "canViewPrivateItems": True,
            "canEdit": True,
            "allowedOnlineMeetingProviders": ["teamsForBusiness"],
            "defaultOnlineMeetingProvider": "teamsForBusiness",
            "isTallyingResponses": True,
            "isRemovable": not cal.is_default,
            "owner": {"name": user.display_name, "address": user.email},
        }

    def _render_event(
        self,
        user: _User,
        event: _Event,
        *,
        zone: ZoneInfo | None = None,
        zone_name: str = "UTC",
        text_body: bool = False,
        ext_ids: list[tuple[str, ...]] | None = None,
        all_ext: bool = False,
    ) -> dict[str, Any]:
        props = event.props
        rendered: dict[str, Any] = {
            "@odata.etag": f'W/"{event.change_key}"',
            "id": event.id,
            "createdDateTime": _graph_time(event.created),
            "lastModifiedDateTime": _graph_time(event.modified),
            "changeKey": event.change_key,
            "categories": list(props.get("categories", [])),
            "originalStartTimeZone": props.get("originalStartTimeZone", event.start_zone),
            "originalEndTimeZone": props.get("originalEndTimeZone", event.end_zone),
            "iCalUId": event.ical_uid,
            "reminderMinutesBeforeStart": props.get("reminderMinutesBeforeStart", 15),
            "isReminderOn": props.get("isReminderOn", True),
            "hasAttachments": False,
            "subject": props.get("subject", ""),
            "bodyPreview": _preview(event.body_text),
            "importance": props.get("importance", "normal"),
            "sensitivity": props.get("sensitivity", "normal"),
            "isAllDay": props.get("isAllDay", False),
            "isCancelled": False,
            "isOrganizer": True,
            "responseRequested": props.get("responseRequested", True),
            "seriesMasterId": None,
            "showAs": props.get("showAs", "busy"),
            "type": "seriesMaster" if props.get("recurrence") else "singleInstance",
            "webLink": (
                "https://outlook.office365.com/owa/?itemid="
                f"{urllib.parse.quote(event.id, safe='')}&exvsurl=1&path=/calendar/item"
            ),
            "onlineMeetingUrl": None,
            "isOnlineMeeting": props.get("isOnlineMeeting", False),
            "onlineMeetingProvider": props.get("onlineMeetingProvider", "unknown"),
            "allowNewTimeProposals": props.get("allowNewTimeProposals", True),
            "occurrenceId": None,
            "isDraft": False,
            "hideAttendees": props.get("hideAttendees", False),
            "responseStatus": {"response": "organizer", "time": "0001-01-01T00:00:00Z"},
            "body": (
                {"contentType": "text", "content": event.body_text}
                if text_body
                else {"contentType": "html", "content": event.body_html}
            ),
            "start": {"dateTime": _wall_time(event.start, zone), "timeZone": zone_name},
            "end": {"dateTime": _wall_time(event.end, zone), "timeZone": zone_name},
            "location": props.get(
                "location",
                {
                    "displayName": "",
                    "locationType": "default",
                    "uniqueIdType": "unknown",
                    "address": {},
                    "coordinates": {},
                },
            ),
            "locations": list(props.get("locations", [])),
            "recurrence": props.get("recurrence"),
            "attendees": list(props.get("attendees", [])),
            "organizer": {"emailAddress": {"name": user.display_name, "address": user.email}},
            "onlineMeeting": None,
        }
        if event.transaction_id is not None:
            rendered["transactionId"] = event.transaction_id
        if all_ext:
            chosen = list(event.ext.values())
        else:
            chosen = [event.ext[key] for key in ext_ids or [] if key in event.ext]
        if chosen:
            rendered["singleValueExtendedProperties"] = [
                {"id": prop_id, "value": value} for prop_id, value in chosen
            ]
        # Callers may mutate what they get; stored lists and dicts must not follow.
        return copy.deepcopy(rendered)

    def _prefer(self, call: _GraphRequest) -> tuple[ZoneInfo | None, str, bool, bool, list[str]]:
        prefer = call.headers.get("prefer", "")
        applied: list[str] = []
        zone: ZoneInfo | None = None
        zone_name = "UTC"
        match = re.search(r'outlook\.timezone\s*=\s*"([^"]+)"', prefer, re.IGNORECASE)
        if match:
            zone = _resolve_zone(match.group(1))
            zone_name = match.group(1)
            applied.append(f'outlook.timezone="{zone_name}"')
        text = bool(re.search(r'outlook\.body-content-type\s*=\s*"?text"?', prefer, re.IGNORECASE))
        if text:
            applied.append('outlook.body-content-type="text"')
        minimal = bool(re.search(r"return\s*=\s*minimal", prefer, re.IGNORECASE))
        return zone, zone_name, text, minimal, applied

    def _event_json(
        self,
        call: _GraphRequest,
        user: _User,
        event: _Event,
        ext_ids: list[tuple[str, ...]] | None = None,
    ) -> tuple[dict[str, Any], list[str]]:
        zone, zone_name, text, _minimal, applied = self._prefer(call)
        rendered = self._render_event(
            user, event, zone=zone, zone_name=zone_name, text_body=text, ext_ids=ext_ids
        )
        return rendered, applied

    def _ok(
        self,
        body: dict[str, Any],
        status: int = 200,
        headers: dict[str, str] | None = None,
        applied: list[str] | None = None,
    ) -> Response:
        all_headers = {
            "Content-Type": _ODATA_JSON,
            "OData-Version": "4.0",
            "Cache-Control": "private",
        }
        if applied:
            all_headers["Preference-Applied"] = ", ".join(applied)
        if "@odata.etag" in body:
            all_headers["ETag"] = str(body["@odata.etag"])
        all_headers.update(headers or {})
        return json_response(body, status, all_headers)

    # -- query options

    def _select(
        self, call: _GraphRequest, allowed: frozenset[str], type_name: str
    ) -> list[str] | None:
        raw = call.param("$select")
        if raw is None:
            return None
        names = [name.strip() for name in raw.split(",") if name.strip()]
        for name in names:
            if name not in allowed:
                raise HTTPError(
                    _graph_error(
                        400,
                        "RequestBroker--ParseUri",
                        f"Could not find a property named '{name}' on type "
                        f"'microsoft.graph.{type_name}'.",
                    )
                )
        return names

    @staticmethod
    def _apply_select(item: dict[str, Any], names: list[str] | None) -> dict[str, Any]:
        if names is None:
            return item
        keep = {"@odata.etag", "id", "singleValueExtendedProperties", *names}
        return {key: value for key, value in item.items() if key in keep}

    def _paging(self, call: _GraphRequest) -> tuple[int, int]:
        def number(name: str, default: int, low: int, high: int) -> int:
            raw = call.param(name)
            if raw is None:
                return default
            try:
                value = int(raw)
            except ValueError as exc:
                raise HTTPError(
                    _graph_error(400, "BadRequest", f"Invalid value '{raw}' for {name}.")
                ) from exc
            if not low <= value <= high:
                raise HTTPError(
                    _graph_error(
                        400,
                        "ErrorInvalidArgument" if name == "$top" else "BadRequest",
                        f"The value '{raw}' of {name} is out of range.",
                    )
                )
            return value

        return number("$top", self.default_page_size, 1, 1000), number("$skip", 0, 0, 10**9)

    def _expand_ids(self, call: _GraphRequest) -> list[tuple[str, ...]]:
        raw = call.param("$expand")
        if raw is None:
            return []
        match = re.fullmatch(
            r"\s*singleValueExtendedProperties\s*\(\s*\$filter\s*=\s*(.+)\)\s*", raw, re.IGNORECASE
        )
        if match is None:
            raise HTTPError(
                _graph_error(
                    400,
                    "BadRequest",
                    f"Parsing OData Select and Expand failed: the fake supports only "
                    f"singleValueExtendedProperties($filter=id eq '...'), got {raw!r}.",
                )
            )
        keys = []
        for clause in _split_top(_strip_parens(match.group(1)), "or"):
            one = re.fullmatch(r"\s*\(?\s*id\s+eq\s+" + _LITERAL + r"\s*\)?\s*", clause)
            if one is None:
                raise _filter_error(raw)
            keys.append(_ext_key(_quote_literal(one.group(1))))
        return keys

    def _event_filter(self, raw: str | None) -> Callable[[_Event], bool]:
        if raw is None:
            return lambda event: True
        tests = [
            self._event_clause(clause, raw) for clause in _split_top(_strip_parens(raw), "and")
        ]
        return lambda event: all(test(event) for test in tests)

    def _event_clause(self, clause: str, raw: str) -> Callable[[_Event], bool]:
        clause = _strip_parens(clause)
        any_match = re.fullmatch(
            r"singleValueExtendedProperties/any\s*\(\s*(\w+)\s*:\s*(.+)\)", clause, re.IGNORECASE
        )
        if any_match:
            return self._ext_clause(any_match.group(1), any_match.group(2), raw)
        when = re.fullmatch(
            r"(start|end)/dateTime\s+(eq|ne|gt|ge|lt|le)\s+" + _LITERAL, clause, re.IGNORECASE
        )
        if when:
            try:
                moment = _parse_iso(_quote_literal(when.group(3)))
            except ValueError as exc:
                raise _filter_error(raw) from exc
            if moment.tzinfo is None:
                moment = moment.replace(tzinfo=UTC)
            which = when.group(1).lower()
            compare = _COMPARE[when.group(2).lower()]
            return lambda event: compare(event.start if which == "start" else event.end, moment)
        simple = re.fullmatch(
            r"(subject|transactionId|iCalUId|showAs)\s+(eq|ne)\s+" + _LITERAL, clause
        )
        if simple:
            name, op, literal = simple.group(1), simple.group(2), _quote_literal(simple.group(3))

            def value_of(event: _Event) -> str | None:
                if name == "transactionId":
                    return event.transaction_id
                if name == "iCalUId":
                    return event.ical_uid
                return event.props.get(name, {"subject": "", "showAs": "busy"}[name])

            return lambda event: _COMPARE[op](value_of(event), literal)
        raise _filter_error(raw)

    def _ext_clause(self, var: str, inner: str, raw: str) -> Callable[[_Event], bool]:
        parts = _split_top(_strip_parens(inner), "and")
        v = re.escape(var)
        key: tuple[str, ...] | None = None
        value_test: Callable[[str], bool] | None = None
        for part in parts:
            part = _strip_parens(part)
            id_match = re.fullmatch(rf"{v}/id\s+eq\s+" + _LITERAL, part)
            if id_match and key is None:
                key = _ext_key(_quote_literal(id_match.group(1)))
                continue
            cmp_match = re.fullmatch(rf"{v}/value\s+(eq|ne)\s+(null|{_LITERAL})", part)
            if cmp_match and value_test is None:
                op = cmp_match.group(1)
                if cmp_match.group(2) == "null":
                    # Every stored property has a value, so "ne null" means "present".
                    value_test = (lambda value: True) if op == "ne" else (lambda value: False)
                else:
                    wanted = _quote_literal(cmp_match.group(3)).lower()
                    value_test = (
                        (lambda value, w=wanted: value.lower() == w)
                        if op == "eq"
                        else (lambda value, w=wanted: value.lower() != w)
                    )
                continue
            fn_match = re.fullmatch(
                rf"(contains|startswith)\s*\(\s*{v}/value\s*,\s*" + _LITERAL + r"\s*\)", part
            )
            if fn_match and value_test is None:
                wanted = _quote_literal(fn_match.group(2)).lower()
                if fn_match.group(1) == "contains":
                    value_test = lambda value, w=wanted: w in value.lower()  # noqa: E731
                else:
                    value_test = lambda value, w=wanted: value.lower().startswith(w)  # noqa: E731
                continue
            raise _filter_error(raw)
        if key is None or value_test is None:
            # Graph documents only "id eq" combined with a value comparison.
            raise _filter_error(raw)
        found_key, test = key, value_test

        def matches(event: _Event) -> bool:
            stored = event.ext.get(found_key)
            return stored is not None and test(stored[1])

        return matches

    def _order(self, call: _GraphRequest, events: list[_Event]) -> list[_Event]:
        raw = call.param("$orderby")
        if raw is None:
            return events
        keys: dict[str, Callable[[_Event], Any]] = {
            "start/datetime": lambda e: e.start,
            "end/datetime": lambda e: e.end,
            "createddatetime": lambda e: e.created,
            "lastmodifieddatetime": lambda e: e.modified,
            "subject": lambda e: str(e.props.get("subject", "")).lower(),
        }
        result = list(events)
        for term in reversed([t.strip() for t in raw.split(",") if t.strip()]):
            name, _, direction = term.partition(" ")
            key = keys.get(name.strip().lower())
            if key is None or direction.strip().lower() not in ("", "asc", "desc"):
                raise HTTPError(
                    _graph_error(400, "BadRequest", f"The fake does not support $orderby={raw!r}.")
                )
            result.sort(key=key, reverse=direction.strip().lower() == "desc")
        return result

    def _page(
        self,
        call: _GraphRequest,
        items: list[dict[str, Any]],
        context: str,
    ) -> Response:
        top, skip = self._paging(call)
        page = items[skip : skip + top]
        body: dict[str, Any] = {"@odata.context": context}
        if (call.param("$count") or "").lower() == "true":
            body["@odata.count"] = len(items)
        body["value"] = page
        if skip + top < len(items):
            query = [(k, v) for k, values in call.query.items() for v in values if k != "$skip"]
            query.append(("$skip", str(skip + top)))
            if "$top" not in call.query:
                query.append(("$top", str(top)))
            body["@odata.nextLink"] = f"{self.graph_endpoint}{call.path}?" + urllib.parse.urlencode(
                query, quote_via=urllib.parse.quote, safe="$,'()/:"
            )
        _zone, _name, _text, _minimal, applied = self._prefer(call)
        return self._ok(body, applied=applied)

    # -- /me and calendars

    def _me(self, user: _User) -> Response:
        return self._ok(self._render_me(user))

    def _calendar(self, user: _User, calendar_id: str) -> _Calendar:
        cal = user.calendars.get(calendar_id)
        if cal is None:
            if not _ID_RE.match(calendar_id):
                raise HTTPError(_graph_error(400, "ErrorInvalidIdMalformed", "Id is malformed."))
            raise HTTPError(
                _graph_error(
                    404, "ErrorItemNotFound", "The specified object was not found in the store."
                )
            )
        return cal

    def _calendars_list(self, call: _GraphRequest, user: _User) -> Response:
        names = self._select(call, _CALENDAR_PROPS, "calendar")
        cals = list(user.calendars.values())
        raw = call.param("$filter")
        if raw is not None:
            match = re.fullmatch(r"\s*name\s+(eq|ne)\s+" + _LITERAL + r"\s*", raw)
            if match is None:
                raise _filter_error(raw)
            wanted = _quote_literal(match.group(2)).lower()
            equal = match.group(1) == "eq"
            cals = [c for c in cals if (c.name.lower() == wanted) == equal]
        items = [self._apply_select(self._render_calendar(user, c), names) for c in cals]
        return self._page(call, items, self._context(user, "calendars"))

    def _calendar_name(self, body: Any) -> str:
        if not isinstance(body, dict):
            raise HTTPError(_graph_error(400, "BadRequest", "A JSON object is expected."))
        unknown = [key for key in body if key not in _CALENDAR_PROPS and not key.startswith("@")]
        if unknown:
            raise HTTPError(
                _graph_error(
                    400,
                    "RequestBodyRead",
                    f"The property '{unknown[0]}' does not exist on type "
                    "'microsoft.graph.calendar'. Make sure to only use property names that "
                    "are defined by the type.",
                )
            )
        name = body.get("name")
        if not isinstance(name, str) or not name.strip():
            raise HTTPError(
                _graph_error(400, "ErrorInvalidRequest", "The calendar name cannot be empty.")
            )
        return name

    def _check_unique_name(self, user: _User, name: str, except_id: str | None = None) -> None:
        for cal in user.calendars.values():
            if cal.id != except_id and cal.name.lower() == name.lower():
                raise HTTPError(
                    _graph_error(
                        409, "ErrorFolderExists", "A folder with the specified name already exists."
                    )
                )

    def _calendars_create(self, call: _GraphRequest, user: _User) -> Response:
        body = call.json()
        name = self._calendar_name(body)
        self._check_unique_name(user, name)
        cal = _Calendar(self._new_id("AAMkAGI"), name, self._change_key())
        if isinstance(body.get("color"), str):
            cal.color = body["color"]
        user.calendars[cal.id] = cal
        rendered = {"@odata.context": self._context(user, "calendars/$entity")}
        rendered.update(self._render_calendar(user, cal))
        return self._ok(rendered, 201)

    def _calendar_get(self, call: _GraphRequest, user: _User, calendar_id: str) -> Response:
        names = self._select(call, _CALENDAR_PROPS, "calendar")
        cal = self._calendar(user, calendar_id)
        rendered = {"@odata.context": self._context(user, "calendars/$entity")}
        rendered.update(self._apply_select(self._render_calendar(user, cal), names))
        return self._ok(rendered)

    def _check_if_match(self, call: _GraphRequest, change_key: str) -> None:
        wanted = call.headers.get("if-match")
        if wanted is None or wanted.strip() == "*":
            return
        tags = [t.strip() for t in wanted.split(",")]
        normalised = {t.removeprefix("W/").strip('"') for t in tags}
        if change_key not in normalised:
            raise HTTPError(
                _graph_error(
                    412,
                    "ErrorIrresolvableConflict",
                    "The send or update operation could not be performed because the change "
                    "key passed in the request does not match the current change key for the "
                    "item.",
                )
            )

    def _calendar_update(self, call: _GraphRequest, user: _User, calendar_id: str) -> Response:
        cal = self._calendar(user, calendar_id)
        self._check_if_match(call, cal.change_key)
        body = call.json()
        if "name" in body:
            name = self._calendar_name(body)
            self._check_unique_name(user, name, except_id=cal.id)
            cal.name = name
        if isinstance(body.get("color"), str):
            cal.color = body["color"]
        cal.change_key = self._change_key()
        rendered = {"@odata.context": self._context(user, "calendars/$entity")}
        rendered.update(self._render_calendar(user, cal))
        return self._ok(rendered)

    def _calendar_delete(self, call: _GraphRequest, user: _User, calendar_id: str) -> Response:
        cal = self._calendar(user, calendar_id)
        self._check_if_match(call, cal.change_key)
        if cal.is_default:
            raise HTTPError(
                _graph_error(
                    400, "ErrorCannotDeleteObject", "The default calendar cannot be deleted."
                )
            )
        del user.calendars[cal.id]
        for event_id in [e.id for e in user.events.values() if e.calendar_id == cal.id]:
            del user.events[event_id]
        return empty_response(204)

    # -- events

    def _find_event(self, user: _User, event_id: str, calendar_id: str | None) -> _Event:
        if calendar_id is not None:
            self._calendar(user, calendar_id)
        event = user.events.get(event_id)
        if event is None or (calendar_id is not None and event.calendar_id != calendar_id):
            if not _ID_RE.match(event_id):
                raise HTTPError(_graph_error(400, "ErrorInvalidIdMalformed", "Id is malformed."))
            raise HTTPError(
                _graph_error(
                    404, "ErrorItemNotFound", "The specified object was not found in the store."
                )
            )
        return event

    def _touch(self, event: _Event) -> None:
        event.change_key = self._change_key()
        now = datetime.fromtimestamp(self.clock(), UTC)
        # Keep lastModifiedDateTime strictly increasing even within one clock tick.
        event.modified = max(now, event.modified + timedelta(microseconds=1))

    def _validate_event_body(self, body: Any, creating: bool) -> dict[str, Any]:
        if not isinstance(body, dict):
            raise HTTPError(_graph_error(400, "BadRequest", "A JSON object is expected."))
        for key, value in body.items():
            check = _WRITABLE_EVENT_PROPS.get(key)
            if check is None:
                if key in _READ_ONLY_EVENT_PROPS or key.startswith("@odata."):
                    continue
                raise HTTPError(
                    _graph_error(
                        400,
                        "RequestBodyRead",
                        f"The property '{key}' does not exist on type 'microsoft.graph.event'. "
                        "Make sure to only use property names that are defined by the type or "
                        "mark the type as open type.",
                    )
                )
            if not check(value):
                raise HTTPError(
                    _graph_error(
                        400,
                        "RequestBodyRead",
                        f"Cannot convert the literal '{value}' to the expected type of "
                        f"property '{key}' on 'microsoft.graph.event'.",
                    )
                )
        if "body" in body and str(body["body"].get("contentType", "text")).lower() not in (
            "text",
            "html",
        ):
            raise HTTPError(
                _graph_error(
                    400,
                    "RequestBodyRead",
                    f"Cannot convert the literal '{body['body'].get('contentType')}' to the "
                    "expected type 'microsoft.graph.bodyType'.",
                )
            )
        if creating and ("start" not in body or "end" not in body):
            raise HTTPError(
                _graph_error(
                    400,
                    "ErrorInvalidRequest",
                    "Your request can't be completed. Start and End must be specified.",
                )
            )
        return body

    def _apply_event_changes(
        self, user: _User, event: _Event, body: dict[str, Any], *, creating: bool
    ) -> None:
        body = self._validate_event_body(body, creating)
        start, end = event.start, event.end
        start_zone, end_zone = event.start_zone, event.end_zone
        if "start" in body:
            start, start_zone = _parse_when(body["start"], "start")
        if "end" in body:
            end, end_zone = _parse_when(body["end"], "end")
        if end < start:
            raise HTTPError(
                _graph_error(
                    400,
                    "ErrorCalendarEndDateIsEarlierThanStartDate",
                    "The end date occurs before the start date.",
                )
            )
        ext_updates: dict[tuple[str, ...], tuple[str, str | None]] = {}
        for item in body.get("singleValueExtendedProperties", []):
            if not isinstance(item, dict) or not isinstance(item.get("id"), str):
                raise HTTPError(
                    _graph_error(
                        400, "RequestBodyRead", "singleValueExtendedProperties items need an 'id'."
                    )
                )
            value = item.get("value")
            if value is not None and not isinstance(value, str):
                raise HTTPError(
                    _graph_error(400, "RequestBodyRead", "Extended property values are strings.")
                )
            ext_updates[_ext_key(item["id"])] = (item["id"], value)
        if (
            "transactionId" in body
            and not creating
            and body["transactionId"] != event.transaction_id
        ):
            raise HTTPError(
                _graph_error(
                    400,
                    "ErrorInvalidRequest",
                    "The transactionId of an event cannot be changed after creation.",
                )
            )
        # Validation is complete: from here on nothing can fail half-way.
        event.start, event.end = start, end
        event.start_zone, event.end_zone = start_zone, end_zone
        if "body" in body:
            content = body["body"].get("content") or ""
            if str(body["body"].get("contentType", "text")).lower() == "html":
                event.body_html = (
                    content
                    if "<html" in content.lower()
                    else f"<html><body>{content}</body></html>"
                )
                event.body_text = _html_to_text(content)
            else:
                event.body_text = str(content)
                event.body_html = _text_to_html(str(content))
        for key, (prop_id, value) in ext_updates.items():
            if value is None:
                event.ext.pop(key, None)
            else:
                previous = event.ext.get(key)
                event.ext[key] = (previous[0] if previous else prop_id, value)
        for key, value in body.items():
            if key in ("start", "end", "body", "singleValueExtendedProperties"):
                continue
            if key == "transactionId":
                if creating:
                    event.transaction_id = value
                continue
            if key in _WRITABLE_EVENT_PROPS:
                event.props[key] = value
        if "start" in body and "originalStartTimeZone" not in body:
            event.props.pop("originalStartTimeZone", None)
        if "end" in body and "originalEndTimeZone" not in body:
            event.props.pop("originalEndTimeZone", None)

    def _create_event(self, user: _User, cal: _Calendar, body: Any) -> _Event:
        now = datetime.fromtimestamp(self.clock(), UTC)
        event = _Event(
            id=self._new_id(),
            calendar_id=cal.id,
            change_key=self._change_key(),
            created=now,
            modified=now,
            ical_uid="040000008200E00074C5B7101A82E00800000000"
            + secrets.token_hex(8).upper()
            + "0000000000000000100000000"
            + secrets.token_hex(16).upper(),
            start=now,
            end=now,
            start_zone="UTC",
            end_zone="UTC",
        )
        self._apply_event_changes(user, event, body, creating=True)
        user.events[event.id] = event
        if event.transaction_id:
            user.transactions[event.transaction_id] = event.id
        return event

    def _events_create(self, call: _GraphRequest, user: _User, calendar_id: str) -> Response:
        cal = self._calendar(user, calendar_id)
        body = call.json()
        tx = body.get("transactionId") if isinstance(body, dict) else None
        existing_id = user.transactions.get(tx) if isinstance(tx, str) and tx else None
        event = user.events.get(existing_id) if existing_id else None
        if event is None:
            event = self._create_event(user, cal, body)
        rendered, applied = self._event_json(call, user, event)
        body_out = {"@odata.context": self._context(user, f"calendars('{cal.id}')/events/$entity")}
        body_out.update(rendered)
        location = f"{GRAPH_HOST}/v1.0/Users('{user.oid}')/Events('{event.id}')"
        return self._ok(body_out, 201, {"Location": location}, applied)

    def _event_get(
        self, call: _GraphRequest, user: _User, event_id: str, calendar_id: str | None
    ) -> Response:
        names = self._select(call, _SELECTABLE_EVENT_PROPS, "event")
        ext_ids = self._expand_ids(call)
        event = self._find_event(user, event_id, calendar_id)
        rendered, applied = self._event_json(call, user, event, ext_ids)
        body = {"@odata.context": self._context(user, "events/$entity")}
        body.update(self._apply_select(rendered, names))
        return self._ok(body, applied=applied)

    def _event_update(
        self, call: _GraphRequest, user: _User, event_id: str, calendar_id: str | None
    ) -> Response:
        event = self._find_event(user, event_id, calendar_id)
        self._check_if_match(call, event.change_key)
        body = call.json()
        self._apply_event_changes(user, event, body, creating=False)
        self._touch(event)
        _zone, _name, _text, minimal, applied = self._prefer(call)
        if minimal:
            return Response(204, b"", {"Preference-Applied": "return=minimal"})
        rendered, applied = self._event_json(call, user, event)
        out = {"@odata.context": self._context(user, "events/$entity")}
        out.update(rendered)
        return self._ok(out, applied=applied)

    def _event_delete(
        self, call: _GraphRequest, user: _User, event_id: str, calendar_id: str | None
    ) -> Response:
        event = self._find_event(user, event_id, calendar_id)
        self._check_if_match(call, event.change_key)
        del user.events[event.id]
        if event.transaction_id and user.transactions.get(event.transaction_id) == event.id:
            del user.transactions[event.transaction_id]
        return empty_response(204)

    def _events_list(self, call: _GraphRequest, user: _User, calendar_id: str) -> Response:
        cal = self._calendar(user, calendar_id)
        events = [e for e in user.events.values() if e.calendar_id == cal.id]
        return self._event_collection(
            call, user, events, self._context(user, f"calendars('{cal.id}')/events")
        )

    def _event_collection(
        self, call: _GraphRequest, user: _User, events: list[_Event], context: str
    ) -> Response:
        names = self._select(call, _SELECTABLE_EVENT_PROPS, "event")
        ext_ids = self._expand_ids(call)
        test = self._event_filter(call.param("$filter"))
        chosen = self._order(call, [e for e in events if test(e)])
        items = []
        for event in chosen:
            rendered, _applied = self._event_json(call, user, event, ext_ids)
            items.append(self._apply_select(rendered, names))
        return self._page(call, items, context)

    def _calendar_view(self, call: _GraphRequest, user: _User, calendar_id: str | None) -> Response:
        raw_start = call.param("startDateTime") or call.param("startdatetime")
        raw_end = call.param("endDateTime") or call.param("enddatetime")
        if not raw_start or not raw_end:
            raise HTTPError(
                _graph_error(
                    400,
                    "ErrorInvalidParameter",
                    "This request requires a time window specified by the query string "
                    "parameters StartDateTime and EndDateTime.",
                )
            )
        try:
            window_start, window_end = _parse_iso(raw_start), _parse_iso(raw_end)
        except ValueError as exc:
            raise HTTPError(
                _graph_error(400, "ErrorInvalidParameter", "Invalid StartDateTime/EndDateTime.")
            ) from exc
        if window_start.tzinfo is None:
            window_start = window_start.replace(tzinfo=UTC)
        if window_end.tzinfo is None:
            window_end = window_end.replace(tzinfo=UTC)
        if calendar_id is not None:
            self._calendar(user, calendar_id)
        events = [
            e
            for e in user.events.values()
            if (calendar_id is None or e.calendar_id == calendar_id)
            and e.start < window_end
            and e.end > window_start
        ]
        events.sort(key=lambda e: e.start)
        return self._event_collection(call, user, events, self._context(user, "calendarView"))

    # -- $batch

    def _batch(self, request: Request, headers: dict[str, str]) -> Response:
        if request.method != "POST":
            return _graph_error(
                405,
                "Request_BadRequest",
                "Specified HTTP method is not allowed for the request target.",
            )
        envelope = _GraphRequest("POST", "/$batch", request.query, headers, request.body)
        with self._lock:
            # The envelope itself is authenticated before any member runs.
            try:
                self._authenticate(envelope)
            except HTTPError as exc:
                return exc.response
        payload = envelope.json()
        members = payload.get("requests") if isinstance(payload, dict) else None
        if not isinstance(members, list) or not members:
            return _graph_error(400, "BadRequest", "Invalid batch payload format.")
        if len(members) > MAX_BATCH:
            return _graph_error(
                400, "BadRequest", f"Maximum number of requests in a batch is {MAX_BATCH}."
            )
        seen: set[str] = set()
        for member in members:
            if not isinstance(member, dict) or not all(
                isinstance(member.get(k), str) and member.get(k) for k in ("id", "method", "url")
            ):
                return _graph_error(400, "BadRequest", "Invalid batch payload format.")
            member_id = member["id"].lower()
            if member_id in seen:
                return _graph_error(
                    400, "BadRequest", f"Batch request contains duplicate id '{member['id']}'."
                )
            seen.add(member_id)
            member_headers = {
                str(k).lower(): str(v) for k, v in (member.get("headers") or {}).items()
            }
            if member["method"].upper() in ("POST", "PATCH", "PUT") and (
                "body" not in member or "content-type" not in member_headers
            ):
                return _graph_error(
                    400,
                    "BadRequest",
                    f"Write request id : {member['id']} does not contain Content-Type header "
                    "or body.",
                )
        for member in members:
            for dependency in member.get("dependsOn") or []:
                if str(dependency).lower() not in seen:
                    return _graph_error(
                        400, "BadRequest", f"Request id '{dependency}' in dependsOn was not found."
                    )
        self.stats.incr("batch_members", n=len(members))
        statuses: dict[str, int] = {}
        responses: list[dict[str, Any]] = []
        for member in members:
            member_id = member["id"]
            failed = [
                d for d in member.get("dependsOn") or [] if statuses.get(str(d).lower(), 0) >= 400
            ]
            if failed:
                response = _graph_error(
                    424, "FailedDependency", "Dependent request failed or was not executed."
                )
            else:
                call = self._member_call(member, headers)
                if call is None:
                    response = _graph_error(
                        400, "BadRequest", "Batch member urls must be relative, e.g. '/me'."
                    )
                else:
                    # A drop on a member drops the whole connection; members already
                    # processed stay committed (the interesting case for crash tests).
                    response = run_with_fault(
                        self.faults.decide("batch"),
                        lambda call=call: self._graph_call(call),
                        self._graph_fault_response,
                        self.faults.drop_mode,
                    )
            statuses[member_id.lower()] = response.status
            responses.append(self._member_response(member_id, response))
        return json_response(
            {"responses": responses}, 200, {"Content-Type": _ODATA_JSON, "OData-Version": "4.0"}
        )

    def _member_call(self, member: dict[str, Any], headers: dict[str, str]) -> _GraphRequest | None:
        url = member["url"]
        if "://" in url:
            return None
        if not url.startswith("/"):
            url = "/" + url
        split = urllib.parse.urlsplit(url)
        member_headers = {str(k).lower(): str(v) for k, v in (member.get("headers") or {}).items()}
        merged = {"authorization": headers.get("authorization", ""), **member_headers}
        body = member.get("body")
        if body is None:
            raw = b""
        elif isinstance(body, str) and "json" not in member_headers.get("content-type", ""):
            raw = base64.b64decode(body)
        else:
            raw = json.dumps(body).encode("utf-8")
        return _GraphRequest(
            member["method"].upper(),
            urllib.parse.unquote(split.path),
            urllib.parse.parse_qs(split.query, keep_blank_values=True),
            merged,
            raw,
            in_batch=True,
        )

    @staticmethod
    def _member_response(member_id: str, response: Response) -> dict[str, Any]:
        headers = {k: v for k, v in response.headers.items() if k.lower() != "content-length"}
        out: dict[str, Any] = {"id": member_id, "status": response.status, "headers": headers}
        if response.body:
            try:
                out["body"] = json.loads(response.body)
            except ValueError:
                out["body"] = base64.b64encode(response.body).decode("ascii")
        return out


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


# ------------------------------------------------------------------------- standalone


def main(argv: list[str] | None = None) -> int:
    """Run the fake until Ctrl-C (``python -m tests.fakes.microsoft --port 8766``)."""
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8766)
    parser.add_argument("--client-id", default=DEFAULT_CLIENT_ID)
    parser.add_argument("--client-secret", default=DEFAULT_CLIENT_SECRET)
    parser.add_argument(
        "--redirect-uri", action="append", help=f"repeatable; default {DEFAULT_REDIRECT_URI}"
    )
    parser.add_argument("--authority-host", default=DEFAULT_AUTHORITY_HOST)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--error-rate", type=float, default=0.0)
    parser.add_argument("--rate-limit-rate", type=float, default=0.0)
    parser.add_argument("--drop-rate", type=float, default=0.0)
    parser.add_argument("--drop-after-commit-rate", type=float, default=0.0)
    parser.add_argument("--verbose", action="store_true", help="log every request")
    args = parser.parse_args(argv)

    fake = FakeMicrosoft(
        args.host,
        args.port,
        seed=args.seed,
        verbose=args.verbose,
        authority_host=args.authority_host,
    )
    fake.faults.error_rate = args.error_rate
    fake.faults.rate_limit_rate = args.rate_limit_rate
    fake.faults.drop_rate = args.drop_rate
    fake.faults.drop_after_commit_rate = args.drop_after_commit_rate
    redirect_uris = args.redirect_uri or [DEFAULT_REDIRECT_URI]
    fake.register_client(args.client_id, args.client_secret, redirect_uris)
    fake.start()
    out = sys.stdout
    out.write(
        f"Fake Microsoft listening on {fake.url}\n"
        f"  MICROSOFT_CLIENT_ID={args.client_id}\n"
        f"  MICROSOFT_CLIENT_SECRET={args.client_secret}\n"
        "  MICROSOFT_TENANT_ID=common\n"
        f"  MICROSOFT_AUTHORITY_HOST={fake.authority_host}\n"
        f"  GRAPH_ENDPOINT={fake.graph_endpoint}\n"
        f"  redirect URIs: {' '.join(redirect_uris)}\n"
        f"  consent page:  {fake.url}/common/oauth2/v2.0/authorize?...\n"
        "msal requires an https authority: give ConfidentialClientApplication an\n"
        f"http_client that sends {fake.authority_host} to {fake.url}\n"
        "(tests.fakes.microsoft.LoopbackSession does that). Ctrl-C stops.\n"
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
