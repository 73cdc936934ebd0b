"""message.unread bookkeeping per membership, and bots

Revision ID: c9d2a4f7e1b8
Revises: b3e8f1a6c2d5
Create Date: 2026-12-02 07:30:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = 'c9d2a4f7e1b8'
down_revision: str | None = 'b3e8f1a6c2d5'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

Id = sa.BigInteger().with_variant(sa.Integer(), 'sqlite')


def upgrade() -> None:
    with op.batch_alter_table('memberships', schema=None) as batch_op:
        batch_op.add_column(sa.Column('notified_seq', sa.BigInteger(), server_default='0', nullable=False))

    op.create_table('bots',
    sa.Column('user_id', Id, nullable=False),
    sa.Column('tenant', sa.String(length=64), nullable=False),
    sa.Column('url', sa.String(length=2048), nullable=False),
    sa.Column('secret', sa.String(length=256), nullable=False),
    sa.Column('trigger', sa.String(length=16), nullable=False),
    sa.Column('active', sa.Boolean(), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('updated_at', sa.DateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['user_id'], ['users.id'], name=op.f('fk_bots_user_id_users'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('user_id', name=op.f('pk_bots')),
    )
    with op.batch_alter_table('bots', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_bots_tenant'), ['tenant'], unique=False)


def downgrade() -> None:
    op.drop_table('bots')
    with op.batch_alter_table('memberships', schema=None) as batch_op:
        batch_op.drop_column('notified_seq')
