"""Alembic migrations build exactly the schema the models describe, on SQLite and PostgreSQL."""

from __future__ import annotations

import os
import secrets
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import trio
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import create_engine, inspect, text
from sqlalchemy.engine import make_url

from roomcast.storage.database import create_database_engine
from roomcast.storage.migrate import upgrade
from roomcast.storage.models import Base
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
