"""feeds and push sync: "remind me N minutes before each shift"

Revision ID: 0013
Revises: 0012
Create Date: 2026-12-03 19:10:00.000000

The feeds read the new column, so on PostgreSQL the trigger of migration 0005 that tells
web processes about changed user rows is replaced with one that watches it too.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0013"
down_revision = "0012"
branch_labels = None
depends_on = None

# Migration 0005's columns; json has no equality operator, its text does.
_BEFORE = (
    "public_id",
    "feed_generation",
    "calendar_version",
    "display_name",
    "feed_past_days",
    "feed_future_days",
    "feed_busy",
    "feed_schedule_keys::text",
)
_AFTER = (*_BEFORE, "feed_reminder_minutes")


def _watch(columns: tuple[str, ...]) -> None:
    """(Re)create the trigger that notifies `oncal_feed_users` when `columns` change."""
    if op.get_bind().dialect.name != "postgresql":
        return

    def row(alias: str) -> str:
        return "(" + ", ".join(f"{alias}.{column}" for column in columns) + ")"

    op.execute("DROP TRIGGER users_feed_change ON users")
    op.execute(
        f"""
        CREATE TRIGGER users_feed_change AFTER UPDATE ON users FOR EACH ROW
        WHEN ({row("OLD")} IS DISTINCT FROM {row("NEW")})
        EXECUTE FUNCTION oncal_notify_feed_user()
        """
    )


def upgrade() -> None:
    """Add `users.feed_reminder_minutes`: NULL (no reminder, as before) for everyone."""
    with op.batch_alter_table("users", schema=None) as batch_op:
        batch_op.add_column(sa.Column("feed_reminder_minutes", sa.Integer(), nullable=True))
    _watch(_AFTER)


def downgrade() -> None:
    """Revert this migration."""
    _watch(_BEFORE)
    with op.batch_alter_table("users", schema=None) as batch_op:
        batch_op.drop_column("feed_reminder_minutes")
