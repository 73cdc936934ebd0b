"""SQLite writers queue in the process instead of polling SQLite's lock."""

from __future__ import annotations

import threading
from typing import Any

import pytest
import trio
from sqlalchemy import text


# SQLite only: PostgreSQL writers run side by side, ordered by row locks.
@pytest.mark.parametrize("db_backend", ["sqlite"])
async def test_write_transactions_run_one_at_a_time_on_sqlite(node: Any, db_backend: str) -> None:
    guard = threading.Lock()
    in_flight = peak = 0

    def work(session: Any) -> None:
        nonlocal in_flight, peak
        with guard:
            in_flight += 1
            peak = max(peak, in_flight)
        try:
            session.execute(text("SELECT 1"))
        finally:
            with guard:
                in_flight -= 1

    async with trio.open_nursery() as nursery:
        for _ in range(30):
            nursery.start_soon(node.database.write, work)
    assert peak == 1


def driver_connection(session: Any) -> object:
    return session.connection().connection.driver_connection


@pytest.mark.parametrize("db_backend", ["sqlite"])
async def test_every_write_goes_through_one_connection_whose_cache_stays_warm(node: Any, db_backend: str) -> None:
    """SQLite empties a connection's page cache when another connection wrote: one writer's connection
    keeps it, whatever reads run in between and however many writes wait."""
    writers: list[object] = []
    readers: list[object] = []

    def write(session: Any) -> None:
        writers.append(driver_connection(session))
        session.execute(text("UPDATE rooms SET topic = topic WHERE id = -1"))

    def read(session: Any) -> None:
        readers.append(driver_connection(session))
        session.execute(text("SELECT count(*) FROM rooms"))

    async with trio.open_nursery() as nursery:
        for _ in range(10):
            nursery.start_soon(node.database.write, write)
            nursery.start_soon(node.database.read, read)
    assert len(writers) == 10 and len(set(map(id, writers))) == 1
    assert all(reader is not writers[0] for reader in readers)  # reads never hold the writer's connection
