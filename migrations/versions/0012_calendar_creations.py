"""calendar creations: intents recorded before the app creates its own calendar

Revision ID: 0012
Revises: 0011
Create Date: 2026-12-03 16:00:00.000000
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import oncal_feed.db

revision = "0012"
down_revision = "0011"
branch_labels = None
depends_on = None


def upgrade() -> None:
    """Add the `calendar_creations` table."""
    op.create_table(
        "calendar_creations",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("user_id", sa.Integer(), nullable=False),
        sa.Column("provider", sa.String(length=16), nullable=False),
        sa.Column("calendar_name", sa.String(length=200), nullable=False),
        sa.Column("request_id", sa.String(length=36), nullable=False),
        sa.Column("started_at", oncal_feed.db.UTCDateTime(), nullable=False),
        sa.Column("orphan_since", oncal_feed.db.UTCDateTime(), nullable=True),
        sa.ForeignKeyConstraint(["user_id"], ["users.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("request_id"),
    )
    with op.batch_alter_table("calendar_creations", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_calendar_creations_user_id"), ["user_id"], unique=False
        )


def downgrade() -> None:
    """Revert this migration."""
    with op.batch_alter_table("calendar_creations", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_calendar_creations_user_id"))
    op.drop_table("calendar_creations")
