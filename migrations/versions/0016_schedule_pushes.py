"""calendar connections: schedule pushes, a whole schedule in a calendar of its own

Revision ID: 0016
Revises: 0015
Create Date: 2026-12-06 05:00:00.000000

A schedule push is a `calendar_connections` row under the user's account connection
(`parent_id`) that writes every shift of `schedule_id` into a dedicated calendar through
the parent's grant. The one-row-per-user-and-provider rule now holds for account
connections only (a partial unique index), and a connection pushes each schedule once.
Existing rows are account connections and keep working as they are.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0016"
down_revision = "0015"
branch_labels = None
depends_on = None

_ACCOUNTS_ONLY = sa.text("parent_id IS NULL")


def upgrade() -> None:
    """Add `parent_id` and `schedule_id`; narrow the unique rule to account connections."""
    with op.batch_alter_table("calendar_connections", schema=None) as batch_op:
        batch_op.add_column(sa.Column("parent_id", sa.Integer(), nullable=True))
        batch_op.add_column(sa.Column("schedule_id", sa.Integer(), nullable=True))
        batch_op.create_foreign_key(
            batch_op.f("fk_calendar_connections_parent_id_calendar_connections"),
            "calendar_connections",
            ["parent_id"],
            ["id"],
            ondelete="CASCADE",
        )
        batch_op.create_foreign_key(
            batch_op.f("fk_calendar_connections_schedule_id_schedules"),
            "schedules",
            ["schedule_id"],
            ["id"],
            ondelete="CASCADE",
        )
        batch_op.create_index(
            batch_op.f("ix_calendar_connections_parent_id"), ["parent_id"], unique=False
        )
        batch_op.create_index(
            batch_op.f("ix_calendar_connections_schedule_id"), ["schedule_id"], unique=False
        )
        batch_op.drop_constraint("uq_calendar_connections_user_id_provider", type_="unique")
        batch_op.create_unique_constraint(
            batch_op.f("uq_calendar_connections_parent_id_schedule_id"),
            ["parent_id", "schedule_id"],
        )
    op.create_index(
        "uq_calendar_connections_account",
        "calendar_connections",
        ["user_id", "provider"],
        unique=True,
        sqlite_where=_ACCOUNTS_ONLY,
        postgresql_where=_ACCOUNTS_ONLY,
    )


def downgrade() -> None:
    """Revert this migration; schedule pushes are dropped (their calendars stay remote)."""
    op.execute(sa.text("DELETE FROM calendar_connections WHERE parent_id IS NOT NULL"))
    op.drop_index("uq_calendar_connections_account", table_name="calendar_connections")
    with op.batch_alter_table("calendar_connections", schema=None) as batch_op:
        batch_op.drop_constraint(
            batch_op.f("uq_calendar_connections_parent_id_schedule_id"), type_="unique"
        )
        batch_op.create_unique_constraint(
            "uq_calendar_connections_user_id_provider", ["user_id", "provider"]
        )
        batch_op.drop_index(batch_op.f("ix_calendar_connections_schedule_id"))
        batch_op.drop_index(batch_op.f("ix_calendar_connections_parent_id"))
        batch_op.drop_constraint(
            batch_op.f("fk_calendar_connections_schedule_id_schedules"), type_="foreignkey"
        )
        batch_op.drop_constraint(
            batch_op.f("fk_calendar_connections_parent_id_calendar_connections"),
            type_="foreignkey",
        )
        batch_op.drop_column("schedule_id")
        batch_op.drop_column("parent_id")
