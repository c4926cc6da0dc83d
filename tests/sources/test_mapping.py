"""Mapping occurrences to people: the order of the rules, folding, ambiguity, examples."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from oncal_feed.sources.ics import Occurrence
from oncal_feed.sources.mapping import Directory, fold, map_occurrences

START = datetime(2026, 3, 2, 9, tzinfo=UTC)
PEOPLE = Directory(
    [
        ("alice@example.com", "Alice Example"),
        ("zoe@example.com", "Zoe Angstrom"),
        ("sam1@example.com", "Sam Lee"),
        ("sam2@example.com", "Sam Lee"),
    ]
)


def occurrence(
    summary: str = "", description: str = "", emails: tuple[str, ...] = ()
) -> Occurrence:
    """An occurrence with these texts and attendee emails."""
    return Occurrence("k", START, START + timedelta(hours=8), summary, description, emails)


def who(item: Occurrence, fixed: str | None = None) -> str | None:
    """The email the occurrence maps to (None when unmatched)."""
    mapped = map_occurrences([item], PEOPLE, fixed)
    return mapped.matched[0][1] if mapped.matched else None


def test_attendee_wins_over_text_and_fixed_user() -> None:
    """ATTENDEE/ORGANIZER first, then text, then the fixed user."""
    item = occurrence("Zoe Angstrom", emails=("nobody@x.example", "alice@example.com"))
    assert who(item, "zoe@example.com") == "alice@example.com"
    assert who(occurrence("On call: Zoe Angstrom"), "alice@example.com") == "zoe@example.com"
    assert who(occurrence("Weekly rota"), "alice@example.com") == "alice@example.com"


def test_email_in_description_and_folded_names() -> None:
    """Emails in text; names whole-word, any case, accents folded."""
    assert who(occurrence("[L1] x", "contact: ALICE@example.com")) == "alice@example.com"
    assert who(occurrence("Bereitschaft: ZOË ÅNGSTRÖM")) == "zoe@example.com"
    assert who(occurrence("Zoe Angstromberg covers")) is None
    assert fold("Ångström") == "angstrom"


def test_a_shared_name_names_nobody_and_unmatched_are_reported() -> None:
    """Two users called Sam Lee: neither is guessed; the example says what was seen."""
    mapped = map_occurrences(
        [occurrence("Sam Lee"), occurrence("Carol", emails=("carol@x.example",))], PEOPLE, None
    )
    assert mapped.matched == []
    assert mapped.unmatched == 2
    assert mapped.examples[1] == "Carol at 2026-03-02 09:00 UTC, attendee carol@x.example"
