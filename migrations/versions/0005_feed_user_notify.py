"""feeds: notify web processes when a user row a feed depends on changes

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-24 10:00:00.000000

PostgreSQL only. Web processes keep the user rows of feeds they serve in memory and LISTEN
on `oncal_feed_users` (see `oncal_feed.feeds.user_cache`). These triggers send the public
id of every user row whose feed columns change or which is deleted, and `*` when the
table is truncated, in the writing transaction: the notification is delivered when, and
only if, it commits. The fetch-record columns are left out on purpose: they change on
feed reads, and each process keeps its own copy of them current.

When a later migration adds a column that feeds read, it must replace `users_feed_change`.
"""

from __future__ import annotations

from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None

FEED_COLUMNS = (
    "public_id",
    "feed_generation",
    "calendar_version",
    "display_name",
    "feed_past_days",
    "feed_future_days",
    "feed_busy",
    # json has no equality operator; its text does.
    "feed_schedule_keys::text",
)


def _row(alias: str) -> str:
    return "(" + ", ".join(f"{alias}.{column}" for column in FEED_COLUMNS) + ")"


def upgrade() -> None:
    """Create the notifying function and its three triggers on `users`."""
    if op.get_bind().dialect.name != "postgresql":
        return
    op.execute(
        """
        CREATE FUNCTION oncal_notify_feed_user() RETURNS trigger
        LANGUAGE plpgsql AS $$
        BEGIN
            IF TG_OP = 'TRUNCATE' THEN
                PERFORM pg_notify('oncal_feed_users', '*');
            ELSE
                PERFORM pg_notify('oncal_feed_users', OLD.public_id);
            END IF;
            RETURN NULL;
        END
        $$
        """
    )
    op.execute(
        f"""
        CREATE TRIGGER users_feed_change AFTER UPDATE ON users FOR EACH ROW
        WHEN ({_row("OLD")} IS DISTINCT FROM {_row("NEW")})
        EXECUTE FUNCTION oncal_notify_feed_user()
        """
    )
    op.execute(
        "CREATE TRIGGER users_feed_delete AFTER DELETE ON users FOR EACH ROW "
        "EXECUTE FUNCTION oncal_notify_feed_user()"
    )
    op.execute(
        "CREATE TRIGGER users_feed_truncate AFTER TRUNCATE ON users FOR EACH STATEMENT "
        "EXECUTE FUNCTION oncal_notify_feed_user()"
    )


def downgrade() -> None:
    """Revert this migration."""
    if op.get_bind().dialect.name != "postgresql":
        return
    for trigger in ("users_feed_truncate", "users_feed_delete", "users_feed_change"):
        op.execute(f"DROP TRIGGER {trigger} ON users")
    op.execute("DROP FUNCTION oncal_notify_feed_user()")
