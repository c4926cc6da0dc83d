"""State of the fake Microsoft cloud: apps, mailboxes (calendars, events), codes, tokens."""

from __future__ import annotations

import json
import re
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from tests.fakes.server import (
    HTTPError,
    Response,
    json_response,
)

DEFAULT_AUTHORITY_HOST = "https://login.microsoftonline.com"


GRAPH_HOST = "https://graph.microsoft.com"


DEFAULT_TENANT_ID = "9c2d4f1e-3a5b-4c6d-8e7f-0a1b2c3d4e5f"


DEFAULT_CLIENT_ID = "test-client"


DEFAULT_CLIENT_SECRET = "test-secret"


DEFAULT_REDIRECT_URI = "http://127.0.0.1:8000/api/calendar/microsoft/callback"


GRAPH_APP_ID = "00000003-0000-0000-c000-000000000000"


OIDC_SCOPES = frozenset({"openid", "profile", "email", "offline_access"})


TENANT_ALIASES = frozenset({"common", "organizations", "consumers"})


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
