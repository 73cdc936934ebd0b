"""attachment bytes in chunks: attachment_chunks replaces attachments.data

An attachment's bytes were one LargeBinary value, read and written whole. They move to
rows of 256 KiB in `attachment_chunks` (attachment_id, n), removed with their attachment
(ON DELETE CASCADE), so uploads and downloads stream a chunk at a time on SQLite and
PostgreSQL alike. Bytes already stored are split into chunks by SQL (substr works on
SQLite blobs and PostgreSQL bytea alike). `stored_at` marks an upload complete (existing
attachments are); `sha256` is unknown, and empty, until then.

Revision ID: a7c4d2e19b30
Revises: 5c1f0e7d2a94
Create Date: 2026-12-02 06:30:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = 'a7c4d2e19b30'
down_revision: str | None = '5c1f0e7d2a94'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

CHUNK_BYTES = 256 << 10
Id = sa.BigInteger().with_variant(sa.Integer(), 'sqlite')


def upgrade() -> None:
    op.create_table('attachment_chunks',
    sa.Column('attachment_id', Id, nullable=False),
    sa.Column('n', sa.Integer(), nullable=False),
    sa.Column('data', sa.LargeBinary(), nullable=False),
    sa.ForeignKeyConstraint(['attachment_id'], ['attachments.id'], name=op.f('fk_attachment_chunks_attachment_id_attachments'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('attachment_id', 'n', name=op.f('pk_attachment_chunks'))
    )
    bind = op.get_bind()
    longest = bind.execute(sa.text('SELECT max(length(data)) FROM attachments')).scalar() or 0
    for n in range((longest + CHUNK_BYTES - 1) // CHUNK_BYTES):
        bind.execute(sa.text(
            'INSERT INTO attachment_chunks (attachment_id, n, data) '
            'SELECT id, :n, substr(data, :start, :length) FROM attachments WHERE length(data) > :offset'),
            {'n': n, 'start': n * CHUNK_BYTES + 1, 'length': CHUNK_BYTES, 'offset': n * CHUNK_BYTES})
    with op.batch_alter_table('attachments', schema=None, table_kwargs={'sqlite_autoincrement': True}) as batch_op:
        batch_op.add_column(sa.Column('stored_at', sa.DateTime(timezone=True), nullable=True))
        batch_op.alter_column('sha256', existing_type=sa.String(length=64), nullable=True)
        batch_op.drop_column('data')
    bind.execute(sa.text('UPDATE attachments SET stored_at = created_at'))


def downgrade() -> None:
    bind = op.get_bind()
    # Uploads under way have no complete bytes to keep.
    bind.execute(sa.text('DELETE FROM attachments WHERE stored_at IS NULL'))
    with op.batch_alter_table('attachments', schema=None, table_kwargs={'sqlite_autoincrement': True}) as batch_op:
        batch_op.add_column(sa.Column('data', sa.LargeBinary(), nullable=True))
        batch_op.alter_column('sha256', existing_type=sa.String(length=64), nullable=False)
        batch_op.drop_column('stored_at')
    # Joined in Python, one attachment at a time: SQLite's || stops at a blob's first NUL.
    ids = bind.execute(sa.text('SELECT DISTINCT attachment_id FROM attachment_chunks')).scalars().all()
    for attachment_id in ids:
        chunks = bind.execute(sa.text('SELECT data FROM attachment_chunks WHERE attachment_id = :id ORDER BY n'),
                              {'id': attachment_id}).scalars()
        bind.execute(sa.text('UPDATE attachments SET data = :data WHERE id = :id'),
                     {'id': attachment_id, 'data': b''.join(bytes(chunk) for chunk in chunks)})
    op.drop_table('attachment_chunks')
