"""The `oncal-feed` command (`oncal_feed.cli:main`).

Owns the command group and which command lives where. Each command is a click command in
a module of its own area (`cli/admin.py`, `feeds/cli.py`, `sync/cli.py`, ...) that imports
the shared helpers from the leaf `oncal_feed.cli.helpers`, never this package's `main`.
The group imports a command's module only when the command is looked up, so importing
any of those modules first can't run into a half-imported group, and `oncal-feed --help`
stays the one place that loads them all.

May import: anything (it is the outermost layer); `cli.helpers` is a leaf any package's
`cli.py` may import.
"""

from __future__ import annotations

import importlib

import click

__all__ = ["COMMANDS", "main"]

# Command name -> "module:attribute" of its click command.
COMMANDS = {
    "create-api-key": "oncal_feed.cli.admin:create_api_key",
    "create-user": "oncal_feed.cli.admin:create_user",
    "demo": "oncal_feed.cli.serve:demo",
    "feed-url": "oncal_feed.feeds.cli:feed_url",
    "import": "oncal_feed.cli.import_shifts:import_shifts",
    "init-db": "oncal_feed.cli.admin:init_db",
    "invite": "oncal_feed.cli.people:invite",
    "rotate-feed": "oncal_feed.feeds.cli:rotate_feed",
    "rotate-token-key": "oncal_feed.connections.cli:rotate_token_key",
    "serve": "oncal_feed.cli.serve:serve",
    "source": "oncal_feed.sources.cli:source",
    "set-password": "oncal_feed.cli.people:set_password",
    "worker": "oncal_feed.sync.cli:worker",
}


class _Commands(click.Group):
    """A group whose commands are imported from `COMMANDS` when first looked up.

    Click's documented pattern for lazily loaded subcommands.
    """

    def list_commands(self, ctx: click.Context) -> list[str]:
        """Every command's name, sorted as click sorts them."""
        return sorted(COMMANDS)

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        """Import the command's module and return the command (None for unknown names)."""
        target = COMMANDS.get(cmd_name)
        if target is None:
            return None
        module_name, _, attribute = target.partition(":")
        command = getattr(importlib.import_module(module_name), attribute)
        assert isinstance(command, click.Command)
        return command


@click.group(cls=_Commands)
@click.version_option(package_name="oncal-feed")
def main() -> None:
    """oncal-feed: on-call shifts in the calendars people already use.

    Settings come from the environment and from .env (see .env.example). For a first try
    without any configuration, run `oncal-feed demo`.
    """
