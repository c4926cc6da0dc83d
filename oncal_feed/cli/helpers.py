"""What every `oncal-feed` command shares: building the app, reporting errors, the schema check.

A leaf module: it imports the app factory and the core (database, errors, migrations) but
no command module, so any package's `cli.py` can import it first without a cycle.

Each command builds the app it needs with `create_app()`, so settings come from the
environment and `.env` exactly as for the web server. A mapping passed as click's `obj`
(``main(obj={...})``) is added on top, as `create_app(config=...)` would take it; tests use
it for `INSTANCE_PATH`, which is not an environment setting.

Exit codes: 0 done, 1 the input or the data was refused (nothing was written), 2 usage or
configuration error.
"""

from __future__ import annotations

import errno
import signal
import socket
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from functools import wraps
from typing import Any, NoReturn

import click
from flask import Flask
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError, NoSuchModuleError, OperationalError

from oncal_feed import create_app
from oncal_feed.db import Database, get_database
from oncal_feed.errors import ConfigError, FieldError, OncalError, ValidationError
from oncal_feed.migrate import current_revision, head_revision, schema_state

__all__ = [
    "MAX_PROBLEMS_SHOWN",
    "app_context",
    "build_app",
    "check_port_free",
    "count",
    "describe_database",
    "echo_problems",
    "fail",
    "require_schema",
    "run_server",
    "with_app",
]

# Printing thousands of problems helps nobody; the first ones show the pattern.
MAX_PROBLEMS_SHOWN = 50


def build_app(**overrides: Any) -> Flask:
    """Create the app (with click's `obj` and `overrides` as config) or exit explaining why."""
    context = click.get_current_context(silent=True)
    config = dict(context.obj or {}) if context is not None else {}
    config.update(overrides)
    try:
        return create_app(config or None)
    except ConfigError as exc:
        fail(str(exc), code=2)
    except (ArgumentError, NoSuchModuleError):
        fail("DATABASE_URL is not a database URL SQLAlchemy understands (see .env.example).", 2)


def fail(message: str, code: int = 1) -> NoReturn:
    """Print `Error: message` on stderr and exit with `code`."""
    click.echo(f"Error: {message}", err=True)
    sys.exit(code)


def echo_problems(errors: list[FieldError]) -> None:
    """Print the first `MAX_PROBLEMS_SHOWN` problems, each with its line and field."""
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
        echo_problems(exc.errors)
        sys.exit(1)
    except OncalError as exc:
        fail(str(exc))
    except OperationalError as exc:
        # Unreachable, refused, locked, unknown database: the driver's first line says which,
        # and never contains the password.
        reason = str(exc.orig or exc).strip().splitlines()[0]
        fail(f"the database could not be used: {reason}")
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
    fail(
        f"the database schema is not up to date (database: {current}, code: "
        f"{head_revision()}). Run `oncal-feed init-db` first."
    )


def count(number: int, noun: str) -> str:
    """`1 shift`, `2 shifts`: a number with its noun, plural when it needs one."""
    return f"{number} {noun}" if number == 1 else f"{number} {noun}s"


def describe_database(url: str) -> str:
    """The database URL with any password hidden, for messages."""
    return make_url(url).render_as_string(hide_password=True)


def check_port_free(host: str, port: int) -> None:
    """Fail with a message naming `--port` when `host:port` can't be listened on.

    Werkzeug's own message says "start the server with a different port" but not how;
    this check runs first so the reader gets the option's name.
    """
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as probe:
        # As the server will: a port in TIME_WAIT after a restart is free to use.
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host, port))
        except OSError as exc:
            if exc.errno != errno.EADDRINUSE:
                fail(f"Can't listen on {host}:{port} ({exc.strerror}). Try --host or --port.", 2)
            fail(
                f"Port {port} on {host} is already in use: another program (perhaps an "
                "earlier oncal-feed) is listening there. Stop that program, or choose "
                f"another port with --port, e.g. --port {port + 1}.",
                code=2,
            )


def _stop_on_signals() -> None:
    """Make SIGINT and SIGTERM end the server the same way, Ctrl+C's way.

    A shell starts a background job (`oncal-feed demo &`) with SIGINT ignored, and Python
    then keeps it ignored, so `kill -INT` did nothing; SIGTERM killed the process without
    running any cleanup. Both now raise KeyboardInterrupt in the main thread, which the
    development server takes as its signal to stop, and `finally` blocks run.
    """

    def interrupt(signum: int, _frame: object) -> None:
        raise KeyboardInterrupt(signal.Signals(signum).name)

    signal.signal(signal.SIGINT, interrupt)
    signal.signal(signal.SIGTERM, interrupt)


def run_server(app: Flask, host: str, port: int) -> None:
    """Serve `app` with Flask's development server until SIGINT or SIGTERM."""
    check_port_free(host, port)
    _stop_on_signals()
    # Settings were read by create_app; Flask must not load .env a second time.
    app.run(host=host, port=port, threaded=True, load_dotenv=False)
