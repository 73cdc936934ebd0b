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
