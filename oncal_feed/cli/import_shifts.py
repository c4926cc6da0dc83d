"""`oncal-feed import`: create or update shifts from a JSON or CSV file.

A thin caller: reading, checking and writing the rows is `oncal_feed.importing`'s job.
"""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

import click
from flask import Flask

from oncal_feed import importing, notify
from oncal_feed.cli.helpers import count, echo_problems, fail, require_schema, with_app
from oncal_feed.db import get_database, utcnow
from oncal_feed.errors import ValidationError
from oncal_feed.validation import parse_window

__all__ = ["import_shifts"]


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
    with database.sessionmaker() as session:
        checked = importing.check_rows(session, importing.read_rows(file, file_format), window)
        if checked.problems:
            echo_problems(checked.problems)
            bad_lines = len({problem.line for problem in checked.problems})
            fail(
                f"nothing was imported: {count(len(checked.problems), 'problem')} on "
                f"{count(bad_lines, 'line')}."
            )
        total = importing.write(session, checked, window, utcnow())
        if dry_run:
            session.rollback()
        else:
            session.commit()
    if not dry_run:
        notify.shifts_changed(total.touched_user_ids)
    counts = ", ".join(
        f"{n} {what}" for what, n in total.as_dict().items() if n or what != "deleted"
    )
    shown = count(checked.shift_count, "shift")
    if dry_run:
        click.echo(f"Dry run, nothing was written. Would import {shown}: {counts}.")
    else:
        schedules = count(len(checked.by_schedule), "schedule")
        click.echo(f"Imported {shown} into {schedules}: {counts}.")
