"""A seized bot host yields nothing (issue 7): drafts leave the database, staff keys leave the
bot's database, notification links are sealed twice, pseudonymous rows expire.

Dropped with their contents: ``fsm_records`` (drafts now live in the bot's memory only),
``staff_users`` (the console keeps its own store), ``receipt_attempts`` (counted in memory),
and the old notification links (their chat ids were sealed under the bot key alone, which the
bot host holds; re-sealing them would need the team key, so reporters who had opted in are
told nothing more until they opt in again: see docs/security.md, "Upgrading").
``user_preferences`` and ``processed_updates`` are emptied (the pepper is rotated with this
upgrade, so their keys would be stale anyway) and get hour-coarse expiry columns.

``nazaha init`` runs this migration and then rotates the bot key and pepper and truncates
SQLite's WAL (PostgreSQL: VACUUM), so old row versions do not outlive it.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-30
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def _report_fk(table: str) -> sa.ForeignKeyConstraint:
    return sa.ForeignKeyConstraint(
        ["report_id"], ["reports.id"], name=f"fk_{table}_report_id_reports", ondelete="CASCADE"
    )


def upgrade() -> None:
    op.drop_index("ix_fsm_records_expires_at", table_name="fsm_records")
    op.drop_table("fsm_records")
    op.drop_table("staff_users")
    op.drop_table("receipt_attempts")

    op.drop_table("user_preferences")
    op.create_table(
        "user_preferences",
        sa.Column("pseudonym", sa.String(128), nullable=False),
        sa.Column("sealed", sa.LargeBinary(), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("pseudonym", name="pk_user_preferences"),
    )
    op.create_index(
        "ix_user_preferences_expires_at", "user_preferences", ["expires_at"], unique=False
    )

    op.drop_index("ix_processed_updates_processed_on", table_name="processed_updates")
    op.drop_table("processed_updates")
    op.create_table(
        "processed_updates",
        sa.Column("bot_id", sa.BigInteger(), autoincrement=False, nullable=False),
        sa.Column("update_id", sa.BigInteger(), autoincrement=False, nullable=False),
        sa.Column("claimed_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("bot_id", "update_id", name="pk_processed_updates"),
    )
    op.create_index(
        "ix_processed_updates_claimed_at", "processed_updates", ["claimed_at"], unique=False
    )

    op.drop_index("ix_notification_links_chat_pseudonym", table_name="notification_links")
    op.drop_table("notification_links")
    op.create_table(
        "notification_links",
        sa.Column("id", sa.String(32), nullable=False),
        sa.Column("report_id", sa.String(32), nullable=False),
        sa.Column("sealed_link", sa.LargeBinary(), nullable=False),
        sa.Column("created_on", sa.Date(), nullable=False),
        _report_fk("notification_links"),
        sa.PrimaryKeyConstraint("id", name="pk_notification_links"),
    )
    op.create_index(
        "ix_notification_links_report_id", "notification_links", ["report_id"], unique=False
    )

    # Pending notifications lose their creation time (the one finer-than-a-day time tied to
    # a report); the rows themselves are kept.
    with op.batch_alter_table("pending_notifications") as batch:
        batch.drop_column("created_at")

    op.create_table(
        "bot_mailboxes",
        sa.Column("id", sa.String(32), nullable=False),
        sa.Column("public_key", sa.LargeBinary(), nullable=False),
        sa.Column("opened_on", sa.Date(), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_bot_mailboxes"),
    )
    op.create_table(
        "notification_instructions",
        sa.Column("id", sa.String(32), nullable=False),
        sa.Column("mailbox_id", sa.String(32), nullable=False),
        sa.Column("sealed", sa.LargeBinary(), nullable=False),
        sa.ForeignKeyConstraint(
            ["mailbox_id"],
            ["bot_mailboxes.id"],
            name="fk_notification_instructions_mailbox_id_bot_mailboxes",
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name="pk_notification_instructions"),
    )
    op.create_index(
        "ix_notification_instructions_mailbox_id",
        "notification_instructions",
        ["mailbox_id"],
        unique=False,
    )


def downgrade() -> None:
    raise NotImplementedError(
        "0003 destroys drafts, staff keys and old notification links on purpose: restore a "
        "backup taken before the upgrade instead"
    )
