"""Awareness and broadcasts (issue 11): content library, subscribers, broadcasts and their
outbox, quiz counts, surveys, campaigns, volunteers' linked chats. See
nazaha/storage/awareness_models.py for what each table holds and why none links to reports.

Revision ID: 0009
Revises: 0008
Create Date: 2026-11-30 15:40:33.177392
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op


revision: str = '0009'
down_revision: str | None = '0008'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# Counts are stored plus 2**48 (nazaha.storage.awareness_models.COUNT_BIAS, written out here
# so that this migration does not change if the models do): always 8 bytes in SQLite, so an
# addition rewrites a row in place.
COUNT_BIAS = str(1 << 48)


def upgrade() -> None:
    op.create_table('awareness_topics',
    sa.Column('code', sa.String(length=32), nullable=False),
    sa.Column('position', sa.Integer(), nullable=False),
    sa.Column('origin', sa.String(length=16), nullable=False),
    sa.Column('hidden', sa.Boolean(), server_default=sa.false(), nullable=False),
    sa.PrimaryKeyConstraint('code', name=op.f('pk_awareness_topics'))
    )
    op.create_table('campaigns',
    sa.Column('id', sa.Integer(), autoincrement=True, nullable=False),
    sa.Column('code', sa.String(length=32), nullable=False),
    sa.Column('name', sa.String(length=120), nullable=False),
    sa.Column('target', sa.String(length=80), nullable=False),
    sa.Column('active', sa.Boolean(), server_default=sa.true(), nullable=False),
    sa.Column('created_on', sa.Date(), nullable=False),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_campaigns')),
    sa.UniqueConstraint('code', name=op.f('uq_campaigns_code'))
    )
    op.create_table('staff_chat_codes',
    sa.Column('code_hash', sa.String(length=64), nullable=False),
    sa.Column('link_id', sa.String(length=32), nullable=False),
    sa.Column('expires_at', sa.DateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('code_hash', name=op.f('pk_staff_chat_codes'))
    )
    op.create_index(op.f('ix_staff_chat_codes_expires_at'), 'staff_chat_codes', ['expires_at'], unique=False)

    op.create_table('staff_chats',
    sa.Column('link_id', sa.String(length=32), nullable=False),
    sa.Column('sealed_chat', sa.LargeBinary(), nullable=False),
    sa.Column('linked_on', sa.Date(), nullable=False),
    sa.PrimaryKeyConstraint('link_id', name=op.f('pk_staff_chats'))
    )
    op.create_table('subscribers',
    sa.Column('id', sa.Integer(), autoincrement=True, nullable=False),
    sa.Column('chat_key', sa.String(length=64), nullable=False),
    sa.Column('sealed_chat', sa.LargeBinary(), nullable=False),
    sa.Column('language', sa.String(length=8), nullable=False),
    sa.Column('active', sa.Boolean(), server_default=sa.true(), nullable=False),
    sa.Column('joined_on', sa.Date(), nullable=False),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_subscribers')),
    sa.UniqueConstraint('chat_key', name=op.f('uq_subscribers_chat_key'))
    )
    op.create_index('ix_subscribers_active_language', 'subscribers', ['active', 'language'], unique=False)

    op.create_table('surveys',
    sa.Column('id', sa.Integer(), autoincrement=True, nullable=False),
    sa.Column('code', sa.String(length=16), nullable=False),
    sa.Column('status', sa.String(length=16), nullable=False),
    sa.Column('author_id', sa.Integer(), nullable=False),
    sa.Column('created_on', sa.Date(), nullable=False),
    sa.Column('closes_on', sa.Date(), nullable=True),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_surveys')),
    sa.UniqueConstraint('code', name=op.f('uq_surveys_code'))
    )
    op.create_table('awareness_items',
    sa.Column('id', sa.Integer(), autoincrement=True, nullable=False),
    sa.Column('code', sa.String(length=64), nullable=False),
    sa.Column('topic', sa.String(length=32), nullable=False),
    sa.Column('kind', sa.String(length=16), nullable=False),
    sa.Column('position', sa.Integer(), nullable=False),
    sa.Column('origin', sa.String(length=16), nullable=False),
    sa.Column('published', sa.Boolean(), server_default=sa.true(), nullable=False),
    sa.Column('updated_on', sa.Date(), nullable=False),
    sa.ForeignKeyConstraint(['topic'], ['awareness_topics.code'], name=op.f('fk_awareness_items_topic_awareness_topics'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_awareness_items')),
    sa.UniqueConstraint('code', name=op.f('uq_awareness_items_code'))
    )
    op.create_index('ix_awareness_items_topic_position', 'awareness_items', ['topic', 'position'], unique=False)

    op.create_table('awareness_topic_texts',
    sa.Column('topic', sa.String(length=32), nullable=False),
    sa.Column('language', sa.String(length=8), nullable=False),
    sa.Column('title', sa.String(length=64), nullable=False),
    sa.Column('summary', sa.Text(), nullable=False),
    sa.ForeignKeyConstraint(['topic'], ['awareness_topics.code'], name=op.f('fk_awareness_topic_texts_topic_awareness_topics'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('topic', 'language', name=op.f('pk_awareness_topic_texts'))
    )
    op.create_table('broadcasts',
    sa.Column('id', sa.Integer(), autoincrement=True, nullable=False),
    sa.Column('name', sa.String(length=120), nullable=False),
    sa.Column('status', sa.String(length=16), nullable=False),
    sa.Column('author_id', sa.Integer(), nullable=False),
    sa.Column('approved_by', sa.Integer(), nullable=True),
    sa.Column('topics', sa.String(length=512), nullable=False),
    sa.Column('languages', sa.String(length=32), nullable=False),
    sa.Column('to_channel', sa.Boolean(), server_default=sa.false(), nullable=False),
    sa.Column('channel_state', sa.String(length=16), nullable=True),
    sa.Column('survey_id', sa.Integer(), nullable=True),
    sa.Column('send_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('approved_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('started_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('finished_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('review_note', sa.Text(), nullable=False),
    sa.ForeignKeyConstraint(['survey_id'], ['surveys.id'], name=op.f('fk_broadcasts_survey_id_surveys'), ondelete='SET NULL'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_broadcasts'))
    )
    op.create_index('ix_broadcasts_status_send_at', 'broadcasts', ['status', 'send_at'], unique=False)

    op.create_table('campaign_days',
    sa.Column('campaign_id', sa.Integer(), nullable=False),
    sa.Column('day', sa.Date(), nullable=False),
    sa.Column('biased_opens', sa.BigInteger(), server_default=sa.text(COUNT_BIAS), nullable=False),
    sa.ForeignKeyConstraint(['campaign_id'], ['campaigns.id'], name=op.f('fk_campaign_days_campaign_id_campaigns'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('campaign_id', 'day', name=op.f('pk_campaign_days'))
    )
    op.create_table('subscriber_topics',
    sa.Column('subscriber_id', sa.Integer(), nullable=False),
    sa.Column('topic', sa.String(length=32), nullable=False),
    sa.ForeignKeyConstraint(['subscriber_id'], ['subscribers.id'], name=op.f('fk_subscriber_topics_subscriber_id_subscribers'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('subscriber_id', 'topic', name=op.f('pk_subscriber_topics'))
    )
    op.create_index('ix_subscriber_topics_topic', 'subscriber_topics', ['topic'], unique=False)

    op.create_table('survey_answer_markers',
    sa.Column('marker', sa.String(length=64), nullable=False),
    sa.Column('survey_id', sa.Integer(), nullable=False),
    sa.Column('expires_at', sa.DateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['survey_id'], ['surveys.id'], name=op.f('fk_survey_answer_markers_survey_id_surveys'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('marker', name=op.f('pk_survey_answer_markers'))
    )
    op.create_index(op.f('ix_survey_answer_markers_expires_at'), 'survey_answer_markers', ['expires_at'], unique=False)
    op.create_index(op.f('ix_survey_answer_markers_survey_id'), 'survey_answer_markers', ['survey_id'], unique=False)

    op.create_table('survey_counts',
    sa.Column('survey_id', sa.Integer(), nullable=False),
    sa.Column('option', sa.Integer(), autoincrement=False, nullable=False),
    sa.Column('biased_count', sa.BigInteger(), server_default=sa.text(COUNT_BIAS), nullable=False),
    sa.ForeignKeyConstraint(['survey_id'], ['surveys.id'], name=op.f('fk_survey_counts_survey_id_surveys'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('survey_id', 'option', name=op.f('pk_survey_counts'))
    )
    op.create_table('survey_texts',
    sa.Column('survey_id', sa.Integer(), nullable=False),
    sa.Column('language', sa.String(length=8), nullable=False),
    sa.Column('question', sa.String(length=300), nullable=False),
    sa.Column('options', sa.Text(), nullable=False),
    sa.ForeignKeyConstraint(['survey_id'], ['surveys.id'], name=op.f('fk_survey_texts_survey_id_surveys'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('survey_id', 'language', name=op.f('pk_survey_texts'))
    )
    op.create_table('awareness_item_texts',
    sa.Column('item_id', sa.Integer(), nullable=False),
    sa.Column('language', sa.String(length=8), nullable=False),
    sa.Column('title', sa.String(length=300), nullable=False),
    sa.Column('body', sa.Text(), nullable=False),
    sa.Column('options', sa.Text(), nullable=False),
    sa.Column('correct_option', sa.Integer(), nullable=True),
    sa.Column('sources', sa.Text(), nullable=False),
    sa.ForeignKeyConstraint(['item_id'], ['awareness_items.id'], name=op.f('fk_awareness_item_texts_item_id_awareness_items'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('item_id', 'language', name=op.f('pk_awareness_item_texts'))
    )
    op.create_table('broadcast_images',
    sa.Column('broadcast_id', sa.Integer(), nullable=False),
    sa.Column('content', sa.LargeBinary(), nullable=False),
    sa.Column('mime_type', sa.String(length=32), nullable=False),
    sa.Column('file_id', sa.String(length=256), nullable=True),
    sa.ForeignKeyConstraint(['broadcast_id'], ['broadcasts.id'], name=op.f('fk_broadcast_images_broadcast_id_broadcasts'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('broadcast_id', name=op.f('pk_broadcast_images'))
    )
    op.create_table('broadcast_outbox',
    sa.Column('id', sa.Integer(), autoincrement=True, nullable=False),
    sa.Column('broadcast_id', sa.Integer(), nullable=False),
    sa.Column('subscriber_id', sa.Integer(), nullable=False),
    sa.Column('state', sa.String(length=16), nullable=False),
    sa.Column('attempts', sa.Integer(), server_default=sa.text('0'), nullable=False),
    sa.Column('next_attempt_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('error_code', sa.Integer(), nullable=True),
    sa.ForeignKeyConstraint(['broadcast_id'], ['broadcasts.id'], name=op.f('fk_broadcast_outbox_broadcast_id_broadcasts'), ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['subscriber_id'], ['subscribers.id'], name=op.f('fk_broadcast_outbox_subscriber_id_subscribers'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_broadcast_outbox')),
    sa.UniqueConstraint('broadcast_id', 'subscriber_id', name=op.f('uq_broadcast_outbox_broadcast_id_subscriber_id'))
    )
    op.create_index('ix_broadcast_outbox_broadcast_state', 'broadcast_outbox', ['broadcast_id', 'state', 'id'], unique=False)
    op.create_index(op.f('ix_broadcast_outbox_subscriber_id'), 'broadcast_outbox', ['subscriber_id'], unique=False)

    op.create_table('broadcast_test_sends',
    sa.Column('id', sa.Integer(), autoincrement=True, nullable=False),
    sa.Column('broadcast_id', sa.Integer(), nullable=False),
    sa.Column('link_id', sa.String(length=32), nullable=False),
    sa.Column('language', sa.String(length=8), nullable=False),
    sa.Column('state', sa.String(length=16), nullable=False),
    sa.Column('requested_at', sa.DateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['broadcast_id'], ['broadcasts.id'], name=op.f('fk_broadcast_test_sends_broadcast_id_broadcasts'), ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['link_id'], ['staff_chats.link_id'], name=op.f('fk_broadcast_test_sends_link_id_staff_chats'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_broadcast_test_sends'))
    )
    op.create_table('broadcast_versions',
    sa.Column('broadcast_id', sa.Integer(), nullable=False),
    sa.Column('language', sa.String(length=8), nullable=False),
    sa.Column('body', sa.Text(), nullable=False),
    sa.ForeignKeyConstraint(['broadcast_id'], ['broadcasts.id'], name=op.f('fk_broadcast_versions_broadcast_id_broadcasts'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('broadcast_id', 'language', name=op.f('pk_broadcast_versions'))
    )
    op.create_table('quiz_counts',
    sa.Column('item_id', sa.Integer(), nullable=False),
    sa.Column('option', sa.Integer(), autoincrement=False, nullable=False),
    sa.Column('biased_count', sa.BigInteger(), server_default=sa.text(COUNT_BIAS), nullable=False),
    sa.ForeignKeyConstraint(['item_id'], ['awareness_items.id'], name=op.f('fk_quiz_counts_item_id_awareness_items'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('item_id', 'option', name=op.f('pk_quiz_counts'))
    )



def downgrade() -> None:
    op.drop_table('quiz_counts')
    op.drop_table('broadcast_versions')
    op.drop_table('broadcast_test_sends')
    op.drop_index(op.f('ix_broadcast_outbox_subscriber_id'), table_name='broadcast_outbox')
    op.drop_index('ix_broadcast_outbox_broadcast_state', table_name='broadcast_outbox')

    op.drop_table('broadcast_outbox')
    op.drop_table('broadcast_images')
    op.drop_table('awareness_item_texts')
    op.drop_table('survey_texts')
    op.drop_table('survey_counts')
    op.drop_index(op.f('ix_survey_answer_markers_survey_id'), table_name='survey_answer_markers')
    op.drop_index(op.f('ix_survey_answer_markers_expires_at'), table_name='survey_answer_markers')

    op.drop_table('survey_answer_markers')
    op.drop_index('ix_subscriber_topics_topic', table_name='subscriber_topics')

    op.drop_table('subscriber_topics')
    op.drop_table('campaign_days')
    op.drop_index('ix_broadcasts_status_send_at', table_name='broadcasts')

    op.drop_table('broadcasts')
    op.drop_table('awareness_topic_texts')
    op.drop_index('ix_awareness_items_topic_position', table_name='awareness_items')

    op.drop_table('awareness_items')
    op.drop_table('surveys')
    op.drop_index('ix_subscribers_active_language', table_name='subscribers')

    op.drop_table('subscribers')
    op.drop_table('staff_chats')
    op.drop_index(op.f('ix_staff_chat_codes_expires_at'), table_name='staff_chat_codes')

    op.drop_table('staff_chat_codes')
    op.drop_table('campaigns')
    op.drop_table('awareness_topics')
