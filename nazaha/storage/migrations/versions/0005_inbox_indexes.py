"""Indexes for the console's inbox (issue 9): every page filters, sorts and counts all the
cases a member may see, so it reads every report's triage columns.

* ``ix_reports_inbox``: the triage columns in report id order. A page scans this narrow
  index instead of the table (whose rows carry the ~1.2 kB wrapped keys), and walking it in
  id order makes the joins to the console's rows (keyed by report id) read in order too.
* ``ix_reports_received``: the same columns by day received: the newest-first page stops
  after 50 rows, and a date range or a deadline flag reads only its part.
* ``ix_case_messages_unread_by_staff``: the reporter messages no staff member has read yet
  (the inbox's "new" mark), a partial index that holds only those.

Nothing but indexes: no data changes, downgrade drops them. They index columns that are
plain already; no new information is stored.

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-01
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

TRIAGE = ["status", "kind", "category", "service", "sector", "governorate", "designation"]
UNREAD_BY_STAFF = "direction = 'reporter' AND NOT read_by_staff"


def upgrade() -> None:
    op.create_index("ix_reports_inbox", "reports", ["id", "created_on", *TRIAGE])
    op.create_index("ix_reports_received", "reports", ["created_on", "id", *TRIAGE])
    op.create_index(
        "ix_case_messages_unread_by_staff",
        "case_messages",
        ["report_id"],
        sqlite_where=sa.text(UNREAD_BY_STAFF),
        postgresql_where=sa.text(UNREAD_BY_STAFF),
    )


def downgrade() -> None:
    op.drop_index("ix_case_messages_unread_by_staff", table_name="case_messages")
    op.drop_index("ix_reports_received", table_name="reports")
    op.drop_index("ix_reports_inbox", table_name="reports")
