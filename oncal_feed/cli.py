"""The `oncal-feed` command.

Each command builds the app it needs with `create_app()`, so settings come from the
environment and `.env` exactly as for the web server.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from functools import wraps
from typing import Any

import click
from flask import Flask

from oncal_feed import accounts, create_app
from oncal_feed.db import get_database, utcnow
from oncal_feed.errors import ConfigError, OncalError, ValidationError
from oncal_feed.migrate import upgrade
from oncal_feed.validation import parse_user

__all__ = ["main"]


def build_app(**overrides: Any) -> Flask:
    """Create the app or exit with the configuration problem explained."""
    try:
        return create_app(overrides or None)
    except ConfigError as exc:
        click.echo(f"Error: {exc}", err=True)
        sys.exit(2)


def with_app(command: Callable[..., Any]) -> Callable[..., Any]:
    """Run `command(app, ...)` inside an app context; turn our errors into exit code 1."""

    @wraps(command)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        app = build_app()
        with app.app_context():
            try:
                return command(app, *args, **kwargs)
            except ValidationError as exc:
                for error in exc.errors:
                    where = f"line {error.line}: " if error.line is not None else ""
                    click.echo(f"Error: {where}{error.field}: {error.problem}", err=True)
                sys.exit(1)
            except OncalError as exc:
                click.echo(f"Error: {exc}", err=True)
                sys.exit(1)

    return wrapper


@click.group()
def main() -> None:
    """oncal-feed: on-call shifts in the calendars people already use."""


@main.command("init-db")
@with_app
def init_db(app: Flask) -> None:
    """Create or upgrade the database schema (safe to run again)."""
    upgrade(get_database(app))
    click.echo("Database is up to date.")


@main.command("create-user")
@click.argument("email")
@click.option("--name", "display_name", required=True, help="Display name.")
@click.option("--time-zone", default="UTC", show_default=True, help="IANA time zone.")
@click.option("--password", is_flag=True, help="Prompt for a sign-in password.")
@with_app
def create_user(app: Flask, email: str, display_name: str, time_zone: str, password: bool) -> None:
    """Create a user who can receive shifts."""
    data = parse_user({"email": email, "display_name": display_name, "time_zone": time_zone})
    with get_database(app).session() as session:
        user = accounts.create_user(session, data, utcnow())
        if password:
            accounts.set_password(
                user, click.prompt("Password", hide_input=True, confirmation_prompt=True)
            )
        click.echo(f"Created user {user.email} ({user.public_id}).")


@main.command("create-api-key")
@click.argument("name")
@with_app
def create_api_key(app: Flask, name: str) -> None:
    """Create an API key and print it once; only a hash is stored."""
    with get_database(app).session() as session:
        key, secret = accounts.create_api_key(session, name, utcnow())
    click.echo(secret)
    click.echo(f"Created API key {name!r} ({key.prefix}...). It will not be shown again.", err=True)


@main.command("serve")
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", default=8000, show_default=True, type=int)
def serve(host: str, port: int) -> None:
    """Run the development server (use gunicorn in production)."""
    build_app().run(host=host, port=port)
