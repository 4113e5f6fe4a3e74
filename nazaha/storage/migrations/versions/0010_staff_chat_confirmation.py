"""Linking a staff member's Telegram chat needs a code typed back in the console (issue 11 trial).

Revision ID: 0010
Revises: 0009
Create Date: 2026-11-30 19:30:00

Before this revision whoever opened a member's ``l_<code>`` link was linked at once: a
``staff_chats`` row may be a chat its member never controlled (a citizen's, handed the
link). Those rows cannot be told apart, so they are deleted, with the codes and test sends
that refer to them; members link their chat again, with the confirmation code. The
downgrade drops the new table and columns (links made since are deleted as well: the old
schema has no ``chat_key`` to find them by).
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op


revision: str = '0010'
down_revision: str | None = '0009'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def _forget_links() -> None:
    op.execute("DELETE FROM broadcast_test_sends")
    op.execute("DELETE FROM staff_chat_codes")
    op.execute("DELETE FROM staff_chats")


def upgrade() -> None:
    _forget_links()
    with op.batch_alter_table('staff_chats', schema=None) as batch_op:
        batch_op.add_column(sa.Column('chat_key', sa.String(length=64), nullable=False))
        batch_op.create_index(batch_op.f('ix_staff_chats_chat_key'), ['chat_key'], unique=False)
    with op.batch_alter_table('staff_chat_codes', schema=None) as batch_op:
        batch_op.add_column(sa.Column('reply_key', sa.LargeBinary(), nullable=True))
    op.create_table('staff_chat_confirmations',
    sa.Column('link_id', sa.String(length=32), nullable=False),
    sa.Column('chat_key', sa.String(length=64), nullable=False),
    sa.Column('sealed_chat', sa.LargeBinary(), nullable=False),
    sa.Column('sealed_name', sa.LargeBinary(), nullable=True),
    sa.Column('code_hash', sa.String(length=64), nullable=False),
    sa.Column('attempts', sa.Integer(), server_default=sa.text('0'), nullable=False),
    sa.Column('expires_at', sa.DateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('link_id', name=op.f('pk_staff_chat_confirmations'))
    )
    op.create_index(op.f('ix_staff_chat_confirmations_chat_key'), 'staff_chat_confirmations', ['chat_key'], unique=False)
    op.create_index(op.f('ix_staff_chat_confirmations_expires_at'), 'staff_chat_confirmations', ['expires_at'], unique=False)


def downgrade() -> None:
    op.drop_index(op.f('ix_staff_chat_confirmations_expires_at'), table_name='staff_chat_confirmations')
    op.drop_index(op.f('ix_staff_chat_confirmations_chat_key'), table_name='staff_chat_confirmations')
    op.drop_table('staff_chat_confirmations')
    _forget_links()
    with op.batch_alter_table('staff_chat_codes', schema=None) as batch_op:
        batch_op.drop_column('reply_key')
    with op.batch_alter_table('staff_chats', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_staff_chats_chat_key'))
        batch_op.drop_column('chat_key')
