"""Mapping occurrences to people: PURE (a directory of users in, emails out).

In order: an ATTENDEE / ORGANIZER email of a known user; an email of a known user written
in SUMMARY or DESCRIPTION; a user's display name written there (whole words,
case-insensitive, accents folded: "Zoë" matches "ZOE"); the source's fixed user (a
per-user feed). What matches nobody is reported, never dropped silently.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterable
from dataclasses import dataclass, field

from oncal_feed.sources.ics import Occurrence

__all__ = ["Directory", "Mapped", "fold", "map_occurrences"]

_EMAIL = re.compile(r"[\w.+-]+@[\w-]+(?:\.[\w-]+)+")
MAX_EXAMPLES = 5


def fold(text: str) -> str:
    """Lower-case `text` and strip its accents, for comparing names."""
    decomposed = unicodedata.normalize("NFKD", text)
    return "".join(c for c in decomposed if not unicodedata.combining(c)).casefold()


class Directory:
    """The users a source may name, by email and by display name."""

    def __init__(self, users: Iterable[tuple[str, str]]) -> None:
        """`users` are (email, display name) pairs."""
        self.emails: set[str] = set()
        self._names: dict[str, str] = {}
        for email, name in users:
            self.emails.add(email.lower())
            folded = fold(name).strip()
            # A name shared by two people names neither of them.
            if len(folded) >= 3:
                self._names[folded] = "" if folded in self._names else email.lower()
        names = sorted((n for n, e in self._names.items() if e), key=len, reverse=True)
        self._pattern = (
            re.compile(r"(?<!\w)(" + "|".join(re.escape(n) for n in names) + r")(?!\w)")
            if names
            else None
        )

    def by_text(self, text: str) -> str | None:
        """The email of a known user whose address or name `text` contains."""
        for found in _EMAIL.finditer(text):
            email = found.group(0).lower()
            if email in self.emails:
                return email
        if self._pattern is not None:
            match = self._pattern.search(fold(text))
            if match:
                return self._names[match.group(1)]
        return None


@dataclass
class Mapped:
    """Occurrences with the email of their person; the others counted, with examples."""

    matched: list[tuple[Occurrence, str]] = field(default_factory=list)
    unmatched: int = 0
    examples: list[str] = field(default_factory=list)


def map_occurrences(
    occurrences: Iterable[Occurrence], directory: Directory, fixed_email: str | None
) -> Mapped:
    """Find each occurrence's person (see the module docstring for the order)."""
    result = Mapped()
    for occurrence in occurrences:
        email = next((e for e in occurrence.emails if e in directory.emails), None)
        if email is None:
            email = directory.by_text(f"{occurrence.summary}\n{occurrence.description}")
        if email is None:
            email = fixed_email
        if email is None:
            result.unmatched += 1
            if len(result.examples) < MAX_EXAMPLES:
                result.examples.append(_example(occurrence))
            continue
        result.matched.append((occurrence, email))
    return result


def _example(occurrence: Occurrence) -> str:
    """A short line naming an unmatched occurrence for an admin: its title and start."""
    title = occurrence.summary[:80] or "(no title)"
    who = f", attendee {occurrence.emails[0]}" if occurrence.emails else ""
    return f"{title} at {occurrence.starts_at:%Y-%m-%d %H:%M} UTC{who}"
