"""`oncal-feed feed-url` and `oncal-feed rotate-feed`: a user's feed link from the shell.

Listed in `oncal_feed.cli.COMMANDS`.
"""

from __future__ import annotations

import click
from flask import Flask

from oncal_feed.accounts import get_user_by_email
from oncal_feed.cli.helpers import with_app
from oncal_feed.db import get_database, utcnow
from oncal_feed.feeds import store, tokens

__all__ = ["feed_url", "rotate_feed"]

# The URL is the only key to the feed; say so wherever it is printed.
SHARING_WARNING = "Anyone with this link can read the calendar; share it like a password."


@click.command("feed-url")
@click.argument("email")
@with_app
def feed_url(app: Flask, email: str) -> None:
    """Print the URL of EMAIL's first feed (https, then webcal to open a calendar app)."""
    with get_database(app).session() as session:
        links = tokens.feed_links(store.first_feed(session, get_user_by_email(session, email)))
    click.echo(links.https)
    click.echo(links.webcal)
    click.echo(SHARING_WARNING, err=True)


@click.command("rotate-feed")
@click.argument("email")
@with_app
def rotate_feed(app: Flask, email: str) -> None:
    """Give EMAIL's first feed a new URL; the old one stops working at once."""
    with get_database(app).session() as session:
        user = get_user_by_email(session, email)
        feed = store.first_feed(session, user)
        store.rotate_feed(session, feed, utcnow())
        links = tokens.feed_links(feed)
    click.echo(links.https)
    click.echo(links.webcal)
    click.echo(
        f"The previous feed URL of {user.email} has stopped working. Calendars subscribed "
        "to it will get no more updates; subscribe them to the new URL.",
        err=True,
    )
