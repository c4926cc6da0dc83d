"""Input validation shared by the JSON API and the CLI importer.

Each `parse_*` function turns untrusted JSON-like data into a frozen input object, or
raises `ValidationError` naming every bad field. Nothing here touches the database.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from functools import cache
from typing import Any
from zoneinfo import available_timezones

from oncal_feed.errors import FieldError, ValidationError

__all__ = [
    "MAX_SHIFT_LENGTH",
    "ROLES",
    "ScheduleInput",
    "ShiftInput",
    "UserInput",
    "is_known_zone",
    "parse_instant",
    "parse_schedule",
    "parse_shift",
    "parse_user",
    "parse_window",
]

MAX_SHIFT_LENGTH = timedelta(days=31)
MAX_WINDOW_LENGTH = timedelta(days=3 * 366)
ROLES = ("primary", "secondary", "override", "shadow")
MAX_NOTES_LENGTH = 4000

_RFC3339 = re.compile(r"^\d{4}-\d{2}-\d{2}[Tt]\d{2}:\d{2}:\d{2}(\.\d{1,9})?([Zz]|[+-]\d{2}:\d{2})$")
_EMAIL = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")
_KEY = re.compile(r"^[a-z0-9][a-z0-9_-]{0,63}$")
_EXTERNAL_ID = re.compile(r"^[A-Za-z0-9._:~@-]{1,255}$")


@dataclass(frozen=True)
class ShiftInput:
    """A validated shift as a source system describes it."""

    external_id: str
    user_email: str
    starts_at: datetime
    ends_at: datetime
    role: str = "primary"
    notes: str = ""


@dataclass(frozen=True)
class UserInput:
    """Validated user fields; `None` means "not given" (for partial updates)."""

    email: str | None = None
    display_name: str | None = None
    time_zone: str | None = None


@dataclass(frozen=True)
class ScheduleInput:
    """Validated schedule fields."""

    name: str
    time_zone: str
    url: str | None = None


@cache
def _zones() -> frozenset[str]:
    return frozenset(available_timezones())


def is_known_zone(name: str) -> bool:
    """Tell whether `name` is an IANA time zone this machine knows."""
    return name in _zones()


class _Errors:
    """Collects field errors so one response can name every problem at once."""

    def __init__(self, prefix: str = "") -> None:
        self.prefix = prefix
        self.items: list[FieldError] = []

    def add(self, field: str, problem: str) -> None:
        self.items.append(FieldError(self.prefix + field, problem))

    def raise_if_any(self) -> None:
        if self.items:
            raise ValidationError(self.items)


def _object(data: Any, allowed: set[str], required: set[str], errors: _Errors) -> Mapping:
    if not isinstance(data, Mapping):
        errors.add("" if not errors.prefix else errors.prefix.rstrip("."), "must be an object")
        errors.raise_if_any()
    for name in sorted(set(data) - allowed):
        errors.add(name, "unknown field")
    for name in sorted(required - set(data)):
        errors.add(name, "is required")
    return data


def _text(
    data: Mapping, name: str, errors: _Errors, *, max_length: int, allow_empty: bool = False
) -> str | None:
    value = data.get(name)
    if name not in data:
        return None
    if not isinstance(value, str):
        errors.add(name, "must be a string")
        return None
    value = value.strip()
    if not value and not allow_empty:
        errors.add(name, "must not be empty")
        return None
    if len(value) > max_length:
        errors.add(name, f"must be at most {max_length} characters")
        return None
    return value


def parse_instant(value: Any, field: str) -> datetime:
    """Parse an RFC 3339 date-time with an offset into an aware UTC datetime."""
    if not isinstance(value, str) or not _RFC3339.match(value):
        raise ValidationError.single(
            field, "must be an RFC 3339 date-time with an offset, e.g. 2026-03-01T09:00:00Z"
        )
    try:
        parsed = datetime.fromisoformat(value.upper())
    except ValueError:
        raise ValidationError.single(field, "is not a valid date-time") from None
    return parsed.astimezone(UTC)


def _instant(data: Mapping, name: str, errors: _Errors) -> datetime | None:
    if name not in data:
        return None
    try:
        return parse_instant(data[name], errors.prefix + name)
    except ValidationError as exc:
        errors.items.extend(exc.errors)
        return None


def _zone(data: Mapping, name: str, errors: _Errors) -> str | None:
    value = _text(data, name, errors, max_length=64)
    if value is not None and not is_known_zone(value):
        errors.add(name, f"{value!r} is not a known IANA time zone (e.g. Europe/Berlin)")
        return None
    return value


def _email(data: Mapping, name: str, errors: _Errors) -> str | None:
    value = _text(data, name, errors, max_length=320)
    if value is not None and not _EMAIL.match(value):
        errors.add(name, "must be an email address")
        return None
    return value.lower() if value else value


def parse_shift(data: Any, prefix: str = "", external_id: str | None = None) -> ShiftInput:
    """Validate one shift object; `external_id` comes from the URL when given there."""
    errors = _Errors(prefix)
    allowed = {"user_email", "starts_at", "ends_at", "role", "notes"}
    required = {"user_email", "starts_at", "ends_at"}
    if external_id is None:
        allowed.add("external_id")
        required.add("external_id")
    data = _object(data, allowed, required, errors)
    if external_id is None:
        external_id = _text(data, "external_id", errors, max_length=255)
    if external_id is not None and not _EXTERNAL_ID.match(external_id):
        errors.add("external_id", "must be 1-255 characters of letters, digits and . _ : ~ @ -")
    user_email = _email(data, "user_email", errors)
    starts_at = _instant(data, "starts_at", errors)
    ends_at = _instant(data, "ends_at", errors)
    role = _text(data, "role", errors, max_length=32) or "primary"
    if role not in ROLES:
        errors.add("role", f"must be one of {', '.join(ROLES)}")
    notes = _text(data, "notes", errors, max_length=MAX_NOTES_LENGTH, allow_empty=True) or ""
    if starts_at and ends_at:
        if ends_at <= starts_at:
            errors.add("ends_at", "must be after starts_at")
        elif ends_at - starts_at > MAX_SHIFT_LENGTH:
            errors.add("ends_at", "a shift may last at most 31 days")
    errors.raise_if_any()
    assert external_id and user_email and starts_at and ends_at
    return ShiftInput(external_id, user_email, starts_at, ends_at, role, notes)


def parse_user(data: Any, *, partial: bool = False) -> UserInput:
    """Validate user fields; with `partial`, every field is optional (PATCH)."""
    errors = _Errors()
    allowed = {"email", "display_name", "time_zone"}
    data = _object(data, allowed, set() if partial else {"email", "display_name"}, errors)
    result = UserInput(
        email=_email(data, "email", errors),
        display_name=_text(data, "display_name", errors, max_length=200),
        time_zone=_zone(data, "time_zone", errors),
    )
    errors.raise_if_any()
    return result


def parse_schedule(data: Any) -> ScheduleInput:
    """Validate a schedule's fields (name, IANA zone, optional http(s) URL)."""
    errors = _Errors()
    data = _object(data, {"name", "time_zone", "url"}, {"name", "time_zone"}, errors)
    name = _text(data, "name", errors, max_length=200)
    zone = _zone(data, "time_zone", errors)
    url = _text(data, "url", errors, max_length=2000)
    if url is not None and not url.startswith(("https://", "http://")):
        errors.add("url", "must be an http(s) URL")
    errors.raise_if_any()
    assert name and zone
    return ScheduleInput(name, zone, url)


def parse_schedule_key(key: str) -> str:
    """Check a schedule key: lowercase letters, digits, - and _, at most 64."""
    if not _KEY.match(key):
        raise ValidationError.single(
            "key", "must be 1-64 lowercase letters, digits, '-' or '_', starting with one"
        )
    return key


def parse_window(start: Any, end: Any) -> tuple[datetime, datetime]:
    """Validate a `[from, to)` window given as RFC 3339 strings (query parameters)."""
    errors = _Errors()
    data = {"from": start, "to": end}
    for name in ("from", "to"):
        if data[name] is None:
            errors.add(name, "is required")
    errors.raise_if_any()
    window_start = _instant(data, "from", errors)
    window_end = _instant(data, "to", errors)
    if window_start and window_end:
        if window_end <= window_start:
            errors.add("to", "must be after from")
        elif window_end - window_start > MAX_WINDOW_LENGTH:
            errors.add("to", "the window may span at most 3 years")
    errors.raise_if_any()
    assert window_start and window_end
    return window_start, window_end
