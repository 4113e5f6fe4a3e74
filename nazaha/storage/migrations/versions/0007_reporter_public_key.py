"""The reporter's public key on each report (issue 10, first step of team-key rotation).

``reports.reporter_public_key``: nullable, the reporter's ML-KEM-768 + X25519 public key
(1216 bytes) derived from the receipt's Argon2id master (HKDF "nazaha/receipt/kem/v1"). It
lets a new case key be wrapped for the reporter without the receipt. Testing a receipt guess
against it costs the same Argon2id as against ``receipt_lookup``: no new exposure.

Existing reports get NULL; the bot fills it in the next time their reporter unlocks the case
with the receipt (a report-side write, never in an update's unit of work). Nothing is
computed here: the receipt is needed and never stored.

Downgrade drops the column (the keys come back at the next unlocks after a new upgrade).

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-01
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0007"
down_revision: str | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    # A nullable column without a default: a plain ALTER TABLE ADD COLUMN on SQLite too.
    op.add_column("reports", sa.Column("reporter_public_key", sa.LargeBinary(), nullable=True))


def downgrade() -> None:
    # A plain ALTER TABLE DROP COLUMN (SQLite >= 3.35): never a batch copy of the table,
    # whose DROP TABLE would cascade to every report's rows.
    op.drop_column("reports", "reporter_public_key")
