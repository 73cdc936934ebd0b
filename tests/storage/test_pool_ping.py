"""Pooled PostgreSQL connections are pinged on checkout only after sitting idle (storage/database.py)."""

from __future__ import annotations

import socket
from collections.abc import Iterator

import pytest
from sqlalchemy import Engine, create_engine, text
from sqlalchemy.engine.interfaces import DBAPIConnection
from sqlalchemy.exc import DBAPIError

from roomcast.storage import database
from roomcast.storage.database import create_database_engine
from tests.conftest import POSTGRES_URL

pytestmark = pytest.mark.postgres


@pytest.fixture
def engine(postgres_schema_url: str) -> Iterator[Engine]:
    engine = create_database_engine(postgres_schema_url, pool_size=1)
    yield engine
    engine.dispose()


def backend_pid(engine: Engine) -> int:
    with engine.connect() as connection:
        return int(connection.execute(text("SELECT pg_backend_pid()")).scalar_one())


def test_a_connection_in_steady_use_is_not_pinged(engine: Engine, monkeypatch: pytest.MonkeyPatch) -> None:
    backend_pid(engine)  # the pool now holds one connection, just used
    pings: list[object] = []
    real_ping = engine.dialect.do_ping

    def counted_ping(connection: DBAPIConnection) -> bool:
        pings.append(connection)
        return real_ping(connection)

    monkeypatch.setattr(engine.dialect, "do_ping", counted_ping)
    for _ in range(5):
        backend_pid(engine)
    assert pings == []


def test_an_idle_connection_that_died_is_replaced_before_use(engine: Engine, monkeypatch: pytest.MonkeyPatch) -> None:
    first = backend_pid(engine)
    admin = create_engine(POSTGRES_URL, isolation_level="AUTOCOMMIT")
    with admin.connect() as connection:  # the server ends it, as a restart would
        connection.execute(text("SELECT pg_terminate_backend(:pid)"), {"pid": first})
    admin.dispose()
    monkeypatch.setattr(database, "_PING_AFTER_IDLE_S", 0.0)  # as if it sat idle: pinged on checkout
    assert backend_pid(engine) != first  # no error: the dead one was found and replaced


def test_a_connection_that_died_while_in_steady_use_fails_once_and_the_pool_recovers(engine: Engine) -> None:
    first = backend_pid(engine)
    admin = create_engine(POSTGRES_URL, isolation_level="AUTOCOMMIT")
    with admin.connect() as connection:
        connection.execute(text("SELECT pg_terminate_backend(:pid)"), {"pid": first})
    admin.dispose()
    with pytest.raises(DBAPIError) as failed:  # not pinged: its statement finds it dead
        backend_pid(engine)
    assert database.is_unavailable(failed.value)
    assert backend_pid(engine) != first


def test_connections_notice_a_server_gone_from_the_network(engine: Engine) -> None:
    """TCP keepalives and a user timeout on every connection: a partition fails a statement in
    seconds (an outage, 503) instead of the kernel's many minutes."""
    with engine.connect() as connection:
        driver = connection.connection.driver_connection
        assert driver is not None
        sock = socket.socket(fileno=socket.dup(driver.pgconn.socket))
        try:
            assert sock.getsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE) == 1
            assert sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPIDLE) == 5
            assert sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPCNT) == 3
            assert sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_USER_TIMEOUT) == 20_000
        finally:
            sock.close()
