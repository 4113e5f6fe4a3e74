"""The console's statistics (issue 10): ``outcome`` joins ``ix_reports_received``.

The statistics page counts the outcomes of the closed cases received in a date range. With
``outcome`` in the index by day received, that count reads the index alone instead of the
table row (with its ~1.2 kB wrapped keys) of every closed case.

Nothing but an index: the index is dropped and created again with one more column; no data
changes, downgrade restores the index of 0005. ``outcome`` is a plain column already; no new
information is stored.

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-01
"""

from __future__ import annotations

from collections.abc import Sequence

from alembic import op

revision: str = "0006"
down_revision: str | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

TRIAGE = ["status", "kind", "category", "service", "sector", "governorate", "designation"]


def upgrade() -> None:
    op.drop_index("ix_reports_received", table_name="reports")
    op.create_index("ix_reports_received", "reports", ["created_on", "id", *TRIAGE, "outcome"])


def downgrade() -> None:
    op.drop_index("ix_reports_received", table_name="reports")
    op.create_index("ix_reports_received", "reports", ["created_on", "id", *TRIAGE])
