"""feeds: when each user's calendar last changed, for a Last-Modified every process agrees on

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-03 12:00:00.000000
"""

from __future__ import annotations

from datetime import UTC, datetime

import sqlalchemy as sa
from alembic import op

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None


def upgrade() -> None:
    """Add `users.calendar_changed_at`, set to now for existing users.

    Now, not NULL: until their next change, their feeds' Last-Modified must not be
    earlier than a date a process may already have sent for them.
    """
    with op.batch_alter_table("users", schema=None) as batch_op:
        batch_op.add_column(sa.Column("calendar_changed_at", sa.DateTime(), nullable=True))
    users = sa.table("users", sa.column("calendar_changed_at", sa.DateTime()))
    # Stored as naive UTC, like every instant (oncal_feed.db.UTCDateTime).
    now = datetime.now(UTC).replace(tzinfo=None, microsecond=0)
    op.execute(users.update().values(calendar_changed_at=now))


def downgrade() -> None:
    """Revert this migration."""
    with op.batch_alter_table("users", schema=None) as batch_op:
        batch_op.drop_column("calendar_changed_at")
