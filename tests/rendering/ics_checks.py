"""Checks every test applies to a feed it builds: byte rules, two parsers, one artifact file.

Each feed is written to `$ONCAL_FEED_ARTIFACTS` (default `test-artifacts/feeds/` in the
repository, gitignored), one file per test case, so CI can run `../shared/tools/ics-check`
over all of them. Here, icalendar and vobject must both parse it and agree.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import icalendar
import pytest
import vobject

__all__ = ["ParsedFeed", "artifacts_dir", "check_bytes", "keep_feed", "parse_feed", "save_feed"]

REPOSITORY = Path(__file__).resolve().parents[2]


def artifacts_dir() -> Path:
    """Where feeds built by tests are written (created on demand)."""
    configured = os.environ.get("ONCAL_FEED_ARTIFACTS")
    path = Path(configured) if configured else REPOSITORY / "test-artifacts" / "feeds"
    path.mkdir(parents=True, exist_ok=True)
    return path


def save_feed(name: str, body: bytes) -> Path:
    """Write `body` as `<name>.ics` (name made file-safe) and return the path."""
    safe = re.sub(r"[^A-Za-z0-9_.-]+", "_", name).strip("_")
    path = artifacts_dir() / f"{safe}.ics"
    path.write_bytes(body)
    return path


def check_bytes(body: bytes) -> None:
    """Assert RFC 5545 §3.1 at the byte level: CRLF lines of at most 75 octets, valid UTF-8.

    Splitting on bytes (not on decoded text) is what catches a fold inside a multi-octet
    character: such a line is not valid UTF-8 on its own.
    """
    assert not body.startswith(b"\xef\xbb\xbf"), "BOM at start"
    assert body.endswith(b"\r\n"), "last line not terminated by CRLF"
    lines = body[:-2].split(b"\r\n")
    for number, line in enumerate(lines, 1):
        assert b"\n" not in line, f"bare LF in line {number}"
        assert b"\r" not in line, f"bare CR in line {number}"
        assert len(line) <= 75, f"line {number} has {len(line)} octets"
        line.decode("utf-8")  # raises on a split character


@dataclass
class ParsedFeed:
    """A feed as icalendar sees it, after vobject agreed on every event."""

    calendar: icalendar.Calendar
    vcalendar: vobject.base.Component

    @property
    def events(self) -> dict[str, icalendar.Event]:
        """Events by UID."""
        return {str(e["UID"]): e for e in self.calendar.walk("VEVENT")}

    def event(self, uid: str) -> icalendar.Event:
        """The event with `uid` (KeyError when absent)."""
        return self.events[uid]

    def text(self, name: str) -> str:
        """A calendar-level TEXT property, unescaped (vobject unescapes X- properties too)."""
        return self.vcalendar.contents[name.lower()][0].value


def _instant(value: object) -> datetime:
    assert isinstance(value, datetime), value
    assert value.tzinfo is not None, "floating time"
    return value.astimezone(UTC)


def parse_feed(body: bytes) -> ParsedFeed:
    """Parse with icalendar and vobject; assert both see the same events and values."""
    check_bytes(body)
    text = body.decode("utf-8")
    calendar = icalendar.Calendar.from_ical(text)
    errors = [(c.name, e) for c in calendar.walk() for e in getattr(c, "errors", [])]
    assert not errors, errors
    vcalendars = list(vobject.readComponents(text, validate=True))
    assert len(vcalendars) == 1
    vcalendar = vcalendars[0]
    ours = {
        str(e["UID"]): (
            _instant(e.decoded("DTSTART")),
            _instant(e.decoded("DTEND")),
            str(e["SUMMARY"]),
            str(e["DESCRIPTION"]),
            str(e["STATUS"]),
            int(e["SEQUENCE"]),
        )
        for e in calendar.walk("VEVENT")
    }
    theirs = {
        v.uid.value: (
            _instant(v.dtstart.value),
            _instant(v.dtend.value),
            v.summary.value,
            v.description.value,
            v.status.value,
            int(v.sequence.value),
        )
        for v in vcalendar.contents.get("vevent", [])
    }
    assert len(calendar.walk("VEVENT")) == len(ours), "duplicate UIDs"
    assert ours == theirs
    return ParsedFeed(calendar, vcalendar)


@pytest.fixture
def keep_feed(request: pytest.FixtureRequest) -> Callable[..., ParsedFeed]:
    """Save a feed built by this test as an artifact, check it, and return it parsed.

    `keep_feed(body, "label")` names the file `<module>-<test>[-<label>][-<n>].ics`; a
    second different feed under the same name gets a number, the same bytes again are
    parsed once.
    """
    module = request.node.module.__name__.rsplit(".", 1)[-1]
    seen: dict[bytes, ParsedFeed] = {}
    names: dict[str, int] = {}

    def keep(body: bytes, label: str = "") -> ParsedFeed:
        if body in seen:
            return seen[body]
        name = "-".join(p for p in (module, request.node.name, label) if p)
        names[name] = names.get(name, 0) + 1
        save_feed(name if names[name] == 1 else f"{name}-{names[name]}", body)
        seen[body] = parse_feed(body)
        return seen[body]

    return keep
