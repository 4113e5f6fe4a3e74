"""Campaigns record who made and who paused them (issue 11 trial).

``campaigns.created_by`` and ``campaigns.paused_by``: nullable integers, console members'
awareness numbers as ``broadcasts.author_id`` and ``surveys.author_id`` hold them (the
console's store maps a number to a member; the bot's database never says whose it is).
Campaigns made before this revision have no recorded author (NULL): only administrators
may deactivate or activate them. ``paused_by`` is set while a campaign is inactive.

Campaign codes become case-insensitive: the console lower-cases a new code and the bot
looks links up in lower case. Existing codes are lower-cased here, except those whose
lower-case form another campaign's code shares ("Gaza" and "gaza"): both keep their codes,
and a link typed exactly as printed still opens its own campaign.

Columns are added and dropped with plain ALTER TABLE (batch mode with ``recreate="never"``):
never a copy of the table, whose DROP TABLE would cascade to ``campaign_days``. Downgrade
drops the two columns; the codes stay lower case (their former case is not kept).

Revision ID: 0012
Revises: 0011
Create Date: 2026-11-30 19:30:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = '0012'
down_revision: str | None = '0011'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("campaigns", recreate="never") as batch:
        batch.add_column(sa.Column("created_by", sa.Integer(), nullable=True))
        batch.add_column(sa.Column("paused_by", sa.Integer(), nullable=True))
    # Codes are ASCII ([A-Za-z0-9_-]): lower() is the same on SQLite and PostgreSQL.
    op.execute(
        "UPDATE campaigns SET code = lower(code) WHERE code <> lower(code) AND "
        "(SELECT count(*) FROM campaigns AS other WHERE lower(other.code) = lower(campaigns.code)) = 1"
    )


def downgrade() -> None:
    with op.batch_alter_table("campaigns", recreate="never") as batch:
        batch.drop_column("paused_by")
        batch.drop_column("created_by")
