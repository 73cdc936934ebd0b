"""Alembic migrations build exactly the schema the models describe, on SQLite and PostgreSQL."""

from __future__ import annotations

import os
import secrets
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import trio
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import create_engine, inspect, text
from sqlalchemy.engine import make_url
from sqlalchemy.orm import Session

from roomcast.storage.database import create_database_engine
from roomcast.storage.migrate import alembic_config, downgrade, upgrade
from roomcast.storage.models import Base
from roomcast.storage.rooms import delete_room
from tests.helpers import POSTGRES_URL


def test_migrated_schema_matches_the_models(database_url: str) -> None:
    engine = create_database_engine(database_url)
    upgrade(engine)  # already at head: a no-op that must not fail
    with engine.connect() as connection:
        differences = compare_metadata(MigrationContext.configure(connection), Base.metadata)
    engine.dispose()
    assert differences == []


def test_migrate_creates_a_fresh_sqlite_database(tmp_path: Path) -> None:
    engine = create_database_engine(f"sqlite:///{tmp_path / 'deep' / 'dir' / 'fresh.db'}")
    upgrade(engine)
    tables = set(inspect(engine).get_table_names())
    engine.dispose()
    assert {"users", "rooms", "memberships", "messages", "attachments", "outbox", "alembic_version"} <= tables


@pytest.mark.parametrize("pragma, expected", [("journal_mode", "wal"), ("busy_timeout", 10000), ("foreign_keys", 1)])
def test_sqlite_is_set_up_for_concurrency(tmp_path: Path, pragma: str, expected: object) -> None:
    engine = create_database_engine(f"sqlite:///{tmp_path / 'x.db'}")
    with engine.connect() as connection:
        assert connection.exec_driver_sql(f"PRAGMA {pragma}").scalar() == expected
    engine.dispose()



@pytest.fixture
def fresh_database_url(db_backend: str, tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[str]:
    """An empty database: a new SQLite file, or a new PostgreSQL schema dropped afterwards."""
    if db_backend == "sqlite":
        yield f"sqlite:///{tmp_path / 'fresh.db'}"
        return
    request.getfixturevalue("postgres_schema_url")  # skips or fails when PostgreSQL is missing
    schema = f"rc_fresh_{os.getpid()}_{secrets.token_hex(4)}"
    admin = create_engine(POSTGRES_URL, isolation_level="AUTOCOMMIT")
    with admin.connect() as connection:
        connection.execute(text(f'CREATE SCHEMA "{schema}"'))
    try:
        yield make_url(POSTGRES_URL).update_query_dict({"options": f"-csearch_path={schema}"}).render_as_string(
            hide_password=False)
    finally:
        with admin.connect() as connection:
            connection.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))
        admin.dispose()


async def test_nodes_starting_together_migrate_once(fresh_database_url: str, tmp_path: Path) -> None:
    """Three processes migrating one empty database at once (nodes booting together) all succeed."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("ROOMCAST_")}
    env |= {"ROOMCAST_NO_BOOTSTRAP": "1", "ROOMCAST_DATA_DIR": str(tmp_path),
            "ROOMCAST_DATABASE_URL": fresh_database_url}
    command = [sys.executable, str(Path(__file__).resolve().parents[2] / "run.py"), "migrate"]
    processes = [subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
                 for _ in range(3)]
    for process in processes:
        _, stderr = await trio.to_thread.run_sync(process.communicate)
        assert process.returncode == 0, stderr
    engine = create_database_engine(fresh_database_url)
    with engine.connect() as connection:
        assert compare_metadata(MigrationContext.configure(connection), Base.metadata) == []
    engine.dispose()


# --------------------------------------------------------------------------- 0003: SQLite AUTOINCREMENT

_ROWS = [
    "INSERT INTO users (id, tenant, username, display_name, role, is_active, created_at) VALUES "
    "(1, 'default', 'ann', 'Ann', 'member', 1, '2026-01-01 00:00:00'), "
    "(2, 'default', 'bob', 'Bob', 'member', 1, '2026-01-01 00:00:00')",
    "INSERT INTO rooms (id, tenant, kind, name, topic, is_active, external_ref, last_seq, last_message_id, "
    "created_at, updated_at, last_activity_at) VALUES "
    "(1, 'default', 'group', 'one', '', 1, NULL, 2, 2, '2026-01-01', '2026-01-01', '2026-01-01'), "
    "(2, 'default', 'group', 'two', '', 1, 'ref-2', 1, 3, '2026-01-01', '2026-01-01', '2026-01-01')",
    "INSERT INTO memberships (room_id, user_id, room_role, last_read_seq, joined_at) VALUES "
    "(1, 1, 'owner', 2, '2026-01-01'), (1, 2, 'member', 0, '2026-01-01'), (2, 1, 'owner', 0, '2026-01-01')",
    "INSERT INTO messages (id, room_id, seq, sender_id, body, reply_to_id, client_id, created_at) VALUES "
    "(1, 1, 1, 1, 'first', NULL, 'c1', '2026-01-01'), (2, 1, 2, 2, 'reply', 1, NULL, '2026-01-01'), "
    "(3, 2, 1, 1, 'elsewhere', NULL, NULL, '2026-01-01')",
    "INSERT INTO attachments (id, tenant, room_id, uploader_id, message_id, filename, content_type, size, "
    "sha256, data, created_at) VALUES (1, 'default', 1, 1, 1, 'a.txt', 'text/plain', 2, 'x', X'6869', '2026-01-01')",
    "INSERT INTO outbox (room_id, seq, type, payload, created_at) VALUES "
    "(1, 1, 'message_created', '{}', '2026-01-01'), (1, 2, 'message_created', '{}', '2026-01-01'), "
    "(2, 1, 'message_created', '{}', '2026-01-01')",
]
_TABLES = ("users", "rooms", "memberships", "messages", "attachments", "outbox")


def _dump(engine: Any) -> dict[str, list[tuple[Any, ...]]]:
    with engine.connect() as connection:
        return {table: sorted(tuple(row) for row in connection.exec_driver_sql(f"SELECT * FROM {table}"))
                for table in _TABLES}


def test_upgrading_sqlite_keeps_every_row_and_ids_are_never_reused(tmp_path: Path) -> None:
    engine = create_database_engine(f"sqlite:///{tmp_path / 'old.db'}")
    upgrade(engine, "e0a8a360177d")  # the schema before AUTOINCREMENT, with data in it
    with engine.begin() as connection:
        for statement in _ROWS:
            connection.exec_driver_sql(statement)
    before = _dump(engine)

    upgrade(engine, "5c1f0e7d2a94")  # 0003 itself (0004 changes the attachments' columns)

    assert _dump(engine) == before
    upgrade(engine)
    with engine.connect() as connection:
        for table in ("users", "rooms", "messages", "attachments"):
            sql = connection.exec_driver_sql("SELECT sql FROM sqlite_master WHERE name = ?", (table,)).scalar()
            assert "AUTOINCREMENT" in sql, table
        assert connection.exec_driver_sql("PRAGMA foreign_key_check").fetchall() == []
        assert connection.exec_driver_sql("PRAGMA foreign_keys").scalar() == 1  # back on for the pool
        assert compare_metadata(MigrationContext.configure(connection), Base.metadata) == []
    with engine.begin() as connection:
        # Deleting the newest room takes its message (the newest) with it: neither id comes back.
        delete_room(Session(bind=connection), 2)
        assert connection.exec_driver_sql("SELECT count(*) FROM messages").scalar() == 2
        connection.exec_driver_sql(
            "INSERT INTO rooms (tenant, kind, name, topic, is_active, last_seq, created_at, updated_at, "
            "last_activity_at) VALUES ('default', 'group', 'new', '', 1, 0, '2026-01-02', '2026-01-02', '2026-01-02')")
        room = connection.exec_driver_sql("SELECT max(id) FROM rooms").scalar()
        connection.exec_driver_sql(
            "INSERT INTO messages (room_id, seq, sender_id, body, created_at) VALUES (?, 1, 1, 'new', '2026-01-02')",
            (room,))
        message = connection.exec_driver_sql("SELECT max(id) FROM messages").scalar()
    engine.dispose()
    assert (room, message) == (3, 4)


def test_models_give_fresh_sqlite_schemas_autoincrement(tmp_path: Path) -> None:
    engine = create_database_engine(f"sqlite:///{tmp_path / 'fresh.db'}")
    Base.metadata.create_all(engine)
    with engine.connect() as connection:
        tables = {name for (name,) in connection.exec_driver_sql(
            "SELECT name FROM sqlite_master WHERE type = 'table' AND sql LIKE '%AUTOINCREMENT%'")}
    engine.dispose()
    assert tables == {"users", "rooms", "messages", "attachments", "webhooks", "webhook_deliveries"}


# --------------------------------------------------------------------------- 0004: attachment chunks

_CHUNK = 256 << 10


def test_upgrading_moves_attachment_bytes_into_chunks_and_back(fresh_database_url: str) -> None:
    """0004 splits stored bytes into 256 KiB rows, byte-exact, on both stacks; its downgrade joins them."""
    big = bytes(range(256)) * (2 * _CHUNK // 256) + b"tail"  # two full chunks and a bit
    engine = create_database_engine(fresh_database_url)
    upgrade(engine, "5c1f0e7d2a94")
    with engine.begin() as connection:
        connection.execute(text("INSERT INTO users (id, tenant, username, display_name, role, is_active, created_at) "
                                "VALUES (1, 'default', 'ann', 'Ann', 'member', true, '2026-01-01')"))
        connection.execute(text("INSERT INTO rooms (id, tenant, kind, name, topic, is_active, last_seq, created_at, "
                                "updated_at, last_activity_at) VALUES (1, 'default', 'group', 'one', '', true, 0, "
                                "'2026-01-01', '2026-01-01', '2026-01-01')"))
        connection.execute(text(
            "INSERT INTO attachments (id, tenant, room_id, uploader_id, message_id, filename, content_type, size, "
            "sha256, data, created_at) VALUES (:id, 'default', 1, 1, NULL, :name, 'image/png', :size, 'x', :data, "
            "'2026-01-01')"),
            [{"id": 1, "name": "big.png", "size": len(big), "data": big},
             {"id": 2, "name": "small.txt", "size": 2, "data": b"hi"},
             {"id": 3, "name": "empty.txt", "size": 0, "data": b""}])

    upgrade(engine)

    with engine.connect() as connection:
        chunks = connection.execute(text("SELECT attachment_id, n, data FROM attachment_chunks "
                                         "ORDER BY attachment_id, n")).fetchall()
        assert [(a, n, len(data)) for a, n, data in chunks] == [(1, 0, _CHUNK), (1, 1, _CHUNK), (1, 2, 4),
                                                                (2, 0, 2)]
        assert b"".join(bytes(data) for a, _, data in chunks if a == 1) == big
        stored = connection.execute(text("SELECT count(*) FROM attachments WHERE stored_at IS NOT NULL")).scalar()
        assert stored == 3
        assert compare_metadata(MigrationContext.configure(connection), Base.metadata) == []
    with engine.begin() as connection:  # the chunks go with their attachment
        connection.execute(text("DELETE FROM attachments WHERE id = 2"))
        assert connection.execute(text("SELECT count(*) FROM attachment_chunks WHERE attachment_id = 2")).scalar() == 0

    downgrade(engine, "5c1f0e7d2a94")
    with engine.connect() as connection:
        rows = dict(connection.execute(text("SELECT id, data FROM attachments")).fetchall())
        assert "attachment_chunks" not in inspect(connection).get_table_names()
    engine.dispose()
    assert {key: bytes(value) if value is not None else None for key, value in rows.items()} == {1: big, 3: None}


# --------------------------------------------------------------------------- 0005: webhooks


def test_webhook_tables_come_and_go_with_their_migration(fresh_database_url: str) -> None:
    """0005 adds the webhook tables to a database holding data, and its downgrade takes them away again."""
    engine = create_database_engine(fresh_database_url)
    upgrade(engine, "a7c4d2e19b30")
    with engine.begin() as connection:
        connection.exec_driver_sql(_ROWS[0].replace("'member', 1,", "'member', true,"))
    upgrade(engine)
    with engine.connect() as connection:
        assert {"webhooks", "webhook_deliveries"} <= set(inspect(connection).get_table_names())
        assert compare_metadata(MigrationContext.configure(connection), Base.metadata) == []
        assert connection.exec_driver_sql("SELECT count(*) FROM users").scalar() == 2
    config = alembic_config(engine)
    with engine.begin() as connection:
        config.attributes["connection"] = connection
        command.downgrade(config, "a7c4d2e19b30")
    with engine.connect() as connection:
        assert not {"webhooks", "webhook_deliveries"} & set(inspect(connection).get_table_names())
        assert connection.exec_driver_sql("SELECT count(*) FROM users").scalar() == 2
    engine.dispose()


def test_the_reply_and_unpublished_indexes_hold_only_what_is_searched_for(database_url: str) -> None:
    engine = create_database_engine(database_url)
    inspector = inspect(engine)
    dialect = engine.dialect.name
    predicates = {
        (table, index["name"]): (index["column_names"], str(index.get("dialect_options", {}).get(f"{dialect}_where")))
        for table in ("messages", "outbox") for index in inspector.get_indexes(table)}
    engine.dispose()
    columns, where = predicates[("messages", "ix_messages_reply_to_id")]
    assert columns == ["reply_to_id"] and "reply_to_id IS NOT NULL" in where
    columns, where = predicates[("outbox", "ix_outbox_unpublished")]
    assert columns == ["room_id", "seq"] and "published_at IS NULL" in where
