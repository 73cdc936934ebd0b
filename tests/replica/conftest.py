"""A PostgreSQL primary with a streaming replica of it (tests/replication.sh), and nodes reading from both.

The pair runs on its own ports (ROOMCAST_TEST_REPLICATION_PORTS, "5433 5434"), apart from the CI
database. The session fixture starts it when it is not running; where it cannot, the tests skip,
or fail under ROOMCAST_TEST_REQUIRE_SERVICES=1. Each test gets the tables empty, replay running and
the replica caught up with the primary.
"""

from __future__ import annotations

import os
import secrets
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import trio
from sqlalchemy import Engine, create_engine, event, text
from sqlalchemy.engine import make_url

from roomcast.node import Node
from roomcast.storage.database import create_database_engine
from roomcast.storage.migrate import upgrade
from roomcast.storage.models import Base
from tests.conftest import EventLoopQueryGuard, service_missing
from tests.helpers import eventually

SCRIPT = Path(__file__).resolve().parents[1] / "replication.sh"
PRIMARY_PORT, REPLICA_PORT = os.environ.get("ROOMCAST_TEST_REPLICATION_PORTS", "5433 5434").split()


def _url(port: str, schema: str | None = None) -> str:
    url = make_url(f"postgresql+psycopg://postgres@127.0.0.1:{port}/test")
    if schema is not None:
        url = url.update_query_dict({"options": f"-csearch_path={schema}"})
    return url.render_as_string(hide_password=False)


class Pair:
    """The primary and its replica as the tests drive them: admin connections, used off the event loop."""

    def __init__(self, schema: str) -> None:
        self.schema = schema
        self.primary_url = _url(PRIMARY_PORT, schema)
        self.replica_url = _url(REPLICA_PORT, schema)
        self.primary = create_engine(_url(PRIMARY_PORT), isolation_level="AUTOCOMMIT")
        self.replica = create_engine(_url(REPLICA_PORT), isolation_level="AUTOCOMMIT", pool_pre_ping=True)

    @staticmethod
    def _scalar(engine: Engine, sql: str) -> Any:
        with engine.connect() as connection:
            result = connection.execute(text(sql))
            return result.scalar() if result.returns_rows else None

    async def on_primary(self, sql: str) -> Any:
        return await trio.to_thread.run_sync(self._scalar, self.primary, sql)

    async def on_replica(self, sql: str) -> Any:
        return await trio.to_thread.run_sync(self._scalar, self.replica, sql)

    async def pause(self) -> None:
        """Stop replay on the replica: from now on it lags behind whatever the primary commits."""
        await self.on_replica("SELECT pg_wal_replay_pause()")
        await eventually(lambda: self.on_replica("SELECT pg_get_wal_replay_pause_state()"), until="paused")

    async def resume(self) -> None:
        await self.on_replica("SELECT pg_wal_replay_resume()")

    async def caught_up(self) -> None:
        """Wait until the replica has replayed everything the primary has written so far."""
        position = await self.on_primary("SELECT pg_current_wal_insert_lsn() - '0/0'::pg_lsn")
        await eventually(lambda: self._replayed(position), timeout=30)

    async def _replayed(self, position: int) -> bool:
        return bool(await self.on_replica("SELECT pg_last_wal_replay_lsn() - '0/0'::pg_lsn") >= position)

    async def script(self, command: str) -> None:
        """Run tests/replication.sh `command` (stop-replica, start)."""
        await trio.run_process([str(SCRIPT), command], capture_stdout=True, capture_stderr=True)

    def close(self) -> None:
        self.primary.dispose()
        self.replica.dispose()


def _pair_answers() -> bool:
    primary, replica = create_engine(_url(PRIMARY_PORT)), create_engine(_url(REPLICA_PORT))
    try:
        with primary.connect(), replica.connect() as connection:
            return bool(connection.execute(text("SELECT pg_is_in_recovery()")).scalar())
    except Exception:
        return False
    finally:
        primary.dispose()
        replica.dispose()


@pytest.fixture(scope="session")
def replication() -> Iterator[Pair]:
    """The running pair, with a migrated schema of this session's own on the primary (and so on the replica)."""
    if not _pair_answers():
        try:
            started = subprocess.run([str(SCRIPT), "start"], capture_output=True, text=True, timeout=180)
            problem = started.stderr.strip()[-500:] or f"exit status {started.returncode}"
        except (OSError, subprocess.SubprocessError) as exc:
            problem = repr(exc)
        if not _pair_answers():
            service_missing(f"the PostgreSQL replication pair (ports {PRIMARY_PORT} and {REPLICA_PORT}, "
                            f"started by tests/{SCRIPT.name})", problem)
    pair = Pair(f"rc_replica_{os.getpid()}_{secrets.token_hex(4)}")
    with pair.primary.connect() as connection:
        connection.execute(text(f'CREATE SCHEMA "{pair.schema}"'))
    engine = create_database_engine(pair.primary_url)
    upgrade(engine)
    engine.dispose()
    try:
        yield pair
    finally:
        with pair.primary.connect() as connection:
            connection.execute(text(f'DROP SCHEMA "{pair.schema}" CASCADE'))
        pair.close()


@pytest.fixture
async def pair(replication: Pair) -> Pair:
    """The pair with this session's tables empty, replay running and the replica caught up."""
    if not await trio.to_thread.run_sync(_pair_answers):  # a test that stopped the replica failed before restarting it
        await replication.script("start")
    await replication.resume()  # a test that failed while replay was paused left it so
    tables = ", ".join(f'"{replication.schema}"."{table.name}"' for table in Base.metadata.sorted_tables)
    await replication.on_primary(f"TRUNCATE {tables} RESTART IDENTITY CASCADE")
    # Ids start again at 1: a replica still showing the last test's rows would answer for this one's.
    await replication.caught_up()
    return replication


@pytest.fixture
def database_url(pair: Pair) -> str:
    return pair.primary_url


@pytest.fixture
def replica_settings() -> dict[str, Any]:
    """Override in a module (or parametrize) to change the node's settings."""
    return {}


@pytest.fixture
def settings_overrides(pair: Pair, replica_settings: dict[str, Any]) -> dict[str, Any]:
    # A lag bound that replay paused for a test never reaches, unless a test sets its own.
    return {"database_read_url": pair.replica_url, "database_read_probe_s": 0.05, "database_read_max_lag_s": 60.0,
            "send_burst": 1000, **replica_settings}


@pytest.fixture(autouse=True)
def _guard_the_replica(node: Node, query_guard: EventLoopQueryGuard) -> None:
    """The replica's statements must run in worker threads too (the node fixture watches the primary's)."""
    assert node.database.replica is not None
    event.listen(node.database.replica.engine, "before_cursor_execute", query_guard)
