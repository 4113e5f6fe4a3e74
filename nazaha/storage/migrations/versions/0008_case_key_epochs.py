"""Case keys by epoch (issue 10: team-key rotation).

``reports.key_epoch`` (default 0): which epoch of the report's case key
``reports.wrapped_key_team`` holds; epoch 0 is the data key made at submission.
``case_key_epochs``: one row per later epoch, made by a team-key rotation: the new case key
wrapped to the reporter's public key (``wrapped_reporter``) and the previous epoch's key
sealed under the new one (``sealed_previous``), so the newest key opens every older one and
an older key opens nothing newer. The team's wrap of the newest key stays in ``reports``.

Downgrade drops both (only safe before any rotation: later epochs' keys would be lost).

Revision ID: 0008
Revises: 0007
Create Date: 2026-11-30
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0008"
down_revision: str | None = "0007"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column(
        "reports",
        sa.Column("key_epoch", sa.Integer(), nullable=False, server_default=sa.text("0")),
    )
    op.create_table(
        "case_key_epochs",
        sa.Column("report_id", sa.String(32), nullable=False),
        sa.Column("epoch", sa.Integer(), nullable=False),
        sa.Column("wrapped_reporter", sa.LargeBinary(), nullable=False),
        sa.Column("sealed_previous", sa.LargeBinary(), nullable=False),
        sa.Column("created_on", sa.Date(), nullable=False),
        sa.ForeignKeyConstraint(
            ["report_id"], ["reports.id"], ondelete="CASCADE",
            name="fk_case_key_epochs_report_id_reports",
        ),
        sa.PrimaryKeyConstraint("report_id", "epoch", name="pk_case_key_epochs"),
    )


def downgrade() -> None:
    op.drop_table("case_key_epochs")
    # A plain ALTER TABLE DROP COLUMN (SQLite >= 3.35), never a batch copy of the table.
    op.drop_column("reports", "key_epoch")
