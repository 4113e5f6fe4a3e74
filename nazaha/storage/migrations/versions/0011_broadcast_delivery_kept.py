"""A finished broadcast's delivery figures survive its subscribers leaving (issue 11 trial).

``broadcast_outbox.subscriber_id`` becomes nullable with ON DELETE SET NULL (it cascaded):
a subscriber's /stop, /wipe or block no longer deletes their rows from the figures of the
broadcasts they were in; the rows lose the link to them instead. A 403 now deletes the
subscriber (it set ``active`` false, forever): the subscribers kept inactive so far are
deleted here, their topics with them.

Downgrade: rows whose subscriber is gone are deleted (0009 had no place for them), ``left``
rows become ``skipped`` (0009's word for them), and the column cascades again. The
subscribers deleted by the upgrade do not come back.

Revision ID: 0011
Revises: 0010
Create Date: 2026-11-30 19:30:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = '0011'
down_revision: str | None = '0010'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

FK = 'fk_broadcast_outbox_subscriber_id_subscribers'
INACTIVE = 'SELECT id FROM subscribers WHERE active = false'


def _subscriber_key(nullable: bool, ondelete: str) -> None:
    with op.batch_alter_table('broadcast_outbox') as batch:
        batch.drop_constraint(op.f(FK), type_='foreignkey')
        batch.alter_column('subscriber_id', existing_type=sa.Integer(), nullable=nullable)
        batch.create_foreign_key(op.f(FK), 'subscribers', ['subscriber_id'], ['id'], ondelete=ondelete)


def upgrade() -> None:
    _subscriber_key(True, 'SET NULL')
    # Explicit, whatever the connection's foreign-key enforcement (SQLite's is per connection).
    op.execute(f'UPDATE broadcast_outbox SET subscriber_id = NULL WHERE subscriber_id IN ({INACTIVE})')
    op.execute(f'DELETE FROM subscriber_topics WHERE subscriber_id IN ({INACTIVE})')
    op.execute('DELETE FROM subscribers WHERE active = false')


def downgrade() -> None:
    op.execute('DELETE FROM broadcast_outbox WHERE subscriber_id IS NULL')
    op.execute("UPDATE broadcast_outbox SET state = 'skipped' WHERE state = 'left'")
    _subscriber_key(False, 'CASCADE')
