"""push sync: since when a connection the sweep claimed has been overdue

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-24 04:00:00.000000
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import oncal_feed.db

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    """Add `calendar_connections.overdue_since`, indexed for the queue lag's minimum."""
    with op.batch_alter_table("calendar_connections", schema=None) as batch_op:
        batch_op.add_column(sa.Column("overdue_since", oncal_feed.db.UTCDateTime(), nullable=True))
        batch_op.create_index(
            batch_op.f("ix_calendar_connections_overdue_since"), ["overdue_since"], unique=False
        )


def downgrade() -> None:
    """Revert this migration."""
    with op.batch_alter_table("calendar_connections", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_calendar_connections_overdue_since"))
        batch_op.drop_column("overdue_since")
