"""Run and inspect Alembic migrations from code (CLI `init-db`, tests, readiness checks)."""

from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory

from oncal_feed.db import Database

__all__ = ["alembic_config", "current_revision", "head_revision", "is_current", "upgrade"]


def _migrations_dir() -> Path:
    """Locate the migrations: inside an installed wheel, else the checkout's top level."""
    import oncal_feed

    installed = Path(oncal_feed.__file__).parent / "migrations"
    if (installed / "env.py").is_file():
        return installed
    return Path(oncal_feed.__file__).parent.parent / "migrations"


def alembic_config(database: Database) -> Config:
    """Return an Alembic config pointing at our migrations and `database`."""
    config = Config()
    config.set_main_option("script_location", str(_migrations_dir()))
    config.set_main_option("sqlalchemy.url", database.url.replace("%", "%%"))
    return config


def upgrade(database: Database, revision: str = "head") -> None:
    """Bring the schema up to `revision`; a no-op when it is already there."""
    config = alembic_config(database)
    with database.engine.begin() as connection:
        config.attributes["connection"] = connection
        command.upgrade(config, revision)


def head_revision(database: Database) -> str | None:
    """Return the newest revision the code knows."""
    return ScriptDirectory.from_config(alembic_config(database)).get_current_head()


def current_revision(database: Database) -> str | None:
    """Return the revision the database is at (None when never migrated)."""
    with database.engine.connect() as connection:
        return MigrationContext.configure(connection).get_current_revision()


def is_current(database: Database) -> bool:
    """Tell whether the database schema matches the code's newest migration."""
    return current_revision(database) == head_revision(database)
