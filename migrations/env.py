"""Alembic environment: runs migrations on the connection or URL given by oncal_feed."""

from __future__ import annotations

from alembic import context
from sqlalchemy import Connection

from oncal_feed import models  # noqa: F401  (registers every table on Base.metadata)
from oncal_feed.db import Base, Database

config = context.config
target_metadata = Base.metadata


def run_migrations(connection: Connection) -> None:
    """Run the pending migrations inside one transaction on `connection`."""
    context.configure(
        connection=connection,
        target_metadata=target_metadata,
        render_as_batch=connection.dialect.name == "sqlite",
        compare_type=True,
    )
    with context.begin_transaction():
        context.run_migrations()


connection = config.attributes.get("connection")
if connection is not None:
    run_migrations(connection)
else:
    database = Database(config.get_main_option("sqlalchemy.url") or "")
    with database.engine.connect() as conn:
        run_migrations(conn)
        conn.commit()
    database.dispose()
