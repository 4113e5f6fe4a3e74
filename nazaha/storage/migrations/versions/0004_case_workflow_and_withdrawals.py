"""The caseworkers' workflow in the terms of EU Directive 2019/1937 and ISO 37002, and the
reporter's withdrawals from follow-up (issue 9).

Statuses: ``received → acknowledged → in_review → referred | action_taken → closed``, and a
closed case can be reopened (back to ``in_review``). Outcomes, given only when closing:
``substantiated``, ``not_substantiated``, ``out_of_scope``, ``insufficient_information``.

Old codes are mapped as follows (status first, then outcome):

* outcome ``no_jurisdiction`` becomes ``out_of_scope`` (same meaning, the ISO 37002 term);
* outcome ``referred`` becomes status ``referred`` with no outcome, whatever the status was.
  A referral is a step of the workflow now, not a way to close: the new outcomes have none
  that means "referred", and choosing one (out of scope? substantiated?) would put a
  decision in the caseworkers' mouths. Such a case waits among the referred cases for a
  caseworker to close it with a real outcome (an audited act in the console). Its
  notification links, deleted when it was closed, are not brought back;
* an outcome on a case that is not closed is cleared: an outcome is given only when closing
  now, and the status says where the case stands;
* a closed case without an outcome (the old code allowed it) stays so: the reporter sees
  "Closed." and the console shows no outcome; nothing is invented for it.

New plain columns on ``reports``, a day each (never a time), NULL until it happens:
``contact_withdrawn_on`` (the reporter deleted their contact details) and ``withdrawn_on``
(the reporter withdrew the report; it stays for the caseworkers to close).

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-01
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# The table as this migration sees it (never the models, which move on).
_reports = sa.table(
    "reports",
    sa.column("status", sa.String(32)),
    sa.column("outcome", sa.String(32)),
)


def upgrade() -> None:
    # Nullable columns without a default: a plain ALTER TABLE ADD COLUMN on SQLite too.
    with op.batch_alter_table("reports") as batch:
        batch.add_column(sa.Column("contact_withdrawn_on", sa.Date(), nullable=True))
        batch.add_column(sa.Column("withdrawn_on", sa.Date(), nullable=True))

    op.execute(
        _reports.update()
        .where(_reports.c.outcome == "no_jurisdiction")
        .values(outcome="out_of_scope")
    )
    op.execute(
        _reports.update()
        .where(_reports.c.outcome == "referred")
        .values(status="referred", outcome=None)
    )
    op.execute(
        _reports.update()
        .where(_reports.c.status != "closed", _reports.c.outcome.is_not(None))
        .values(outcome=None)
    )


def downgrade() -> None:
    raise NotImplementedError(
        "0004 maps old status and outcome codes to new ones that cannot all be mapped back, "
        "and older releases know nothing of withdrawals: restore a backup taken before the "
        "upgrade instead"
    )
