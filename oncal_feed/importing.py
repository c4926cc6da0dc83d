"""Shift files for `oncal-feed import`: reading (JSON or CSV, streamed), checking, writing.

The CLI command is a thin caller: `read_rows` yields the file's rows one at a time (a
100,000-row file is never held as text or as a parsed document), `check_rows` validates
every row and what it names (schedules, users, duplicates, the window) and keeps only
the compact `ShiftInput`s, and `write` hands each schedule's shifts to the set-based
writes of `oncal_feed.shifts`. Every problem carries the line of the file it is on.
Nothing here commits: the caller does, or rolls back for a dry run.

May import: `oncal_feed.shifts`, `validation`, `errors`, `models`; no Flask, no click.
"""

from __future__ import annotations

import csv
import json
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import IO, Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from oncal_feed import shifts
from oncal_feed.db import in_chunks
from oncal_feed.errors import FieldError, ValidationError
from oncal_feed.models import Schedule, User
from oncal_feed.shifts import WriteResult
from oncal_feed.validation import ShiftInput, parse_shift

__all__ = [
    "OPTIONAL_COLUMNS",
    "REQUIRED_COLUMNS",
    "SHIFT_COLUMNS",
    "CheckedImport",
    "Row",
    "check_rows",
    "read_rows",
    "write",
]

SHIFT_COLUMNS = ("schedule", "external_id", "user_email", "starts_at", "ends_at", "role", "notes")
REQUIRED_COLUMNS = frozenset(SHIFT_COLUMNS[:5])
OPTIONAL_COLUMNS = frozenset(SHIFT_COLUMNS[5:])

# Characters read at a time; a JSON item longer than this is read in growing pieces.
_READ_SIZE = 1 << 16
_JSON_SPACE = " \t\r\n"


@dataclass(frozen=True, slots=True)
class Row:
    """One shift read from a file: where it starts, its schedule key and its fields."""

    line: int
    label: str  # "" for CSV rows, "[index]." for JSON items, prefixed to field names
    schedule: Any
    fields: dict[str, Any]
    problem: FieldError | None = None  # a row too malformed to validate field by field


@dataclass
class CheckedImport:
    """The outcome of `check_rows`: good shifts by schedule key, or the problems found."""

    schedules: dict[str, Schedule]
    by_schedule: dict[str, list[ShiftInput]] = field(default_factory=dict)
    problems: list[FieldError] = field(default_factory=list)

    @property
    def shift_count(self) -> int:
        """How many shifts passed every check."""
        return sum(len(items) for items in self.by_schedule.values())


# ---------------------------------------------------------------- reading


def read_rows(path: Path, file_format: str | None) -> Iterator[Row]:
    """Yield the shifts of a JSON or CSV file; raise `ValidationError` when it can't be read.

    The format comes from `file_format`, else the extension, else the first character.
    The file is read in pieces as the rows are consumed, so a problem late in the file
    is raised late too; nothing may be written before the last row has been read.
    """
    try:
        first = _first_character(path)
        if not first:
            raise ValidationError.single("", f"{path} is empty")
        if file_format is None:
            suffix = path.suffix.lower()
            if suffix in (".json", ".csv"):
                file_format = suffix[1:]
            else:
                file_format = "json" if first == "[" else "csv"
        # newline="": the csv module handles line ends itself (quoted line breaks), and
        # JSON counts "\n" like the whole-file parser did.
        with path.open(encoding="utf-8-sig", newline="") as stream:
            yield from _json_rows(stream) if file_format == "json" else _csv_rows(stream)
    except UnicodeDecodeError:
        message = f"{path} is not UTF-8 text (byte {_bad_byte(path)})"
        raise ValidationError.single("", message) from None


def _first_character(path: Path) -> str:
    """The file's first character that is not white space, or "" when there is none."""
    with path.open(encoding="utf-8-sig", newline="") as stream:
        while piece := stream.read(_READ_SIZE):
            if stripped := piece.lstrip():
                return stripped[0]
    return ""


def _bad_byte(path: Path) -> int:
    """The offset of the first byte that is not UTF-8, as a whole-file decode reports it.

    Only called for a file already known to be broken, so reading it whole is fine.
    """
    try:
        path.read_bytes().decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        return exc.start
    return 0  # pragma: no cover - the stream decoder and this one agree


class _JsonItems:
    """The items of a JSON array read from a text stream one at a time, with their lines.

    Each item is decoded by the standard library's `JSONDecoder.raw_decode` from a buffer
    holding only the unread part of the file (plus the item in hand); the array's own
    punctuation is checked here with the standard decoder's wording, so messages read as
    before ("Expecting ',' delimiter", line and column of the whole file).
    """

    def __init__(self, stream: IO[str]) -> None:
        self.stream = stream
        self.buffer = ""
        self.position = 0  # in buffer
        self.eof = False
        # Lines are counted on from the last position asked about: counting from the top
        # for every item made a large file take minutes.
        self.counted = 0  # buffer position up to which `line` has counted line breaks
        self.line = 1  # the file line at buffer position `counted`
        self.column_before = 0  # characters after the last line break dropped
        self.decoder = json.JSONDecoder()

    def _fill(self, size: int = _READ_SIZE) -> bool:
        """Read more of the stream into the buffer; False at the end of the file."""
        if self.eof:
            return False
        piece = self.stream.read(size)
        if not piece:
            self.eof = True
            return False
        self.buffer += piece
        return True

    def _drop_read(self) -> None:
        """Forget the buffer's part before `position`, keeping line and column counts."""
        self.line_at(self.position)
        dropped = self.buffer[: self.position]
        newline = dropped.rfind("\n")
        if newline >= 0:
            self.column_before = len(dropped) - newline - 1
        else:
            self.column_before += len(dropped)
        self.buffer = self.buffer[self.position :]
        self.counted = self.position = 0

    def line_at(self, position: int) -> int:
        """The file line (from 1) of a buffer position."""
        if position < self.counted:  # an error inside the item in hand
            return self.line - self.buffer.count("\n", position, self.counted)
        self.line += self.buffer.count("\n", self.counted, position)
        self.counted = position
        return self.line

    def _error(self, message: str, position: int) -> ValidationError:
        newline = self.buffer.rfind("\n", 0, position)
        column = position - newline if newline >= 0 else self.column_before + position + 1
        problem = f"not valid JSON: {message} (column {column})"
        return ValidationError([FieldError("", problem, self.line_at(position))])

    def _next_token(self) -> str:
        """Skip white space; return the next character ("" at the end of the file)."""
        while True:
            while self.position < len(self.buffer) and self.buffer[self.position] in _JSON_SPACE:
                self.position += 1
            if self.position < len(self.buffer):
                return self.buffer[self.position]
            if not self._fill():
                return ""

    def _value(self) -> Any:
        """Decode the value at `position`, reading on while it may be cut off."""
        size = _READ_SIZE
        while True:
            try:
                value, end = self.decoder.raw_decode(self.buffer, self.position)
            except json.JSONDecodeError as exc:
                if self._fill(size):
                    size *= 2  # a long item: read in growing pieces, not re-parse per 64 KiB
                    continue
                raise self._error(exc.msg, exc.pos) from None
            # A value ending exactly at the buffer's end may be a cut-off number: read on.
            if end == len(self.buffer) and self._fill(size):
                continue
            self.position = end
            return value

    def rows(self) -> Iterator[Row]:
        """Yield a `Row` per item; raise `ValidationError` for anything but an array."""
        if self._next_token() != "[":
            self._not_an_array()
        self.position += 1
        if self._next_token() == "]":
            self.position += 1
            self._expect_end()
            return
        index = 0
        while True:
            if self._next_token() == "":
                raise self._error("Expecting value", self.position)
            if self.position > _READ_SIZE:
                self._drop_read()
            line = self.line_at(self.position)
            item = self._value()
            label = f"[{index}]."
            if isinstance(item, dict):
                yield Row(line, label, item.pop("schedule", None), item)
            else:
                yield Row(line, label, None, {}, FieldError(f"[{index}]", "must be an object"))
            index += 1
            after = self._next_token()
            if after == "]":
                self.position += 1
                self._expect_end()
                return
            if after != ",":
                raise self._error("Expecting ',' delimiter", self.position)
            self.position += 1

    def _expect_end(self) -> None:
        if self._next_token() != "":
            raise self._error("Extra data", self.position)

    def _not_an_array(self) -> None:
        """Explain a file that does not start with '[': invalid JSON, or not an array."""
        while self._fill():
            pass  # not a shift file: read the rest whole, only to name the problem
        try:
            json.loads(self.buffer)
        except json.JSONDecodeError as exc:
            raise self._error(exc.msg, exc.pos) from None
        raise ValidationError([FieldError("", "the file must hold a JSON array of shifts", 1)])


def _json_rows(stream: IO[str]) -> Iterator[Row]:
    """Read a JSON array of objects, noting the line on which each item starts."""
    return _JsonItems(stream).rows()


def _csv_rows(stream: IO[str]) -> Iterator[Row]:
    """Read CSV with a header row; empty optional cells count as not given."""
    # strict: an unclosed quote is an error, not a field that swallows the rest of the file.
    reader = csv.reader(stream, strict=True)
    try:
        header = [name.strip() for name in next(reader)]
        problems = [
            FieldError(name, "unknown column", 1)
            for name in header
            if name not in REQUIRED_COLUMNS | OPTIONAL_COLUMNS
        ]
        problems += [
            FieldError(name, "column is missing from the header", 1)
            for name in sorted(REQUIRED_COLUMNS - set(header))
        ]
        if problems:
            raise ValidationError(problems)
        while True:
            line = reader.line_num + 1
            try:
                cells = next(reader)
            except StopIteration:
                break
            if not any(cell.strip() for cell in cells):
                continue
            if len(cells) > len(header):
                error = FieldError("", f"{len(cells)} fields, but the header has {len(header)}")
                yield Row(line, "", None, {}, error)
                continue
            fields = {
                name: cell.strip()
                for name, cell in zip(header, cells, strict=False)
                if cell.strip() or name in REQUIRED_COLUMNS
            }
            yield Row(line, "", fields.pop("schedule", None), fields)
    except csv.Error as exc:
        raise ValidationError([FieldError("", f"not valid CSV: {exc}", reader.line_num)]) from None


# ---------------------------------------------------------------- checking


@dataclass(frozen=True, slots=True)
class _Seen:
    """What `check_rows` keeps of a row between reading it and checking its references."""

    line: int
    label: str
    key: str
    email: str | None  # as given, when a string
    shift: ShiftInput | None
    errors: list[FieldError] | None  # found while reading and parsing, in order
    is_malformed: bool


def check_rows(
    session: Session, rows: Iterable[Row], window: tuple[datetime, datetime] | None
) -> CheckedImport:
    """Validate every row and what it refers to; return good shifts by schedule, or problems.

    Each row gets every check that can be made on it: an unknown schedule is reported
    even on a row whose times are also wrong. Problems carry the row's line. Rows are
    parsed as they are read; schedules and users are then looked up once for all rows.
    """
    seen: list[_Seen] = []
    keys: set[str] = set()
    emails: set[str] = set()
    for row in rows:
        key = row.schedule.strip() if isinstance(row.schedule, str) else ""
        email = row.fields.get("user_email")
        errors = [row.problem] if row.problem is not None else []
        shift = None
        if row.problem is None:
            try:
                shift = parse_shift(row.fields, prefix=row.label)
            except ValidationError as exc:
                errors.extend(exc.errors)
        if key:
            keys.add(key)
        if isinstance(email, str):
            emails.add(email.strip().lower())
        else:
            email = None
        seen.append(
            _Seen(row.line, row.label, key, email, shift, errors or None, row.problem is not None)
        )
    schedules = _schedules(session, keys)
    known_emails = _known_emails(session, emails)

    checked = CheckedImport(schedules)
    first_line: dict[tuple[str, str], int] = {}
    for item in seen:
        errors = _reference_errors(item, schedules, known_emails)
        if item.shift is not None:
            identity = (item.key, item.shift.external_id)
            if identity in first_line:
                errors.append(
                    FieldError(
                        f"{item.label}external_id",
                        f"{item.shift.external_id!r} is already on line {first_line[identity]}",
                    )
                )
            first_line.setdefault(identity, item.line)
            if window is not None and not (
                item.shift.starts_at < window[1] and item.shift.ends_at > window[0]
            ):
                errors.append(FieldError(f"{item.label}starts_at", "shift lies outside --window"))
        if errors:
            checked.problems.extend(FieldError(e.field, e.problem, item.line) for e in errors)
        elif item.shift is not None:
            checked.by_schedule.setdefault(item.key, []).append(item.shift)
    return checked


def _reference_errors(
    item: _Seen, schedules: dict[str, Schedule], known_emails: set[str]
) -> list[FieldError]:
    """The row's problems up to its user: malformed row, schedule, fields, unknown user."""
    read = list(item.errors or [])
    errors = read[:1] if item.is_malformed else []
    if not item.is_malformed and not item.key:
        errors.append(FieldError(f"{item.label}schedule", "is required (a schedule key)"))
    elif item.key and item.key not in schedules:
        errors.append(
            FieldError(
                f"{item.label}schedule",
                f"no schedule {item.key!r}; create it first (PUT /api/v1/schedules/{item.key})",
            )
        )
    if not item.is_malformed:
        errors.extend(read)
    email_field = f"{item.label}user_email"
    if (
        item.email is not None
        and item.email.strip().lower() not in known_emails
        and not any(e.field == email_field for e in errors)
    ):
        errors.append(FieldError(email_field, "no user has this email address"))
    return errors


def _schedules(session: Session, keys: set[str]) -> dict[str, Schedule]:
    """The schedules with these keys, by key."""
    found: dict[str, Schedule] = {}
    for chunk in in_chunks(sorted(keys)):
        found.update(
            (s.key, s) for s in session.scalars(select(Schedule).where(Schedule.key.in_(chunk)))
        )
    return found


def _known_emails(session: Session, emails: set[str]) -> set[str]:
    """Which of these emails belong to a user."""
    known: set[str] = set()
    for chunk in in_chunks(sorted(emails)):
        known.update(session.scalars(select(User.email).where(User.email.in_(chunk))))
    return known


# ---------------------------------------------------------------- writing


def write(
    session: Session,
    checked: CheckedImport,
    window: tuple[datetime, datetime] | None,
    now: datetime,
) -> WriteResult:
    """Write the checked shifts, one set-based write per schedule; the caller commits.

    With a `window`, each named schedule's shifts in it that the file leaves out are
    tombstoned (`shifts.import_window`); without, shifts are only created or updated.
    """
    total = WriteResult()
    for key, items in checked.by_schedule.items():
        schedule = checked.schedules[key]
        if window is not None:
            total.merge(shifts.import_window(session, schedule, *window, items, now))
        else:
            total.merge(shifts.upsert_shifts(session, schedule, items, now))
    return total
