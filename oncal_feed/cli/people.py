"""`oncal-feed set-password EMAIL` and `oncal-feed invite EMAIL`: letting people sign in
from the shell."""

from __future__ import annotations

import click
from flask import Flask

from oncal_feed import accounts
from oncal_feed.admin.links import password_link
from oncal_feed.cli.helpers import require_schema, with_app
from oncal_feed.db import get_database, utcnow

__all__ = ["invite", "set_password"]


@click.command("set-password")
@click.argument("email")
@with_app
def set_password(app: Flask, email: str) -> None:
    """Set (or replace) the sign-in password of the user with EMAIL; it is prompted for.

    The user's sessions on every device end, as with any new password.
    """
    require_schema(get_database(app))
    database = get_database(app)
    with database.session() as session:
        accounts.get_user_by_email(session, email)  # before asking: an unknown email fails
    # Ask outside the transaction: a write lock must not wait for someone typing.
    secret = click.prompt("New password", hide_input=True, confirmation_prompt=True)
    accounts.check_new_password(secret)
    with database.session() as session:
        user = accounts.get_user_by_email(session, email)
        accounts.set_password(user, secret)
        user.updated_at = utcnow()
    click.echo(f"Password set for {user.email}; their other sessions have ended.")


@click.command("invite")
@click.argument("email")
@click.option("--reset", is_flag=True, help="A password reset link instead of an invitation.")
@with_app
def invite(app: Flask, email: str, reset: bool) -> None:
    """Print a single-use link that lets the user with EMAIL choose a password.

    The link expires after PASSWORD_LINK_HOURS and replaces any earlier one; when SMTP is
    configured it is also emailed. Only the link goes to standard output.
    """
    require_schema(get_database(app))
    with get_database(app).sessionmaker() as session:
        user = accounts.get_user_by_email(session, email)
        made = password_link(session, user, "reset" if reset else "invite", app.config, utcnow())
        address = user.email
    click.echo(made.url)
    mailed = f" It was emailed to {address}." if made.mailed else ""
    click.echo(
        f"Single-use link for {address}, valid until {made.expires_text}.{mailed} "
        "Anyone with it can set this user's password: send it only to them.",
        err=True,
    )
