"""The `oncal-feed` command.

Each command builds the app it needs with `create_app()`, so settings come from the
environment and `.env` exactly as for the web server. A mapping passed as click's `obj`
(``main(obj={...})``) is added on top, as `create_app(config=...)` would take it; tests use
it for `INSTANCE_PATH`, which is not an environment setting.

Exit codes: 0 done, 1 the input or the data was refused (nothing was written), 2 usage or
configuration error.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import datetime
from functools import wraps
from pathlib import Path
from typing import Any, NoReturn

import click
from flask import Flask
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError, NoSuchModuleError, OperationalError

from oncal_feed import accounts, create_app, importing, notify
from oncal_feed.db import Database, get_database, utcnow
from oncal_feed.errors import ConfigError, FieldError, OncalError, ValidationError
from oncal_feed.feeds.tokens import feed_links
from oncal_feed.migrate import current_revision, head_revision, schema_state, upgrade
from oncal_feed.shifts import WriteResult
from oncal_feed.validation import parse_user, parse_window

__all__ = ["main"]

# Printing thousands of problems helps nobody; the first ones show the pattern.
MAX_PROBLEMS_SHOWN = 50


# ---------------------------------------------------------------- app and errors


def build_app(**overrides: Any) -> Flask:
    """Create the app (with click's `obj` and `overrides` as config) or exit explaining why."""
    context = click.get_current_context(silent=True)
    config = dict(context.obj or {}) if context is not None else {}
    config.update(overrides)
    try:
        return create_app(config or None)
    except ConfigError as exc:
        _fail(str(exc), code=2)
    except (ArgumentError, NoSuchModuleError):
        _fail("DATABASE_URL is not a database URL SQLAlchemy understands (see .env.example).", 2)


def _fail(message: str, code: int = 1) -> NoReturn:
    click.echo(f"Error: {message}", err=True)
    sys.exit(code)


def _echo_problems(errors: list[FieldError]) -> None:
    for error in errors[:MAX_PROBLEMS_SHOWN]:
        where = f"line {error.line}: " if error.line is not None else ""
        field = f"{error.field}: " if error.field else ""
        click.echo(f"Error: {where}{field}{error.problem}", err=True)
    if len(errors) > MAX_PROBLEMS_SHOWN:
        click.echo(f"Error: ... and {len(errors) - MAX_PROBLEMS_SHOWN} more problems", err=True)


@contextmanager
def app_context(**overrides: Any) -> Iterator[Flask]:
    """Build the app and enter its context; report our errors and close the database after."""
    app = build_app(**overrides)
    try:
        with app.app_context():
            yield app
    except ValidationError as exc:
        _echo_problems(exc.errors)
        sys.exit(1)
    except OncalError as exc:
        _fail(str(exc))
    except OperationalError as exc:
        # Unreachable, refused, locked, unknown database: the driver's first line says which,
        # and never contains the password.
        reason = str(exc.orig or exc).strip().splitlines()[0]
        _fail(f"the database could not be used: {reason}")
    finally:
        get_database(app).dispose()


def with_app(command: Callable[..., Any]) -> Callable[..., Any]:
    """Run `command(app, ...)` inside `app_context()`."""

    @wraps(command)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        with app_context() as app:
            return command(app, *args, **kwargs)

    return wrapper


def require_schema(database: Database) -> None:
    """Exit with advice when the database schema is missing or older than the code's.

    A newer schema (another machine runs a newer release) is fine, as `/readyz` says too:
    migrations only ever add what older code does not notice. It gets a note on stderr.
    """
    state = schema_state(database)
    if state == "current":
        return
    current = current_revision(database) or "empty"
    if state == "ahead":
        click.echo(
            f"Note: the database schema ({current}) is newer than this release's "
            f"({head_revision()}); running on it. Install the newer release here too.",
            err=True,
        )
        return
    _fail(
        f"the database schema is not up to date (database: {current}, code: "
        f"{head_revision()}). Run `oncal-feed init-db` first."
    )


def _count(number: int, noun: str) -> str:
    return f"{number} {noun}" if number == 1 else f"{number} {noun}s"


def describe_database(url: str) -> str:
    """The database URL with any password hidden, for messages."""
    return make_url(url).render_as_string(hide_password=True)


# ---------------------------------------------------------------- commands


@click.group()
@click.version_option(package_name="oncal-feed")
def main() -> None:
    """oncal-feed: on-call shifts in the calendars people already use.

    Settings come from the environment and from .env (see .env.example). For a first try
    without any configuration, run `oncal-feed demo`.
    """


@main.command("init-db")
@with_app
def init_db(app: Flask) -> None:
    """Create or upgrade the database schema (safe to run again)."""
    database = get_database(app)
    if schema_state(database) == "ahead":
        # A rollback to this release, or a machine not upgraded yet: the newer schema is
        # one this release runs on (see `schema_state`), and there is no downgrade.
        click.echo(
            f"Database schema {current_revision(database)} is newer than this release's "
            f"({head_revision()}): nothing to do; this release runs on it."
        )
        return
    upgrade(database)
    click.echo(f"Database is up to date (revision {current_revision(database)}).")


@main.command("create-user")
@click.argument("email")
@click.option("--name", "display_name", required=True, help="Display name.")
@click.option("--time-zone", default="UTC", show_default=True, help="IANA time zone.")
@click.option("--password", is_flag=True, help="Prompt for a sign-in password.")
@with_app
def create_user(app: Flask, email: str, display_name: str, time_zone: str, password: bool) -> None:
    """Create a user who can receive shifts."""
    data = parse_user({"email": email, "display_name": display_name, "time_zone": time_zone})
    database = get_database(app)
    require_schema(database)
    # Ask before opening the transaction: a write lock must not wait for someone typing.
    secret = (
        click.prompt("Password", hide_input=True, confirmation_prompt=True) if password else None
    )
    if secret is not None and not secret.strip():
        _fail("the password must not be empty")
    with database.session() as session:
        user = accounts.create_user(session, data, utcnow())
        if secret is not None:
            accounts.set_password(user, secret)
    click.echo(f"Created user {user.email} ({user.public_id}).")


@main.command("create-api-key")
@click.argument("name")
@with_app
def create_api_key(app: Flask, name: str) -> None:
    """Create an API key named NAME and print it once; only a hash is stored.

    The key alone goes to standard output, so `KEY=$(oncal-feed create-api-key ci)` works.
    """
    if not name.strip():
        _fail("the key needs a name")
    database = get_database(app)
    require_schema(database)
    with database.session() as session:
        key, secret = accounts.create_api_key(session, name.strip(), utcnow())
    click.echo(secret)
    click.echo(f"Created API key {name!r} ({key.prefix}...). It will not be shown again.", err=True)


@main.command("serve")
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to listen on.")
@click.option("--port", default=8000, show_default=True, type=int, help="Port to listen on.")
def serve(host: str, port: int) -> None:
    """Run the development server (use gunicorn in production: `gunicorn wsgi:app`)."""
    with app_context() as app:
        require_schema(get_database(app))
    _run(app, host, port)


def _run(app: Flask, host: str, port: int) -> None:
    # Settings were read by create_app; Flask must not load .env a second time.
    app.run(host=host, port=port, threaded=True, load_dotenv=False)


# ---------------------------------------------------------------- import


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


@main.command("import")
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
            _echo_problems(checked.problems)
            bad_lines = len({problem.line for problem in checked.problems})
            _fail(
                f"nothing was imported: {_count(len(checked.problems), 'problem')} on "
                f"{_count(bad_lines, 'line')}."
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
    shown = _count(checked.shift_count, "shift")
    if dry_run:
        click.echo(f"Dry run, nothing was written. Would import {shown}: {counts}.")
    else:
        schedules = _count(len(checked.by_schedule), "schedule")
        click.echo(f"Imported {shown} into {schedules}: {counts}.")


# ---------------------------------------------------------------- demo


@main.command("demo")
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to listen on.")
@click.option("--port", default=8000, show_default=True, type=int, help="Port to listen on.")
@click.option("--no-serve", is_flag=True, help="Seed the demo data and print, but don't serve.")
def demo(host: str, port: int, no_serve: bool) -> None:
    """Try oncal-feed with no configuration: demo data, then a local server.

    Runs in demo mode (secrets are generated and kept in the instance folder), brings the
    database up to date, creates demo users and schedules with shifts from a month ago to
    three months ahead, prints how to sign in and the demo user's feed URL, and serves on
    http://HOST:PORT. Running it again reuses everything and changes nothing.
    """
    from oncal_feed import demo as demo_data

    shown_host = "127.0.0.1" if host in ("", "0.0.0.0", "::") else host  # noqa: S104
    if ":" in shown_host:
        shown_host = f"[{shown_host}]"
    base_url = f"http://{shown_host}:{port}"
    with app_context(ONCAL_MODE="demo", BASE_URL=base_url) as app:
        database = get_database(app)
        upgrade(database)
        password = demo_data.demo_password(Path(app.instance_path))
        with database.session() as session:
            report = demo_data.seed(session, utcnow(), password)
        notify.shifts_changed(report.touched_user_ids)
        total = WriteResult()
        for result in report.shift_results:
            total.merge(result)
        user = report.user
        start, end = report.window
        click.echo(f"Demo data in {describe_database(database.url)}")
        click.echo(
            f"  {len(demo_data.PEOPLE)} users ({report.users_created} new), "
            f"{len(report.schedule_results)} schedules ({report.schedules_created} new), "
            f"shifts from {start:%Y-%m-%d} to {end:%Y-%m-%d}: {total.created} created, "
            f"{total.updated} updated, {total.unchanged} unchanged, {total.deleted} deleted"
        )
        click.echo("")
        click.echo(f"Sign in at {base_url}/login")
        click.echo(f"  email:    {user.email}")
        click.echo(f"  password: {password}")
        click.echo("")
        links = feed_links(user)
        click.echo(f"{user.display_name}'s calendar feed (subscribe to it in a calendar app):")
        click.echo(f"  {links.https}")
        click.echo(f"  {links.webcal}")
    if no_serve:
        click.echo("")
        click.echo("To serve it: oncal-feed demo (seeding again changes nothing).")
        return
    from oncal_feed.sync.tasks import start_embedded_worker

    click.echo("")
    click.echo(f"Serving on {base_url}/ with a push-sync worker inside - press Ctrl+C to stop.")
    # One process for a first try: connected calendars sync without `oncal-feed worker`.
    stop_worker = start_embedded_worker(app)
    try:
        _run(app, host, port)
    finally:
        stop_worker()


from oncal_feed.feeds.cli import feed_url, rotate_feed  # noqa: E402

main.add_command(feed_url)
main.add_command(rotate_feed)

from oncal_feed.connections.cli import rotate_token_key  # noqa: E402

main.add_command(rotate_token_key)

from oncal_feed.sync.cli import worker  # noqa: E402

main.add_command(worker)
