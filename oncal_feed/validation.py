"""Input validation shared by the JSON API and the CLI importer.

Each `parse_*` function turns untrusted JSON-like data into a frozen input object, or
raises `ValidationError` naming every bad field. Nothing here touches the database, so
whatever passes is safe to store on SQLite and PostgreSQL alike.
"""

from __future__ import annotations

import re
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from functools import cache, lru_cache
from typing import Any
from urllib.parse import urlsplit
from zoneinfo import available_timezones

from email_validator import EmailNotValidError, validate_email

from oncal_feed.errors import FieldError, ValidationError

__all__ = [
    "EARLIEST_INSTANT",
    "LATEST_INSTANT",
    "MAX_PAGE_SIZE",
    "MAX_SHIFT_LENGTH",
    "MAX_WINDOW_LENGTH",
    "ROLES",
    "ScheduleInput",
    "ShiftInput",
    "SourceInput",
    "UserInput",
    "is_known_zone",
    "normalize_email",
    "parse_external_id",
    "parse_instant",
    "parse_page",
    "parse_public_id",
    "parse_schedule",
    "parse_schedule_key",
    "parse_shift",
    "parse_shift_list",
    "parse_source",
    "parse_source_id",
    "parse_user",
    "parse_window",
    "refuse_repeated",
    "repeated_parameters",
]

MAX_SHIFT_LENGTH = timedelta(days=31)
MAX_WINDOW_LENGTH = timedelta(days=3 * 366)
ROLES = ("primary", "secondary", "override", "shadow")
MAX_NOTES_LENGTH = 4000
SOURCE_KINDS = ("ics", "pagerduty")
# Seconds between polls of a source: not more often than every 15 s, at least once a day.
POLL_INTERVAL_RANGE = (15, 86_400)
MAX_PAGE_SIZE = 500
DEFAULT_PAGE_SIZE = 100
# Instants outside this range are refused: the store widens query ranges by a shift's
# maximum length, which would overflow `datetime` near years 1 and 9999.
EARLIEST_INSTANT = datetime(1900, 1, 1, tzinfo=UTC)
LATEST_INSTANT = datetime(9000, 1, 1, tzinfo=UTC)

# re.ASCII: `\d` would otherwise accept any script's digits. Patterns are used with
# `fullmatch`, because `$` also matches before a trailing newline.
_RFC3339 = re.compile(
    r"\d{4}-\d{2}-\d{2}[Tt]\d{2}:\d{2}:\d{2}(\.\d{1,9})?([Zz]|[+-]\d{2}:\d{2})", re.ASCII
)
_SPACE_FOR_PLUS = re.compile(r".*\d \d{2}:\d{2}", re.ASCII)
_KEY = re.compile(r"[a-z0-9][a-z0-9_-]{0,63}", re.ASCII)
_EXTERNAL_ID = re.compile(r"[A-Za-z0-9._:~@-]{1,255}", re.ASCII)
_PUBLIC_ID = re.compile(r"[A-Za-z0-9_-]{1,40}", re.ASCII)
_PAGERDUTY_ID = re.compile(r"[A-Z0-9]{1,20}", re.ASCII)
_SOURCE_ID = re.compile(r"[0-9]{1,12}", re.ASCII)
_PAGE_LIMIT = re.compile(r"[0-9]{1,6}", re.ASCII)
# PostgreSQL refuses NUL in text and no database can store a lone surrogate; other
# control characters would end up inside calendar events. Notes may keep line breaks.
_BAD_IN_LINE = re.compile(r"[\x00-\x1f\x7f\ud800-\udfff]")
_BAD_IN_TEXT = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f\ud800-\udfff]")
# Names `available_timezones()` may list that are not portable IANA zones.
_NOT_IANA = frozenset({"localtime", "Factory", "posixrules"})
_INSTANT_HELP = "must be an RFC 3339 date-time with an offset, e.g. 2026-03-01T09:00:00Z"


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
    return frozenset(available_timezones()) - _NOT_IANA


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


def _object(data: Any, allowed: set[str], required: set[str], errors: _Errors) -> Mapping[str, Any]:
    if not isinstance(data, Mapping):
        # The whole value is at fault: name it `body`, or `[3]` for an item of a list.
        where = errors.prefix.removesuffix(".") or "body"
        raise ValidationError([FieldError(where, "must be a JSON object")])
    for name in sorted(set(data) - allowed):
        errors.add(name, "unknown field")
    for name in sorted(required - set(data)):
        errors.add(name, "is required")
    return data


def _text(
    data: Mapping[str, Any],
    name: str,
    errors: _Errors,
    *,
    max_length: int,
    allow_empty: bool = False,
    multiline: bool = False,
) -> str | None:
    if name not in data:
        return None
    value = data[name]
    if not isinstance(value, str):
        errors.add(name, "must be a string")
        return None
    value = value.strip()
    if (_BAD_IN_TEXT if multiline else _BAD_IN_LINE).search(value):
        errors.add(name, "must not contain control characters")
        return None
    if not value and not allow_empty:
        errors.add(name, "must not be empty")
        return None
    if len(value) > max_length:
        errors.add(name, f"must be at most {max_length} characters")
        return None
    return value


def parse_instant(value: Any, field: str) -> datetime:
    """Parse an RFC 3339 date-time with an offset into an aware UTC datetime.

    Date-only values, naive date-times and anything outside the years 1900-8999 are refused.
    """
    if not isinstance(value, str) or not _RFC3339.fullmatch(value):
        hint = ""
        if isinstance(value, str) and _SPACE_FOR_PLUS.fullmatch(value):
            hint = " (in a URL, write the '+' of an offset as %2B)"
        raise ValidationError.single(field, _INSTANT_HELP + hint)
    try:
        parsed = datetime.fromisoformat(value.upper()).astimezone(UTC)
    except (ValueError, OverflowError):
        raise ValidationError.single(field, "is not a valid date-time") from None
    if not EARLIEST_INSTANT <= parsed < LATEST_INSTANT:
        raise ValidationError.single(field, "must be between the years 1900 and 8999")
    return parsed


def _instant(data: Mapping[str, Any], name: str, errors: _Errors) -> datetime | None:
    if name not in data:
        return None
    try:
        return parse_instant(data[name], errors.prefix + name)
    except ValidationError as exc:
        errors.items.extend(exc.errors)
        return None


def _zone(data: Mapping[str, Any], name: str, errors: _Errors) -> str | None:
    value = _text(data, name, errors, max_length=64)
    if value is not None and not is_known_zone(value):
        errors.add(name, f"{value!r} is not a known IANA time zone (e.g. Europe/Berlin)")
        return None
    return value


# An import of 10,000 shifts names a few dozen people: without the cache, checking the
# same addresses again was a third of the whole import's time.
@lru_cache(maxsize=4096)
def normalize_email(value: str) -> str | None:
    """Return the email address `value` in the form we store (lower case), or None when
    it is not one.

    email-validator checks the syntax (no display names or angle brackets, no dot or
    hyphen in the wrong place, a domain with a dot that is not reserved); it makes no
    DNS lookup, so the answer never depends on the network, and the answer for a given
    string never changes, so it is cached.
    """
    try:
        checked = validate_email(value, check_deliverability=False)
    except EmailNotValidError:
        return None
    return checked.normalized.lower()


def _email(data: Mapping[str, Any], name: str, errors: _Errors) -> str | None:
    value = _text(data, name, errors, max_length=320)
    if value is None:
        return None
    email = normalize_email(value)
    if email is None:
        errors.add(name, "must be an email address, such as name@example.com")
    return email


def _url(data: Mapping[str, Any], name: str, errors: _Errors) -> str | None:
    if data.get(name) is None:
        return None  # null and absent both mean "no link"
    value = _text(data, name, errors, max_length=2000)
    if value is None:
        return None
    parts = urlsplit(value)
    if parts.scheme not in ("http", "https") or not parts.netloc or " " in value:
        errors.add(name, "must be an http(s) URL")
        return None
    return value


def parse_shift(data: Any, prefix: str = "", external_id: str | None = None) -> ShiftInput:
    """Validate one shift object; `external_id` comes from the URL when given there.

    With an `external_id` from the URL the body may omit it, or repeat the same value (so
    one shape serves both the single PUT and the window import).
    """
    errors = _Errors(prefix)
    allowed = {"external_id", "user_email", "starts_at", "ends_at", "role", "notes"}
    required = {"user_email", "starts_at", "ends_at"} | (
        {"external_id"} if not external_id else set()
    )
    data = _object(data, allowed, required, errors)
    if external_id is None:
        external_id = _text(data, "external_id", errors, max_length=255)
    elif "external_id" in data and data["external_id"] != external_id:
        errors.add("external_id", "must match the external id in the URL (or be left out)")
    if external_id is not None and not _EXTERNAL_ID.fullmatch(external_id):
        errors.add("external_id", "must be 1-255 characters of letters, digits and . _ : ~ @ -")
    user_email = _email(data, "user_email", errors)
    starts_at = _instant(data, "starts_at", errors)
    ends_at = _instant(data, "ends_at", errors)
    role = _text(data, "role", errors, max_length=32) or "primary"
    if role not in ROLES:
        errors.add("role", f"must be one of {', '.join(ROLES)}")
    notes = _text(
        data, "notes", errors, max_length=MAX_NOTES_LENGTH, allow_empty=True, multiline=True
    )
    if starts_at and ends_at:
        if ends_at <= starts_at:
            errors.add("ends_at", "must be after starts_at")
        elif ends_at - starts_at > MAX_SHIFT_LENGTH:
            errors.add("ends_at", "a shift may last at most 31 days")
    errors.raise_if_any()
    assert external_id and user_email and starts_at and ends_at
    return ShiftInput(external_id, user_email, starts_at, ends_at, role, notes or "")


def parse_shift_list(data: Any) -> list[ShiftInput]:
    """Validate a JSON array of shifts, naming every bad item by index (`[3].starts_at`)."""
    if not isinstance(data, list):
        raise ValidationError.single("body", "must be a JSON array of shifts")
    items: list[ShiftInput] = []
    problems: list[FieldError] = []
    for index, raw in enumerate(data):
        try:
            items.append(parse_shift(raw, prefix=f"[{index}]."))
        except ValidationError as exc:
            problems.extend(exc.errors)
    if problems:
        raise ValidationError(problems)
    return items


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
    """Validate a schedule's fields (name, IANA zone, optional http(s) URL or null)."""
    errors = _Errors()
    data = _object(data, {"name", "time_zone", "url"}, {"name", "time_zone"}, errors)
    name = _text(data, "name", errors, max_length=200)
    zone = _zone(data, "time_zone", errors)
    url = _url(data, "url", errors)
    errors.raise_if_any()
    assert name and zone
    return ScheduleInput(name, zone, url)


def parse_schedule_key(key: Any) -> str:
    """Check a schedule key: lowercase letters, digits, - and _, at most 64."""
    if not isinstance(key, str) or not _KEY.fullmatch(key):
        raise ValidationError.single(
            "key", "must be 1-64 lowercase letters, digits, '-' or '_', starting with one"
        )
    return key


def parse_external_id(external_id: Any) -> str:
    """Check a shift's external id as given in a URL path."""
    if not isinstance(external_id, str) or not _EXTERNAL_ID.fullmatch(external_id):
        raise ValidationError.single(
            "external_id", "must be 1-255 characters of letters, digits and . _ : ~ @ -"
        )
    return external_id


def parse_public_id(public_id: Any) -> str:
    """Check a user's public id as given in a URL path (e.g. `u_Xb3...`)."""
    if not isinstance(public_id, str) or not _PUBLIC_ID.fullmatch(public_id):
        raise ValidationError.single("id", "must be a user id such as u_3kTq0sZ1mNw8")
    return public_id


def parse_page(limit: str | None, after: str | None) -> tuple[int, str]:
    """Validate paging query parameters: `limit` (1-500, default 100) and `after` (an email)."""
    errors = _Errors()
    size = DEFAULT_PAGE_SIZE
    if limit is not None:
        if _PAGE_LIMIT.fullmatch(limit) and 1 <= int(limit) <= MAX_PAGE_SIZE:
            size = int(limit)
        else:
            errors.add("limit", f"must be a whole number from 1 to {MAX_PAGE_SIZE}")
    given = {} if after is None else {"after": after}
    start = _text(given, "after", errors, max_length=320, allow_empty=True) or ""
    errors.raise_if_any()
    return size, start


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


def repeated_parameters(
    args: Mapping[str, Sequence[str]], repeatable: Collection[str] = ()
) -> list[FieldError]:
    """Name each query parameter given more than once that may be given only once.

    A request that says `from=A&to=B&from=C` is ambiguous; taking either value would
    act on something the client may not have meant (and the call may delete).
    """
    return [
        FieldError(name, "must be given at most once")
        for name, values in sorted(args.items())
        if len(values) > 1 and name not in repeatable
    ]


def refuse_repeated(args: Mapping[str, Sequence[str]], repeatable: Collection[str] = ()) -> None:
    """Raise `ValidationError` when a single-valued query parameter is repeated."""
    errors = repeated_parameters(args, repeatable)
    if errors:
        raise ValidationError(errors)


@dataclass(frozen=True)
class SourceInput:
    """Validated source fields; `None` means "not given" (for partial updates).

    `url` (an ICS/webcal feed) and `api_token` (PagerDuty) are secrets: the store keeps
    them only encrypted.
    """

    kind: str | None = None
    name: str | None = None
    url: str | None = None
    api_token: str | None = None
    pagerduty_schedule_ids: tuple[str, ...] | None = None
    user_email: str | None = None
    role: str | None = None
    poll_interval: int | None = None


def parse_source(data: Any, *, partial: bool = False) -> SourceInput:
    """Validate a source: `kind` "ics" needs `url`; "pagerduty" `api_token` and schedule ids.

    With `partial` (PATCH) every field is optional and `kind` can't change.
    """
    errors = _Errors()
    allowed = {
        "name", "url", "api_token", "pagerduty_schedule_ids", "user_email", "role",
        "poll_interval",
    } | (set() if partial else {"kind"})  # fmt: skip
    data = _object(data, allowed, set() if partial else {"kind", "name"}, errors)
    kind = _text(data, "kind", errors, max_length=16)
    if kind is not None and kind not in SOURCE_KINDS:
        errors.add("kind", f"must be one of {', '.join(SOURCE_KINDS)}")
    url = _text(data, "url", errors, max_length=2000)
    if url is not None:
        scheme = urlsplit(url).scheme.lower()
        if scheme not in ("http", "https", "webcal") or not urlsplit(url).hostname or " " in url:
            errors.add("url", "must be an https://, http:// or webcal:// address")
            url = None
    token = _text(data, "api_token", errors, max_length=200)
    schedule_ids = _pagerduty_ids(data, errors)
    role = _text(data, "role", errors, max_length=32)
    if role is not None and role not in ROLES:
        errors.add("role", f"must be one of {', '.join(ROLES)}")
    interval = data.get("poll_interval")
    low, high = POLL_INTERVAL_RANGE
    if interval is not None and (
        not isinstance(interval, int) or isinstance(interval, bool) or not low <= interval <= high
    ):
        errors.add("poll_interval", f"must be a whole number of seconds from {low} to {high}")
        interval = None
    if not partial and kind == "ics" and "url" not in data:
        errors.add("url", "is required for an ics source")
    if not partial and kind == "pagerduty":
        for name in ("api_token", "pagerduty_schedule_ids"):
            if name not in data:
                errors.add(name, "is required for a pagerduty source")
    if not partial and kind == "ics":
        for name in ("api_token", "pagerduty_schedule_ids"):
            if name in data:
                errors.add(name, "only a pagerduty source has this")
    if not partial and kind == "pagerduty" and "url" in data:
        errors.add("url", "a pagerduty source reads PagerDuty's API; give no url")
    result = SourceInput(
        kind=kind,
        name=_text(data, "name", errors, max_length=200),
        url=url,
        api_token=token,
        pagerduty_schedule_ids=schedule_ids,
        user_email=_email(data, "user_email", errors),
        role=role,
        poll_interval=interval,
    )
    errors.raise_if_any()
    return result


def _pagerduty_ids(data: Mapping[str, Any], errors: _Errors) -> tuple[str, ...] | None:
    if "pagerduty_schedule_ids" not in data:
        return None
    value = data["pagerduty_schedule_ids"]
    if (
        not isinstance(value, list)
        or not 1 <= len(value) <= 20
        or not all(isinstance(v, str) and _PAGERDUTY_ID.fullmatch(v) for v in value)
    ):
        errors.add(
            "pagerduty_schedule_ids",
            "must be a list of 1-20 PagerDuty schedule ids such as PI7DH85",
        )
        return None
    return tuple(value)


def parse_source_id(value: Any) -> int:
    """Check a source id as given in a URL path or on the command line."""
    if not isinstance(value, str | int) or not _SOURCE_ID.fullmatch(str(value)):
        raise ValidationError.single("source_id", "must be a source id (a whole number)")
    return int(value)
