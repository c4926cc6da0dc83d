"""demo calendar: the built-in calendar provider's calendars and events (demo mode)

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-03 13:00:00.000000
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import oncal_feed.db

revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None


def upgrade() -> None:
    """Add the `demo_calendars` and `demo_events` tables."""
    op.create_table(
        "demo_calendars",
        sa.Column("id", sa.String(length=64), nullable=False),
        sa.Column("owner_email", sa.String(length=320), nullable=False),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("time_zone", sa.String(length=64), nullable=False),
        sa.Column("created_at", oncal_feed.db.UTCDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("demo_calendars", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_demo_calendars_owner_email"), ["owner_email"], unique=False
        )
    op.create_table(
        "demo_events",
        sa.Column("calendar_id", sa.String(length=64), nullable=False),
        sa.Column("remote_id", sa.String(length=255), nullable=False),
        sa.Column("uid", sa.String(length=255), nullable=False),
        sa.Column("summary", sa.Text(), nullable=False),
        sa.Column("description", sa.Text(), nullable=False),
        sa.Column("starts_at", oncal_feed.db.UTCDateTime(), nullable=False),
        sa.Column("ends_at", oncal_feed.db.UTCDateTime(), nullable=False),
        sa.Column("spec", sa.JSON(), nullable=False),
        sa.Column("etag", sa.String(length=64), nullable=False),
        sa.Column("cancelled", sa.Boolean(), nullable=False),
        sa.Column("updated_at", oncal_feed.db.UTCDateTime(), nullable=False),
        sa.ForeignKeyConstraint(["calendar_id"], ["demo_calendars.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("calendar_id", "remote_id"),
    )


def downgrade() -> None:
    """Revert this migration."""
    op.drop_table("demo_events")
    with op.batch_alter_table("demo_calendars", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_demo_calendars_owner_email"))
    op.drop_table("demo_calendars")
