"""named feeds, schedule feeds and per-connection options

Revision ID: 0014
Revises: 0013
Create Date: 2026-12-04 09:20:00.000000

A person now owns several feeds (`feeds`), each with its own token, options and fetch
record; a feed is personal (their shifts) or covers a whole schedule. Every user's one
feed of today becomes their first named feed: its `public_id` is the user's, and its
generation the user's feed generation, so every feed URL handed out so far (a token of
`[public_id, generation]`) keeps working.

Push sync takes its options (busy, schedules, reminder) from the connection, not from the
user's feed, so each connected calendar has its own. The user's feed columns stay, unread,
for the release before this one (see tests/test_migrations.py).

`schedules.calendar_version` rises with every write that changes what a schedule feed
shows, like `users.calendar_version` for personal feeds.

On PostgreSQL, web processes cache feed rows (`oncal_feed.feeds.user_cache`): triggers on
`feeds`, `users` and `schedules` notify `oncal_feed_users` with `<feed public id>`,
`user:<id>` and `schedule:<id>`, in the writing transaction.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from oncal_feed.db import UTCDateTime

revision = "0014"
down_revision = "0013"
branch_labels = None
depends_on = None

_USER_COLUMNS = ("calendar_version", "display_name", "calendar_changed_at")
_SCHEDULE_COLUMNS = ("calendar_version", "name", "url", "calendar_changed_at")
# The fetch record is left out: it changes on feed reads, and each process keeps its own
# copy of it current.
_FEED_COLUMNS = (
    "public_id",
    "user_id",
    "name",
    "kind",
    "schedule_id",
    "schedule_keys::text",
    "generation",
    "busy",
    "reminder_minutes",
    "past_days",
    "future_days",
    "changed_at",
)


def _row(alias: str, columns: tuple[str, ...]) -> str:
    return "(" + ", ".join(f"{alias}.{column}" for column in columns) + ")"


def upgrade() -> None:
    """Create `feeds` (one per user, from the user's feed), and the new columns."""
    op.create_table(
        "feeds",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("public_id", sa.String(length=40), nullable=False),
        sa.Column("user_id", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("schedule_id", sa.Integer(), nullable=True),
        sa.Column("schedule_keys", sa.JSON(), nullable=True),
        sa.Column("generation", sa.Integer(), nullable=False),
        sa.Column("busy", sa.Boolean(), nullable=False),
        sa.Column("reminder_minutes", sa.Integer(), nullable=True),
        sa.Column("past_days", sa.Integer(), nullable=False),
        sa.Column("future_days", sa.Integer(), nullable=False),
        sa.Column("last_fetched_at", UTCDateTime(), nullable=True),
        sa.Column("last_client", sa.String(length=64), nullable=True),
        sa.Column("changed_at", UTCDateTime(), nullable=True),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.Column("updated_at", UTCDateTime(), nullable=False),
        sa.ForeignKeyConstraint(
            ["user_id"], ["users.id"], name=op.f("fk_feeds_user_id_users"), ondelete="CASCADE"
        ),
        sa.ForeignKeyConstraint(
            ["schedule_id"],
            ["schedules.id"],
            name=op.f("fk_feeds_schedule_id_schedules"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_feeds")),
        sa.UniqueConstraint("public_id", name=op.f("uq_feeds_public_id")),
    )
    op.create_index(op.f("ix_feeds_user_id"), "feeds", ["user_id"], unique=False)
    op.execute(
        """
        INSERT INTO feeds (public_id, user_id, name, kind, schedule_keys, generation, busy,
                           reminder_minutes, past_days, future_days, last_fetched_at,
                           last_client, changed_at, created_at, updated_at)
        SELECT public_id, id, 'My shifts', 'personal', feed_schedule_keys, feed_generation,
               feed_busy, feed_reminder_minutes, feed_past_days, feed_future_days,
               feed_last_fetched_at, feed_last_client, calendar_changed_at, created_at,
               updated_at
        FROM users
        """
    )

    with op.batch_alter_table("calendar_connections", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("busy", sa.Boolean(), nullable=False, server_default=sa.false())
        )
        batch_op.add_column(sa.Column("schedule_keys", sa.JSON(), nullable=True))
        batch_op.add_column(sa.Column("reminder_minutes", sa.Integer(), nullable=True))
    op.execute(
        """
        UPDATE calendar_connections SET
            busy = (SELECT feed_busy FROM users WHERE users.id = calendar_connections.user_id),
            schedule_keys = (SELECT feed_schedule_keys FROM users
                             WHERE users.id = calendar_connections.user_id),
            reminder_minutes = (SELECT feed_reminder_minutes FROM users
                                WHERE users.id = calendar_connections.user_id)
        """
    )

    with op.batch_alter_table("schedules", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("calendar_version", sa.Integer(), nullable=False, server_default="1")
        )
        batch_op.add_column(sa.Column("calendar_changed_at", UTCDateTime(), nullable=True))

    _create_triggers()


def _create_triggers() -> None:
    if op.get_bind().dialect.name != "postgresql":
        return
    # Feed rows are cached by their public id; the rows they join are told by id.
    op.execute(
        """
        CREATE FUNCTION oncal_notify_feed_row() RETURNS trigger
        LANGUAGE plpgsql AS $$
        BEGIN
            IF TG_OP = 'TRUNCATE' THEN
                PERFORM pg_notify('oncal_feed_users', '*');
            ELSIF TG_TABLE_NAME = 'feeds' THEN
                PERFORM pg_notify('oncal_feed_users', OLD.public_id);
            ELSIF TG_TABLE_NAME = 'users' THEN
                PERFORM pg_notify('oncal_feed_users', 'user:' || OLD.id);
            ELSE
                PERFORM pg_notify('oncal_feed_users', 'schedule:' || OLD.id);
            END IF;
            RETURN NULL;
        END
        $$
        """
    )
    # Migration 0005's triggers on users keep notifying by public id (the first feed's).
    op.execute(
        f"""
        CREATE TRIGGER users_feed_row_change AFTER UPDATE ON users FOR EACH ROW
        WHEN ({_row("OLD", _USER_COLUMNS)} IS DISTINCT FROM {_row("NEW", _USER_COLUMNS)})
        EXECUTE FUNCTION oncal_notify_feed_row()
        """
    )
    op.execute(
        f"""
        CREATE TRIGGER schedules_feed_row_change AFTER UPDATE ON schedules FOR EACH ROW
        WHEN ({_row("OLD", _SCHEDULE_COLUMNS)} IS DISTINCT FROM {_row("NEW", _SCHEDULE_COLUMNS)})
        EXECUTE FUNCTION oncal_notify_feed_row()
        """
    )
    op.execute(
        f"""
        CREATE TRIGGER feeds_feed_row_change AFTER UPDATE ON feeds FOR EACH ROW
        WHEN ({_row("OLD", _FEED_COLUMNS)} IS DISTINCT FROM {_row("NEW", _FEED_COLUMNS)})
        EXECUTE FUNCTION oncal_notify_feed_row()
        """
    )
    for table in ("feeds", "schedules"):
        op.execute(
            f"CREATE TRIGGER {table}_feed_row_delete AFTER DELETE ON {table} FOR EACH ROW "
            "EXECUTE FUNCTION oncal_notify_feed_row()"
        )
        op.execute(
            f"CREATE TRIGGER {table}_feed_row_truncate AFTER TRUNCATE ON {table} "
            "FOR EACH STATEMENT EXECUTE FUNCTION oncal_notify_feed_row()"
        )


def downgrade() -> None:
    """Revert this migration (feeds other than each user's first are lost)."""
    if op.get_bind().dialect.name == "postgresql":
        op.execute("DROP TRIGGER users_feed_row_change ON users")
        op.execute("DROP TRIGGER schedules_feed_row_change ON schedules")
        for table in ("feeds", "schedules"):
            op.execute(f"DROP TRIGGER {table}_feed_row_delete ON {table}")
            op.execute(f"DROP TRIGGER {table}_feed_row_truncate ON {table}")
        op.execute("DROP TRIGGER feeds_feed_row_change ON feeds")
        op.execute("DROP FUNCTION oncal_notify_feed_row()")
    with op.batch_alter_table("schedules", schema=None) as batch_op:
        batch_op.drop_column("calendar_changed_at")
        batch_op.drop_column("calendar_version")
    with op.batch_alter_table("calendar_connections", schema=None) as batch_op:
        for column in ("reminder_minutes", "schedule_keys", "busy"):
            batch_op.drop_column(column)
    op.drop_index(op.f("ix_feeds_user_id"), table_name="feeds")
    op.drop_table("feeds")
