"""Evidence and follow-up: case threads, evidence rows, notification links and their outbox,
receipt attempt counters, and the outcome of a report.

Revision ID: 0002
Revises: 0001
Create Date: 2026-01-01
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def _report_fk(table: str) -> sa.ForeignKeyConstraint:
    return sa.ForeignKeyConstraint(
        ["report_id"], ["reports.id"], name=f"fk_{table}_report_id_reports", ondelete="CASCADE"
    )


def upgrade() -> None:
    # A nullable column without a default: a plain ALTER TABLE ADD COLUMN on SQLite too
    # (batch mode does not copy the table for it).
    with op.batch_alter_table("reports") as batch:
        batch.add_column(sa.Column("outcome", sa.String(32), nullable=True))

    op.create_table(
        "case_messages",
        sa.Column("id", sa.String(32), nullable=False),
        sa.Column("report_id", sa.String(32), nullable=False),
        sa.Column("seq", sa.Integer(), nullable=False),
        sa.Column("direction", sa.String(16), nullable=False),
        sa.Column("sealed_body", sa.LargeBinary(), nullable=False),
        sa.Column("created_on", sa.Date(), nullable=False),
        sa.Column("read_by_reporter", sa.Boolean(), server_default=sa.false(), nullable=False),
        sa.Column("read_by_staff", sa.Boolean(), server_default=sa.false(), nullable=False),
        _report_fk("case_messages"),
        sa.PrimaryKeyConstraint("id", name="pk_case_messages"),
        sa.UniqueConstraint("report_id", "seq", name="uq_case_messages_report_id_seq"),
    )
    op.create_table(
        "evidence",
        sa.Column("id", sa.String(32), nullable=False),
        sa.Column("report_id", sa.String(32), nullable=False),
        sa.Column("seq", sa.Integer(), nullable=False),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("size_bytes", sa.BigInteger(), nullable=False),
        sa.Column("has_clean_copy", sa.Boolean(), server_default=sa.false(), nullable=False),
        sa.Column("flagged", sa.String(32), nullable=True),
        sa.Column("sealed_meta", sa.LargeBinary(), nullable=False),
        sa.Column("added_on", sa.Date(), nullable=False),
        sa.Column("source", sa.String(16), nullable=False),
        _report_fk("evidence"),
        sa.PrimaryKeyConstraint("id", name="pk_evidence"),
        sa.UniqueConstraint("report_id", "seq", name="uq_evidence_report_id_seq"),
    )
    op.create_table(
        "notification_links",
        sa.Column("id", sa.String(32), nullable=False),
        sa.Column("report_id", sa.String(32), nullable=False),
        sa.Column("chat_pseudonym", sa.String(128), nullable=False),
        sa.Column("sealed_chat", sa.LargeBinary(), nullable=False),
        sa.Column("created_on", sa.Date(), nullable=False),
        _report_fk("notification_links"),
        sa.PrimaryKeyConstraint("id", name="pk_notification_links"),
        sa.UniqueConstraint(
            "report_id", "chat_pseudonym", name="uq_notification_links_report_id_chat_pseudonym"
        ),
    )
    op.create_index(
        "ix_notification_links_chat_pseudonym",
        "notification_links",
        ["chat_pseudonym"],
        unique=False,
    )
    op.create_table(
        "pending_notifications",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("report_id", sa.String(32), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        _report_fk("pending_notifications"),
        sa.PrimaryKeyConstraint("id", name="pk_pending_notifications"),
    )
    op.create_index(
        "ix_pending_notifications_report_id",
        "pending_notifications",
        ["report_id"],
        unique=False,
    )
    op.create_table(
        "receipt_attempts",
        sa.Column("key", sa.String(128), nullable=False),
        sa.Column("window", sa.String(16), nullable=False),
        sa.Column("count", sa.Integer(), server_default="0", nullable=False),
        sa.PrimaryKeyConstraint("key", "window", name="pk_receipt_attempts"),
    )


def downgrade() -> None:
    op.drop_table("receipt_attempts")
    op.drop_index("ix_pending_notifications_report_id", table_name="pending_notifications")
    op.drop_table("pending_notifications")
    op.drop_index("ix_notification_links_chat_pseudonym", table_name="notification_links")
    op.drop_table("notification_links")
    op.drop_table("evidence")
    op.drop_table("case_messages")
    # Not a batch table copy: on SQLite, dropping the old "reports" table with foreign keys
    # on would cascade-delete every report's fields. SQLite >= 3.35 drops a plain column
    # in place.
    op.drop_column("reports", "outcome")
