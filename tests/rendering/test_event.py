"""shift_event: what a shift looks like as a calendar event, before any format."""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import replace
from datetime import UTC, datetime, timedelta, timezone

from hypothesis import given
from hypothesis import strategies as st

from oncal_feed.rendering import Colleague, EventSpec, RenderOptions, ShiftFacts, shift_event
from oncal_feed.rendering.event import clean_line, clean_text, clean_url
from tests.rendering.conftest import BASE_FACTS

OPTIONS = RenderOptions(base_url="https://oncal.example.test")
FactsMaker = Callable[..., ShiftFacts]


def test_summary_and_description_say_schedule_role_and_local_times(make_facts: FactsMaker) -> None:
    """The title names the schedule (the role is in the text); the text gives both ends in
    the schedule's zone."""
    spec = shift_event(make_facts(notes="Pager: +49 30 1234"), OPTIONS)
    assert spec.summary == "On-call · Payments"
    assert spec.description == (
        "Payments: primary on-call.\n"
        "From Mon 2 Mar 2026 09:00 CET\n"
        "to Mon 9 Mar 2026 09:00 CET (Europe/Berlin).\n"
        "\n"
        "Pager: +49 30 1234\n"
        "\n"
        "Schedule: https://runbooks.example.com/payments"
    )


def test_dst_change_shows_both_offsets(make_facts: FactsMaker) -> None:
    """A shift across the March change starts in CET and ends in CEST, 47 hours later."""
    spec = shift_event(
        make_facts(
            starts_at=datetime(2026, 3, 28, 8, tzinfo=UTC),  # Sat 09:00 CET
            ends_at=datetime(2026, 3, 30, 7, tzinfo=UTC),  # Mon 09:00 CEST
        ),
        OPTIONS,
    )
    assert "From Sat 28 Mar 2026 09:00 CET\nto Mon 30 Mar 2026 09:00 CEST" in spec.description
    assert spec.ends_at - spec.starts_at == timedelta(hours=47)


def test_instants_are_utc_whatever_zone_they_came_in(make_facts: FactsMaker) -> None:
    """Aware instants in any offset become the same instants in UTC."""
    plus_two = timezone(timedelta(hours=2))
    spec = shift_event(
        make_facts(
            starts_at=datetime(2026, 3, 2, 10, tzinfo=plus_two),
            ends_at=datetime(2026, 3, 2, 18, tzinfo=plus_two),
        ),
        OPTIONS,
    )
    assert (spec.starts_at, spec.ends_at) == (
        datetime(2026, 3, 2, 8, tzinfo=UTC),
        datetime(2026, 3, 2, 16, tzinfo=UTC),
    )
    assert spec.starts_at.tzinfo is UTC


def test_fractions_of_a_second_widen_the_shift(make_facts: FactsMaker) -> None:
    """Formats keep whole seconds: start rounds down, end up, so the end stays after the start."""
    start = datetime(2026, 3, 2, 8, 0, 0, 200_000, tzinfo=UTC)
    spec = shift_event(make_facts(starts_at=start, ends_at=start + timedelta(0, 0, 500)), OPTIONS)
    assert spec.starts_at == datetime(2026, 3, 2, 8, tzinfo=UTC)
    assert spec.ends_at == datetime(2026, 3, 2, 8, 0, 1, tzinfo=UTC)


def test_a_role_other_than_primary_and_a_cancellation_are_in_the_title(
    make_facts: FactsMaker,
) -> None:
    """Schedule first (phones cut titles short); a secondary says so; a cancelled shift's
    title says it is off, for apps that show cancelled events like others."""
    assert shift_event(make_facts(role="secondary"), OPTIONS).summary == (
        "On-call · Payments (secondary)"
    )
    assert shift_event(make_facts(cancelled=True), OPTIONS).summary == (
        "Cancelled: On-call · Payments"
    )
    assert shift_event(make_facts(role="override", cancelled=True), OPTIONS).summary == (
        "Cancelled: On-call · Payments (override)"
    )


def test_handovers_and_cancellation_are_told(make_facts: FactsMaker) -> None:
    """Hand-over names and a cancellation get a line each."""
    spec = shift_event(
        make_facts(handover_from="Bob", handover_to="Chloé", cancelled=True), OPTIONS
    )
    assert "\nTakes over from Bob.\nHands over to Chloé.\nThis shift was cancelled." in (
        spec.description
    )
    assert (spec.cancelled, spec.status) == (True, "cancelled")
    plain = shift_event(make_facts(), OPTIONS)
    assert "over" not in plain.description
    assert (plain.cancelled, plain.status) == (False, "confirmed")


def test_who_else_is_on_call_is_listed_with_contacts(make_facts: FactsMaker) -> None:
    """A person's event lists the colleagues on call beside them, one line each, with an
    address where there is one; a schedule's calendar, which shows them all, does not."""
    colleagues = (
        Colleague("Bob Example", "secondary", "bob@example.com"),
        Colleague("Chloé", "escalation"),
    )
    spec = shift_event(make_facts(handover_to="Dana", also_on_call=colleagues), OPTIONS)
    assert (
        "\nHands over to Dana.\nAlso on call:\n- Bob Example (secondary) <bob@example.com>"
        "\n- Chloé (escalation)\n"
    ) in spec.description
    team = shift_event(
        make_facts(also_on_call=colleagues, person="Alice"), replace(OPTIONS, team=True)
    )
    assert "Also on call" not in team.description
    assert "Also on call" not in shift_event(make_facts(), OPTIONS).description


def test_identity_sequence_and_stamps_come_from_the_facts(make_facts: FactsMaker) -> None:
    """UID, SEQUENCE, CREATED and LAST-MODIFIED are the shift's own, never invented."""
    facts = make_facts()
    spec = shift_event(facts, OPTIONS)
    assert spec.uid == facts.uid
    assert spec.sequence == facts.revision == 3
    assert spec.created == facts.created_at
    assert spec.last_modified == facts.updated_at


def test_busy_option_and_link_fallback(make_facts: FactsMaker) -> None:
    """Transparent unless the viewer wants busy; without a schedule URL, link to settings."""
    facts = make_facts(schedule_url=None)
    free = shift_event(facts, OPTIONS)
    busy = shift_event(facts, replace(OPTIONS, busy=True))
    assert (free.transparent, busy.transparent) == (True, False)
    assert free.url == "https://oncal.example.test/settings"
    assert free.description.endswith("Schedule: https://oncal.example.test/settings")


def test_control_characters_never_reach_an_event(make_facts: FactsMaker) -> None:
    """Raw controls make strict parsers reject the whole feed; CR/CRLF become LF."""
    spec = shift_event(
        make_facts(schedule_name="Pay\x07ments\nEU", notes="a\r\nb\rc\x00d\x1b[0m\te\x7f"),
        OPTIONS,
    )
    assert spec.summary == "On-call · Payments EU"
    assert "\n\na\nb\ncd[0m\te\n\n" in spec.description


def test_clean_helpers() -> None:
    """Text keeps tabs and line feeds; a line keeps neither; a URL is percent-encoded."""
    assert clean_text("x\r\ny\x01\tz") == "x\ny\tz"
    assert clean_line("x\r\ny\tz") == "x y z"
    assert clean_url(" https://w.example/a b\nc/é?q=1&r=[2] ") == (
        "https://w.example/a%20b%0Ac/%C3%A9?q=1&r=[2]"
    )


def test_content_hash_covers_what_is_shown_and_nothing_else(make_facts: FactsMaker) -> None:
    """Sequence and timestamps don't change the content hash; they do change the cache key."""
    spec = shift_event(make_facts(), OPTIONS)
    bumped = shift_event(
        make_facts(revision=4, updated_at=BASE_FACTS.updated_at + timedelta(days=1)), OPTIONS
    )
    assert spec.content_hash == bumped.content_hash
    assert spec.cache_key != bumped.cache_key
    for changed in (
        make_facts(schedule_name="Billing"),
        make_facts(notes="new"),
        make_facts(starts_at=BASE_FACTS.starts_at + timedelta(hours=1)),
        make_facts(ends_at=BASE_FACTS.ends_at + timedelta(hours=1)),
        make_facts(cancelled=True),
        make_facts(schedule_url="https://elsewhere.example"),
    ):
        other = shift_event(changed, OPTIONS)
        assert other.content_hash != spec.content_hash
        assert other.cache_key != spec.cache_key
    busy = shift_event(make_facts(), replace(OPTIONS, busy=True))
    assert busy.content_hash != spec.content_hash
    assert re.fullmatch(r"[0-9a-f]{64}", spec.content_hash)


def test_same_facts_same_spec(make_facts: FactsMaker) -> None:
    """Rendering is a pure function: equal facts give equal specs and keys."""
    first, second = shift_event(make_facts(), OPTIONS), shift_event(make_facts(), OPTIONS)
    assert first == second
    assert (first.content_hash, first.cache_key) == (second.content_hash, second.cache_key)
    assert isinstance(first, EventSpec)


@given(name=st.text(max_size=300), notes=st.text(max_size=600), handover=st.text(max_size=50))
def test_any_text_gives_clean_one_line_titles(name: str, notes: str, handover: str) -> None:
    """Whatever people type, titles are one line and no control character survives."""
    spec = shift_event(
        replace(BASE_FACTS, schedule_name=name, notes=notes, handover_to=handover or None),
        OPTIONS,
    )
    forbidden = re.compile(r"[\x00-\x08\x0a-\x1f\x7f]")
    assert not forbidden.search(spec.summary)
    assert not re.search(r"[\x00-\x08\x0b-\x1f\x7f]", spec.description)
