"""rendering.ics: VEVENT bytes and the calendar frame, byte for byte."""

from __future__ import annotations

import itertools
from collections.abc import Callable
from dataclasses import replace
from datetime import UTC, datetime, timedelta

from freezegun import freeze_time
from hypothesis import given, settings
from hypothesis import strategies as st

from oncal_feed.rendering import RenderOptions, ShiftFacts, shift_event
from oncal_feed.rendering.ics import PRODID, calendar_bytes, calendar_frame, vevent_bytes
from tests.rendering.conftest import BASE_FACTS
from tests.rendering.ics_checks import ParsedFeed, parse_feed

OPTIONS = RenderOptions(base_url="https://oncal.example.test")
FactsMaker = Callable[..., ShiftFacts]
Keep = Callable[..., ParsedFeed]


def render(facts: ShiftFacts, options: RenderOptions = OPTIONS) -> bytes:
    """VEVENT bytes of `facts`."""
    return vevent_bytes(shift_event(facts, options))


def lines(block: bytes) -> list[str]:
    """Unfolded content lines of a block."""
    return block.decode().replace("\r\n ", "").split("\r\n")[:-1]


def test_vevent_properties(make_facts: FactsMaker, keep_feed: Keep) -> None:
    """Every property a calendar client needs, in UTC, from the facts alone."""
    block = render(make_facts())
    assert block.startswith(b"BEGIN:VEVENT\r\n")
    assert block.endswith(b"END:VEVENT\r\n")
    props = dict(line.split(":", 1) for line in lines(block))
    assert props["UID"] == BASE_FACTS.uid
    assert props["DTSTART"] == "20260302T080000Z"
    assert props["DTEND"] == "20260309T080000Z"
    assert props["SEQUENCE"] == "3"
    assert props["DTSTAMP"] == props["LAST-MODIFIED"] == "20260201T110007Z"
    assert props["CREATED"] == "20260201T100000Z"
    assert props["STATUS"] == "CONFIRMED"
    assert props["TRANSP"] == "TRANSPARENT"
    assert props["URL"] == "https://runbooks.example.com/payments"
    assert props["SUMMARY"] == "On-call · Payments"
    parsed = keep_feed(calendar_bytes("Test", "", [block]))
    assert parsed.event(BASE_FACTS.uid).decoded("DTSTART") == BASE_FACTS.starts_at


def test_a_reminder_is_a_display_alarm_before_the_start(
    make_facts: FactsMaker, keep_feed: Keep
) -> None:
    """The chosen reminder is one VALARM (DISPLAY, the title, a negative duration from the
    start); a cancelled shift gets none; every checker in ics-check accepts both."""
    reminded = render(make_facts(), replace(OPTIONS, reminder_minutes=15))
    alarm = lines(reminded)
    start = alarm.index("BEGIN:VALARM")
    assert alarm[start : start + 5] == [
        "BEGIN:VALARM",
        "ACTION:DISPLAY",
        "DESCRIPTION:On-call · Payments",
        "TRIGGER:-PT15M",
        "END:VALARM",
    ]
    cancelled = render(
        make_facts(uid="gone@oncal", cancelled=True), replace(OPTIONS, reminder_minutes=15)
    )
    assert b"VALARM" not in cancelled
    parsed = keep_feed(calendar_bytes("Test", "", [reminded, cancelled]))
    (kept,) = parsed.event(BASE_FACTS.uid).walk("VALARM")
    assert kept.decoded("TRIGGER") == -timedelta(minutes=15)


def test_a_handoff_reminder_is_a_second_alarm_before_the_end(
    make_facts: FactsMaker, keep_feed: Keep
) -> None:
    """The hand-off reminder is a VALARM related to the event's end (RFC 5545 RELATED=END),
    next to the one before the start; a cancelled shift gets neither."""
    options = replace(OPTIONS, reminder_minutes=15, handoff_reminder_minutes=10)
    reminded = render(make_facts(), options)
    body = lines(reminded)
    assert body.count("BEGIN:VALARM") == 2
    assert "TRIGGER:-PT15M" in body
    assert "TRIGGER;RELATED=END:-PT10M" in body
    assert "DESCRIPTION:Hand-off: On-call · Payments" in body
    cancelled = render(make_facts(uid="gone@oncal", cancelled=True), options)
    assert b"VALARM" not in cancelled
    parsed = keep_feed(calendar_bytes("Test", "", [reminded, cancelled]))
    alarms = parsed.event(BASE_FACTS.uid).walk("VALARM")
    related = {str(alarm["TRIGGER"].params.get("RELATED", "START")) for alarm in alarms}
    assert related == {"START", "END"}


def test_a_handoff_reminder_is_part_of_the_cached_bytes_key(make_facts: FactsMaker) -> None:
    """Feeds cache each event's bytes by `cache_key`: two feeds differing only in the
    hand-off reminder must not share them."""
    facts = make_facts()
    plain = shift_event(facts, OPTIONS)
    with_handoff = shift_event(facts, replace(OPTIONS, handoff_reminder_minutes=10))
    assert with_handoff.cache_key != plain.cache_key
    assert render(facts, replace(OPTIONS, handoff_reminder_minutes=10)) != render(facts)


def test_cancelled_and_busy(make_facts: FactsMaker) -> None:
    """A tombstone is STATUS:CANCELLED at its higher SEQUENCE; busy makes TRANSP:OPAQUE."""
    props = dict(
        line.split(":", 1)
        for line in lines(
            render(make_facts(cancelled=True, revision=4), replace(OPTIONS, busy=True))
        )
    )
    assert (props["STATUS"], props["SEQUENCE"], props["TRANSP"]) == ("CANCELLED", "4", "OPAQUE")


def test_same_data_same_bytes_whatever_the_clock(make_facts: FactsMaker) -> None:
    """Nothing comes from "now": two renders a year apart are byte-identical."""
    with freeze_time("2026-01-01T00:00:00Z"):
        early = render(make_facts())
        early_frame = calendar_frame("On-call — Alice", "x")
    with freeze_time("2027-06-15T13:14:15Z"):
        late = render(make_facts())
        late_frame = calendar_frame("On-call — Alice", "x")
    assert early == late
    assert early_frame == late_frame
    assert b"2026010" not in early
    assert b"20270615" not in early


def test_sequence_and_stamps_follow_the_facts(make_facts: FactsMaker) -> None:
    """A new revision and updated_at show up as SEQUENCE and DTSTAMP/LAST-MODIFIED."""
    later = datetime(2026, 2, 20, 9, 30, tzinfo=UTC)
    props = dict(
        line.split(":", 1) for line in lines(render(make_facts(revision=9, updated_at=later)))
    )
    assert props["SEQUENCE"] == "9"
    assert props["DTSTAMP"] == props["LAST-MODIFIED"] == "20260220T093000Z"


def test_frame_properties_and_no_method() -> None:
    """RFC 5545 + RFC 7986 calendar properties; no METHOD (PUBLISH would need ORGANIZER)."""
    header, footer = calendar_frame("On-call — Zoë", "Shifts of Zoë.")
    props = dict(line.split(":", 1) for line in lines(header))
    assert props["VERSION"] == "2.0"
    assert props["PRODID"] == PRODID
    assert props["CALSCALE"] == "GREGORIAN"
    assert props["NAME"] == props["X-WR-CALNAME"] == "On-call — Zoë"
    assert props["DESCRIPTION"] == props["X-WR-CALDESC"] == "Shifts of Zoë."
    assert props["REFRESH-INTERVAL;VALUE=DURATION"] == "PT1H"
    assert props["X-PUBLISHED-TTL"] == "PT1H"
    assert not any(line.startswith("METHOD") for line in lines(header))
    assert footer == b"END:VCALENDAR\r\n"


def test_frame_text_is_escaped(keep_feed: Keep) -> None:
    """NAME and X-WR-* are TEXT too: commas, semicolons, backslashes and breaks escaped."""
    name, description = "On-call — O'Neil, Jr.; a\\b\nc", "line one\nline two, ; \\"
    header, _ = calendar_frame(name, description)
    assert "NAME:On-call — O'Neil\\, Jr.\\; a\\\\b c\r\n" in header.decode()
    parsed = keep_feed(calendar_bytes(name, description, []))
    assert parsed.text("NAME") == parsed.text("X-WR-CALNAME") == "On-call — O'Neil, Jr.; a\\b c"
    assert parsed.text("X-WR-CALDESC") == description
    assert str(parsed.calendar["DESCRIPTION"]) == description


def test_long_unicode_lines_fold_at_75_octets_between_characters(
    make_facts: FactsMaker, keep_feed: Keep
) -> None:
    """Folding counts octets and never splits a multi-octet character."""
    facts = make_facts(
        schedule_name="Zahlungsverkehr 🚨 " + "é" * 120 + "日本語" * 20,
        notes="→ " * 200 + "👩🏽‍💻" * 30,
    )
    block = render(facts)
    parsed = keep_feed(calendar_bytes("🚨 " * 60, "", [block]))
    event = parsed.event(facts.uid)
    spec = shift_event(facts, OPTIONS)
    assert str(event["SUMMARY"]) == spec.summary
    assert str(event["DESCRIPTION"]) == spec.description


def test_empty_calendar(keep_feed: Keep) -> None:
    """A calendar with no events is still a valid calendar."""
    parsed = keep_feed(calendar_bytes("On-call — Nobody", "", []))
    assert parsed.events == {}


def test_calendar_is_header_events_footer(make_facts: FactsMaker, keep_feed: Keep) -> None:
    """calendar_bytes only joins: the events appear unchanged and in order."""
    blocks = [
        render(
            make_facts(
                uid=f"shift-{n}@oncal-feed", starts_at=BASE_FACTS.starts_at + timedelta(days=n)
            )
        )
        for n in range(3)
    ]
    body = calendar_bytes("On-call — Alice", "", blocks)
    header, footer = calendar_frame("On-call — Alice", "")
    assert body == header + b"".join(blocks) + footer
    parsed = keep_feed(body)
    assert list(parsed.events) == [f"shift-{n}@oncal-feed" for n in range(3)]


def test_any_text_round_trips_through_both_parsers(keep_feed: Keep) -> None:
    """Arbitrary names and notes come back exactly as the spec said; one artifact holds all."""
    blocks: list[bytes] = []
    numbers = itertools.count()

    @settings(max_examples=60, deadline=None)
    @given(name=st.text(min_size=1, max_size=200), notes=st.text(max_size=400))
    def check(name: str, notes: str) -> None:
        facts = replace(
            BASE_FACTS, uid=f"fuzz-{next(numbers)}@oncal-feed", schedule_name=name, notes=notes
        )
        spec = shift_event(facts, OPTIONS)
        block = vevent_bytes(spec)
        parsed = parse_feed(calendar_bytes(name, notes, [block]))
        event = parsed.event(facts.uid)
        assert str(event["SUMMARY"]) == spec.summary
        assert str(event["DESCRIPTION"]) == spec.description
        blocks.append(block)

    check()
    keep_feed(calendar_bytes("Fuzz", "", blocks))
