"""Partial indexes: replies only, and the outbox rows still to publish

`ix_messages_reply_to_id` held an entry for every message, most of them replying to nothing;
`ix_outbox_unpublished` held every outbox row ever written, published or not, and took a new
entry each time the relay marked one. Both now index only the rows they are searched for.

Revision ID: 8d3e5a0c6b14
Revises: 4f2b7c91d0e6
Create Date: 2026-12-05 01:20:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = '8d3e5a0c6b14'
down_revision: str | None = '4f2b7c91d0e6'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    replies, unpublished = sa.text('reply_to_id IS NOT NULL'), sa.text('published_at IS NULL')
    op.drop_index('ix_messages_reply_to_id', table_name='messages')
    op.create_index('ix_messages_reply_to_id', 'messages', ['reply_to_id'],
                    postgresql_where=replies, sqlite_where=replies)
    op.drop_index('ix_outbox_unpublished', table_name='outbox')
    op.create_index('ix_outbox_unpublished', 'outbox', ['room_id', 'seq'],
                    postgresql_where=unpublished, sqlite_where=unpublished)


def downgrade() -> None:
    op.drop_index('ix_outbox_unpublished', table_name='outbox')
    op.create_index('ix_outbox_unpublished', 'outbox', ['published_at', 'room_id', 'seq'])
    op.drop_index('ix_messages_reply_to_id', table_name='messages')
    op.create_index('ix_messages_reply_to_id', 'messages', ['reply_to_id'])
