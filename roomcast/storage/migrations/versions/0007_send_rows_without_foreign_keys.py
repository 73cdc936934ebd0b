"""Messages and outbox rows keep no foreign key to their room and sender

PostgreSQL checks a foreign key with a query per inserted row: for a batch of sends that was
about half of the insert (a message's room and sender, its outbox row's room). Integrity is kept
by the room's lock instead: a send holds it, and deleting a room takes it before deleting the
room's messages and outbox rows (`storage.rooms.delete_room`); users are never deleted. On
SQLite the two tables are rebuilt without the constraints (ids and AUTOINCREMENT kept).

Revision ID: 4f2b7c91d0e6
Revises: c9d2a4f7e1b8
Create Date: 2026-12-05 01:00:00.000000
"""

from collections.abc import Sequence

from alembic import op

revision: str = '4f2b7c91d0e6'
down_revision: str | None = 'c9d2a4f7e1b8'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# (table, constraint, column, referred table), as migration 0001 made them.
FOREIGN_KEYS = (
    ('messages', 'fk_messages_room_id_rooms', 'room_id', 'rooms'),
    ('messages', 'fk_messages_sender_id_users', 'sender_id', 'users'),
    ('outbox', 'fk_outbox_room_id_rooms', 'room_id', 'rooms'),
)


def _table_kwargs(table: str) -> dict[str, object]:
    return {'sqlite_autoincrement': True} if table == 'messages' else {}


def upgrade() -> None:
    for table in ('messages', 'outbox'):
        with op.batch_alter_table(table, table_kwargs=_table_kwargs(table)) as batch_op:
            for owner, name, _, _ in FOREIGN_KEYS:
                if owner == table:
                    batch_op.drop_constraint(name, type_='foreignkey')


def downgrade() -> None:
    # Rows whose room is gone (none, unless written past `delete_room`) would fail the check.
    for table in ('messages', 'outbox'):
        with op.batch_alter_table(table, table_kwargs=_table_kwargs(table)) as batch_op:
            for owner, name, column, referred in FOREIGN_KEYS:
                if owner == table:
                    batch_op.create_foreign_key(name, referred, [column], ['id'], ondelete='CASCADE')
