"""feeds: a reminder before each shift ends (the hand-off)

Revision ID: 0017
Revises: 0016
Create Date: 2026-12-06 13:50:00.000000

`feeds.handoff_reminder_minutes`: minutes before each of the owner's shifts ends that the
feed's calendars remind, or NULL for none. Every existing feed gets NULL, so what it says,
and its ETag, stay as they were.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0017"
down_revision = "0016"
branch_labels = None
depends_on = None

# The columns of `feeds` whose change drops a cached feed row, as migration 0014 had them.
_BEFORE = (
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
_AFTER = (*_BEFORE, "handoff_reminder_minutes")


def upgrade() -> None:
    """Add `feeds.handoff_reminder_minutes`, NULL (no hand-off reminder) for every feed."""
    with op.batch_alter_table("feeds", schema=None) as batch_op:
        batch_op.add_column(sa.Column("handoff_reminder_minutes", sa.Integer(), nullable=True))
    _watch(_AFTER)


def downgrade() -> None:
    """Drop `feeds.handoff_reminder_minutes`."""
    _watch(_BEFORE)
    with op.batch_alter_table("feeds", schema=None) as batch_op:
        batch_op.drop_column("handoff_reminder_minutes")


def _watch(columns: tuple[str, ...]) -> None:
    """Recreate the PostgreSQL trigger on `feeds` over `columns` (its function stays)."""
    if op.get_bind().dialect.name != "postgresql":
        return
    old = "(" + ", ".join(f"OLD.{column}" for column in columns) + ")"
    new = "(" + ", ".join(f"NEW.{column}" for column in columns) + ")"
    op.execute("DROP TRIGGER feeds_feed_row_change ON feeds")
    op.execute(
        f"""
        CREATE TRIGGER feeds_feed_row_change AFTER UPDATE ON feeds FOR EACH ROW
        WHEN ({old} IS DISTINCT FROM {new})
        EXECUTE FUNCTION oncal_notify_feed_row()
        """
    )
