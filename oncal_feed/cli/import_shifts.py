"""`oncal-feed import`: create or update shifts from a JSON or CSV file."""

from __future__ import annotations

import csv
import io
import json
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import click
from flask import Flask
from sqlalchemy import select
from sqlalchemy.orm import Session

from oncal_feed import notify, shifts
from oncal_feed.cli.helpers import count, echo_problems, fail, require_schema, with_app
from oncal_feed.db import get_database, utcnow
from oncal_feed.errors import FieldError, ValidationError
from oncal_feed.models import Schedule, User
from oncal_feed.shifts import WriteResult
from oncal_feed.validation import ShiftInput, parse_shift, parse_window

__all__ = ["check_rows", "import_shifts", "read_rows"]

SHIFT_COLUMNS = ("schedule", "external_id", "user_email", "starts_at", "ends_at", "role", "notes")
REQUIRED_COLUMNS = frozenset(SHIFT_COLUMNS[:5])
OPTIONAL_COLUMNS = frozenset(SHIFT_COLUMNS[5:])


@dataclass(frozen=True)
class Row:
    """One shift read from a file: where it starts, its schedule key and its fields."""

    line: int
    label: str  # "" for CSV rows, "[index]." for JSON items, prefixed to field names
    schedule: Any
    fields: dict[str, Any]
    problem: FieldError | None = None  # a row too malformed to validate field by field


@dataclass(frozen=True)
class ParsedRow:
    """A row that passed every check."""

    schedule: str
    shift: ShiftInput


def read_rows(path: Path, file_format: str | None) -> list[Row]:
    """Read the shifts of a JSON or CSV file; raise `ValidationError` when it can't be read.

    The format comes from `file_format`, else the extension, else the first character.
    """
    try:
        text = path.read_bytes().decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise ValidationError.single("", f"{path} is not UTF-8 text (byte {exc.start})") from None
    if not text.strip():
        raise ValidationError.single("", f"{path} is empty")
    if file_format is None:
        suffix = path.suffix.lower()
        if suffix in (".json", ".csv"):
            file_format = suffix[1:]
        else:
            file_format = "json" if text.lstrip().startswith("[") else "csv"
    return _json_rows(text) if file_format == "json" else _csv_rows(text)


def _json_rows(text: str) -> list[Row]:
    """Read a JSON array of objects, noting the line on which each item starts."""
    try:
        document = json.loads(text)
    except json.JSONDecodeError as exc:
        error = FieldError("", f"not valid JSON: {exc.msg} (column {exc.colno})", exc.lineno)
        raise ValidationError([error]) from None
    if not isinstance(document, list):
        raise ValidationError([FieldError("", "the file must hold a JSON array of shifts", 1)])
    # Decode the array a second time item by item, only to learn where each item starts.
    decoder = json.JSONDecoder()
    position = text.index("[") + 1
    # Lines are counted on from the previous item: counting from the top every time made
    # a large file take minutes.
    rows, line, counted = [], 1, 0
    for index, item in enumerate(document):
        while text[position] in " \t\r\n,":
            position += 1
        line += text.count("\n", counted, position)
        counted = position
        _, position = decoder.raw_decode(text, position)
        label = f"[{index}]."
        if not isinstance(item, dict):
            rows.append(Row(line, label, None, {}, FieldError(f"[{index}]", "must be an object")))
            continue
        fields = dict(item)
        rows.append(Row(line, label, fields.pop("schedule", None), fields))
    return rows


def _csv_rows(text: str) -> list[Row]:
    """Read CSV with a header row; empty optional cells count as not given."""
    # strict: an unclosed quote is an error, not a field that swallows the rest of the file.
    reader = csv.reader(io.StringIO(text, newline=""), strict=True)
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
        rows = []
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
                rows.append(Row(line, "", None, {}, error))
                continue
            fields = {
                name: cell.strip()
                for name, cell in zip(header, cells, strict=False)
                if cell.strip() or name in REQUIRED_COLUMNS
            }
            rows.append(Row(line, "", fields.pop("schedule", None), fields))
    except csv.Error as exc:
        raise ValidationError([FieldError("", f"not valid CSV: {exc}", reader.line_num)]) from None
    return rows


def check_rows(
    session: Session, rows: list[Row], window: tuple[datetime, datetime] | None
) -> tuple[list[ParsedRow], dict[str, Schedule], list[FieldError]]:
    """Validate every row and what it refers to; return good rows, schedules and problems.

    Each row gets every check that can be made on it: an unknown schedule is reported
    even on a row whose times are also wrong. Problems carry the row's line.
    """
    keys = {row.schedule.strip() for row in rows if isinstance(row.schedule, str)}
    schedules = {s.key: s for s in session.scalars(select(Schedule).where(Schedule.key.in_(keys)))}
    emails = {
        str(row.fields["user_email"]).strip().lower() for row in rows if "user_email" in row.fields
    }
    known_emails = set(session.scalars(select(User.email).where(User.email.in_(emails))))
    parsed: list[ParsedRow] = []
    problems: list[FieldError] = []
    first_line: dict[tuple[str, str], int] = {}
    for row in rows:
        errors = [row.problem] if row.problem is not None else []
        key = row.schedule.strip() if isinstance(row.schedule, str) else ""
        if row.problem is None and not key:
            errors.append(FieldError(f"{row.label}schedule", "is required (a schedule key)"))
        elif key and key not in schedules:
            errors.append(
                FieldError(
                    f"{row.label}schedule",
                    f"no schedule {key!r}; create it first (PUT /api/v1/schedules/{key})",
                )
            )
        shift = None
        if row.problem is None:
            try:
                shift = parse_shift(row.fields, prefix=row.label)
            except ValidationError as exc:
                errors.extend(exc.errors)
        email = row.fields.get("user_email")
        email_field = f"{row.label}user_email"
        if (
            isinstance(email, str)
            and email.strip().lower() not in known_emails
            and not any(e.field == email_field for e in errors)
        ):
            errors.append(FieldError(email_field, "no user has this email address"))
        if shift is not None:
            identity = (key, shift.external_id)
            if identity in first_line:
                errors.append(
                    FieldError(
                        f"{row.label}external_id",
                        f"{shift.external_id!r} is already on line {first_line[identity]}",
                    )
                )
            first_line.setdefault(identity, row.line)
            if window is not None and not (
                shift.starts_at < window[1] and shift.ends_at > window[0]
            ):
                errors.append(FieldError(f"{row.label}starts_at", "shift lies outside --window"))
        if errors:
            problems.extend(FieldError(e.field, e.problem, row.line) for e in errors)
        elif shift is not None:
            parsed.append(ParsedRow(key, shift))
    return parsed, schedules, problems


def _parse_window_option(
    _context: click.Context, _param: click.Parameter, value: str | None
) -> tuple[datetime, datetime] | None:
    if value is None:
        return None
    start, slash, end = value.partition("/")
    if not slash:
        raise click.BadParameter("give FROM/TO, e.g. 2026-03-01T00:00:00Z/2026-06-01T00:00:00Z")
    try:
        return parse_window(start, end)
    except ValidationError as exc:
        raise click.BadParameter(str(exc)) from None


@click.command("import")
@click.argument("file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option(
    "--format",
    "file_format",
    type=click.Choice(["json", "csv"]),
    help="File format (default: from the extension, else from the content).",
)
@click.option(
    "--window",
    metavar="FROM/TO",
    callback=_parse_window_option,
    help="Make the file the complete list of each named schedule's shifts overlapping "
    "[FROM, TO): shifts of those schedules in the window that the file leaves out are "
    "deleted. Without it, shifts are only created or updated.",
)
@click.option("--dry-run", is_flag=True, help="Check and count, but write nothing.")
@with_app
def import_shifts(
    app: Flask,
    file: Path,
    file_format: str | None,
    window: tuple[datetime, datetime] | None,
    dry_run: bool,
) -> None:
    """Create or update shifts from a JSON or CSV FILE.

    JSON: an array of objects. CSV: a header row, then one shift per row. Fields/columns:
    schedule, external_id, user_email, starts_at, ends_at (RFC 3339 with an offset, e.g.
    2026-03-02T09:00:00+01:00), and optionally role and notes. Schedules and users must
    exist already. Shifts are matched by (schedule, external_id), so importing the same
    file again changes nothing.

    Every row is checked first; if any is bad, each problem is printed with its line and
    nothing is written.
    """
    database = get_database(app)
    require_schema(database)
    rows = read_rows(file, file_format)
    with database.sessionmaker() as session:
        parsed, schedules, problems = check_rows(session, rows, window)
        if problems:
            echo_problems(problems)
            bad_lines = len({problem.line for problem in problems})
            fail(
                f"nothing was imported: {count(len(problems), 'problem')} on "
                f"{count(bad_lines, 'line')}."
            )
        now = utcnow()
        results = []
        by_schedule: dict[str, list[ShiftInput]] = {}
        for row in parsed:
            by_schedule.setdefault(row.schedule, []).append(row.shift)
        for key, items in by_schedule.items():
            if window is not None:
                results.append(shifts.import_window(session, schedules[key], *window, items, now))
            else:
                results.extend(shifts.upsert_shift(session, schedules[key], i, now) for i in items)
        total = WriteResult()
        for result in results:
            total.merge(result)
        if dry_run:
            session.rollback()
        else:
            session.commit()
    if not dry_run:
        notify.shifts_changed(total.touched_user_ids)
    counts = ", ".join(
        f"{n} {what}" for what, n in total.as_dict().items() if n or what != "deleted"
    )
    if dry_run:
        click.echo(
            f"Dry run, nothing was written. Would import {count(len(parsed), 'shift')}: {counts}."
        )
    else:
        click.echo(
            f"Imported {count(len(parsed), 'shift')} into "
            f"{count(len(by_schedule), 'schedule')}: {counts}."
        )
