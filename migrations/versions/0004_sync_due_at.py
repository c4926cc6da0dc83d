"""push sync: when each connection is next due, and indexes for the sweep

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-24 09:00:00.000000
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import oncal_feed.db

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    """Add `calendar_connections.sync_due_at`; index it and `dirty_since` for the sweep."""
    with op.batch_alter_table("calendar_connections", schema=None) as batch_op:
        batch_op.add_column(sa.Column("sync_due_at", oncal_feed.db.UTCDateTime(), nullable=True))
        batch_op.create_index(
            batch_op.f("ix_calendar_connections_sync_due_at"), ["sync_due_at"], unique=False
        )
        batch_op.create_index(
            batch_op.f("ix_calendar_connections_dirty_since"), ["dirty_since"], unique=False
        )


def downgrade() -> None:
    """Revert this migration."""
    with op.batch_alter_table("calendar_connections", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_calendar_connections_dirty_since"))
        batch_op.drop_index(batch_op.f("ix_calendar_connections_sync_due_at"))
        batch_op.drop_column("sync_due_at")
