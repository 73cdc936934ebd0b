"""index messages.reply_to_id

Deleting a message checks for replies to it (ON DELETE SET NULL); without this
index, deleting a room's N messages scanned the messages table N times.

Revision ID: e0a8a360177d
Revises: 9ab114d1ab37
Create Date: 2026-11-22 00:18:58.205538
"""

from collections.abc import Sequence

from alembic import op

revision: str = 'e0a8a360177d'
down_revision: str | None = '9ab114d1ab37'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table('messages', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_messages_reply_to_id'), ['reply_to_id'], unique=False)


def downgrade() -> None:
    with op.batch_alter_table('messages', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_messages_reply_to_id'))
