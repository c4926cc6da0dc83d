"""CLI command `oncal-feed rotate-token-key`: re-encrypt stored tokens under the newest key."""

from __future__ import annotations

import click
from flask import Flask

from oncal_feed.cli.helpers import require_schema, with_app
from oncal_feed.connections.vault import get_vault, rotate_all
from oncal_feed.db import get_database
from oncal_feed.models import mark_needs_reauth
from oncal_feed.providers.base import AuthorizationLost

__all__ = ["rotate_token_key"]

LOST_KEY_MESSAGE = "The stored sign-in was lost with an encryption key; reconnect the calendar."


@click.command("rotate-token-key")
@with_app
def rotate_token_key(app: Flask) -> None:
    """Re-encrypt every stored calendar token with the first TOKEN_ENCRYPTION_KEYS key.

    To rotate: put a new key first in TOKEN_ENCRYPTION_KEYS (keep the old ones after it),
    run this command, then remove the old keys.
    """
    keys = app.config["TOKEN_ENCRYPTION_KEYS"]
    require_schema(get_database(app))
    with get_database(app).session() as session:
        result = rotate_all(session, get_vault(app))
        # Syncs only retry on secrets they can't read (the process might lack a key);
        # here the operator has run with every key there is, so these are lost.
        for connection in result.lost_connections:
            mark_needs_reauth(connection, AuthorizationLost(LOST_KEY_MESSAGE))
    click.echo(f"Re-encrypted {result.rotated} stored secret(s) with the newest key.")
    if result.unreadable:
        click.echo(
            f"Warning: {result.unreadable} stored secret(s) could not be decrypted with any "
            f"configured key; {len(result.lost_connections)} connection(s) now ask their "
            "users to reconnect.",
            err=True,
        )
    if len(keys) > 1 and not result.unreadable:
        click.echo("The older keys in TOKEN_ENCRYPTION_KEYS are no longer needed.")
    elif len(keys) == 1:
        click.echo(
            "Only one key is configured. To rotate, put a new key first in "
            "TOKEN_ENCRYPTION_KEYS, keep the old one after it, and run this again.",
            err=True,
        )
