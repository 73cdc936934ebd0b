"""SQLite ids are never reused: AUTOINCREMENT on users, rooms, messages, attachments

Without it SQLite hands out the largest id again once its row is deleted: a room made
after `DELETE /api/rooms/by-ref/...` got the deleted room's id, and a client holding that
id (and a `since`) reached the wrong room. SQLite cannot add AUTOINCREMENT to a table,
so each is rebuilt (rows copied, ids kept); roomcast.storage.migrate turns foreign keys
off around the upgrade, or dropping the old table would cascade. The counters start at
the largest id present: an id deleted before this migration is not known to exist.
PostgreSQL's sequences never go back: nothing to do there.

Revision ID: 5c1f0e7d2a94
Revises: e0a8a360177d
Create Date: 2026-12-02 04:30:00.000000
"""

from collections.abc import Sequence

from alembic import op

revision: str = '5c1f0e7d2a94'
down_revision: str | None = 'e0a8a360177d'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

TABLES = ('users', 'rooms', 'messages', 'attachments')


def _rebuild(autoincrement: bool) -> None:
    if op.get_bind().dialect.name != 'sqlite':
        return
    for table in TABLES:
        with op.batch_alter_table(table, recreate='always',
                                  table_kwargs={'sqlite_autoincrement': autoincrement}):
            pass


def upgrade() -> None:
    _rebuild(True)


def downgrade() -> None:
    _rebuild(False)
