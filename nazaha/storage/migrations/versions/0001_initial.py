"""Initial schema: settings, reports and their sealed fields, update dedup, FSM drafts,
preferences, staff users.

Revision ID: 0001
Revises:
Create Date: 2025-01-01
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0001"
down_revision: str | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "system_settings",
        sa.Column("name", sa.String(64), nullable=False),
        sa.Column("value", sa.LargeBinary(), nullable=False),
        sa.PrimaryKeyConstraint("name", name="pk_system_settings"),
    )
    op.create_table(
        "reports",
        sa.Column("id", sa.String(32), nullable=False),
        sa.Column("designation", sa.String(16), nullable=False),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("category", sa.String(64), nullable=True),
        sa.Column("sector", sa.String(64), nullable=True),
        sa.Column("service", sa.String(64), nullable=True),
        sa.Column("governorate", sa.String(64), nullable=True),
        sa.Column("status", sa.String(32), server_default="received", nullable=False),
        sa.Column("created_on", sa.Date(), nullable=False),
        sa.Column("team_key_id", sa.String(64), nullable=False),
        sa.Column("wrapped_key_team", sa.LargeBinary(), nullable=False),
        sa.Column("wrapped_key_reporter", sa.LargeBinary(), nullable=False),
        sa.Column("receipt_lookup", sa.LargeBinary(), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_reports"),
        sa.UniqueConstraint("designation", name="uq_reports_designation"),
    )
    op.create_index("ix_reports_receipt_lookup", "reports", ["receipt_lookup"], unique=True)
    op.create_table(
        "report_fields",
        sa.Column("report_id", sa.String(32), nullable=False),
        sa.Column("name", sa.String(64), nullable=False),
        sa.Column("sealed", sa.LargeBinary(), nullable=False),
        sa.ForeignKeyConstraint(
            ["report_id"],
            ["reports.id"],
            name="fk_report_fields_report_id_reports",
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("report_id", "name", name="pk_report_fields"),
    )
    op.create_table(
        "processed_updates",
        sa.Column("bot_id", sa.BigInteger(), autoincrement=False, nullable=False),
        sa.Column("update_id", sa.BigInteger(), autoincrement=False, nullable=False),
        sa.Column("processed_on", sa.Date(), nullable=False),
        sa.PrimaryKeyConstraint("bot_id", "update_id", name="pk_processed_updates"),
    )
    op.create_index(
        "ix_processed_updates_processed_on", "processed_updates", ["processed_on"], unique=False
    )
    op.create_table(
        "fsm_records",
        sa.Column("key", sa.String(128), nullable=False),
        sa.Column("state", sa.String(255), nullable=True),
        sa.Column("sealed_data", sa.LargeBinary(), nullable=True),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("expired", sa.Boolean(), server_default=sa.false(), nullable=False),
        sa.PrimaryKeyConstraint("key", name="pk_fsm_records"),
    )
    op.create_index("ix_fsm_records_expires_at", "fsm_records", ["expires_at"], unique=False)
    op.create_table(
        "user_preferences",
        sa.Column("pseudonym", sa.String(128), nullable=False),
        sa.Column("sealed", sa.LargeBinary(), nullable=False),
        sa.PrimaryKeyConstraint("pseudonym", name="pk_user_preferences"),
    )
    op.create_table(
        "staff_users",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("username", sa.String(64), nullable=False),
        sa.Column("password_phc", sa.String(255), nullable=False),
        sa.Column("role", sa.String(32), nullable=False),
        sa.Column("sealed_team_key", sa.LargeBinary(), nullable=True),
        sa.Column("created_on", sa.Date(), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_staff_users"),
        sa.UniqueConstraint("username", name="uq_staff_users_username"),
    )


def downgrade() -> None:
    op.drop_table("staff_users")
    op.drop_table("user_preferences")
    op.drop_index("ix_fsm_records_expires_at", table_name="fsm_records")
    op.drop_table("fsm_records")
    op.drop_index("ix_processed_updates_processed_on", table_name="processed_updates")
    op.drop_table("processed_updates")
    op.drop_table("report_fields")
    op.drop_index("ix_reports_receipt_lookup", table_name="reports")
    op.drop_table("reports")
    op.drop_table("system_settings")
