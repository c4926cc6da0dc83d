"""Graph's value shapes in the fake: date-times and time zones, text and HTML bodies."""

from __future__ import annotations

import html
import html.parser
import re
from datetime import UTC, datetime
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from tests.fakes.microsoft.model import _WINDOWS_ZONES, _graph_error
from tests.fakes.server import (
    HTTPError,
)


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
