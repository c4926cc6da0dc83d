"""`oncal-feed init-db`, `create-user` and `create-api-key`: setting up a database."""

from __future__ import annotations

import click
from flask import Flask

from oncal_feed import accounts
from oncal_feed.cli.helpers import fail, require_schema, with_app
from oncal_feed.db import get_database, utcnow
from oncal_feed.migrate import current_revision, head_revision, schema_state, upgrade
from oncal_feed.validation import parse_user

__all__ = ["create_api_key", "create_user", "init_db"]


@click.command("init-db")
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


@click.command("create-user")
@click.argument("email")
@click.option("--name", "display_name", required=True, help="Display name.")
@click.option("--time-zone", default="UTC", show_default=True, help="IANA time zone.")
@click.option("--password", is_flag=True, help="Prompt for a sign-in password.")
@click.option("--admin", is_flag=True, help="Make the user an admin (of the /admin area).")
@with_app
def create_user(
    app: Flask, email: str, display_name: str, time_zone: str, password: bool, admin: bool
) -> None:
    """Create a user who can receive shifts (a member, or with --admin an admin)."""
    data = parse_user({"email": email, "display_name": display_name, "time_zone": time_zone})
    database = get_database(app)
    require_schema(database)
    # Ask before opening the transaction: a write lock must not wait for someone typing.
    secret = (
        click.prompt("Password", hide_input=True, confirmation_prompt=True) if password else None
    )
    if secret is not None:
        accounts.check_new_password(secret)
    with database.session() as session:
        user = accounts.create_user(session, data, utcnow())
        if admin:
            accounts.set_role(user, "admin", utcnow())
        if secret is not None:
            accounts.set_password(user, secret)
    click.echo(f"Created {'admin' if admin else 'user'} {user.email} ({user.public_id}).")


@click.command("create-api-key")
@click.argument("name")
@with_app
def create_api_key(app: Flask, name: str) -> None:
    """Create an API key named NAME and print it once; only a hash is stored.

    The key alone goes to standard output, so `KEY=$(oncal-feed create-api-key ci)` works.
    """
    if not name.strip():
        fail("the key needs a name")
    database = get_database(app)
    require_schema(database)
    with database.session() as session:
        key, secret = accounts.create_api_key(session, name.strip(), utcnow())
    click.echo(secret)
    click.echo(f"Created API key {name!r} ({key.prefix}...). It will not be shown again.", err=True)
