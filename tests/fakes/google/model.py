"""State of the fake Google cloud: scopes, apps, users, grants and tokens, calendars and events."""

from __future__ import annotations

import base64
import secrets
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from typing import Any
from zoneinfo import ZoneInfo

from tests.fakes.server import (
    Response,
    json_response,
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
