"""Run and inspect Alembic migrations from code (CLI `init-db`, tests, readiness checks)."""

from __future__ import annotations

from functools import cache
from pathlib import Path
from typing import TYPE_CHECKING, Literal

from oncal_feed.db import Database

if TYPE_CHECKING:
    from alembic.config import Config

# Alembic is imported where it is used: importing it costs ~0.15 s, which every CLI
# command and app start-up paid although only init-db, upgrades and the readiness check
# need it.

__all__ = [
    "SchemaState",
    "alembic_config",
    "current_revision",
    "head_revision",
    "schema_state",
    "upgrade",
]

SchemaState = Literal["current", "ahead", "behind"]


def _migrations_dir() -> Path:
    """Locate the migrations: inside an installed wheel, else the checkout's top level."""
    import oncal_feed

    installed = Path(oncal_feed.__file__).parent / "migrations"
    if (installed / "env.py").is_file():
        return installed
    return Path(oncal_feed.__file__).parent.parent / "migrations"


def alembic_config(database: Database) -> Config:
    """Return an Alembic config pointing at our migrations and `database`."""
    from alembic.config import Config

    config = Config()
    config.set_main_option("script_location", str(_migrations_dir()))
    config.set_main_option("sqlalchemy.url", database.url.replace("%", "%%"))
    return config


def upgrade(database: Database, revision: str = "head") -> None:
    """Bring the schema up to `revision`; a no-op when it is already there."""
    config = alembic_config(database)
    with database.engine.begin() as connection:
        config.attributes["connection"] = connection
        from alembic import command

        command.upgrade(config, revision)


@cache
def _code_revisions() -> tuple[str | None, frozenset[str]]:
    """The newest revision this release ships, and every one it knows.

    Read once per process: Alembic loads every migration file to answer, and they are the
    release's own files (`/readyz` asks on every probe).
    """
    from alembic.script import ScriptDirectory

    script = ScriptDirectory(str(_migrations_dir()))
    known = frozenset(revision.revision for revision in script.walk_revisions())
    return script.get_current_head(), known


def head_revision() -> str | None:
    """Return the newest revision the code knows."""
    return _code_revisions()[0]


def current_revision(database: Database) -> str | None:
    """Return the revision the database is at (None when never migrated)."""
    with database.engine.connect() as connection:
        from alembic.runtime.migration import MigrationContext

        return MigrationContext.configure(connection).get_current_revision()


def schema_state(database: Database) -> SchemaState:
    """How the database's schema stands to this code's migrations.

    `current`: at the code's newest revision. `behind`: empty, or at one of the code's
    older revisions; `init-db` has to run. `ahead`: at a revision the code does not know,
    so a newer release has migrated it (a rolling deploy under way). Every migration only
    adds to the schema in ways older code never notices (tests/test_migrations.py checks
    each one), so this code still runs on it.
    """
    current = current_revision(database)
    head, known = _code_revisions()
    if current == head:
        return "current"
    if current is None or current in known:
        return "behind"
    return "ahead"
