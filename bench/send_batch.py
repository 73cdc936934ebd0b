#!/usr/bin/env python3
"""Send batch benchmark: what storing one batch of sends costs, without sockets or an event loop's load.

Opens a real node (`pipeline.node_for`) on a fresh database, makes `--rooms` group rooms with
one member each, then stores `--batches` batches of `--batch` drafts (spread over the rooms,
each with a client_id, as the committer gets them in bench/fanout.py's flat-100x10) through
`send_store.store_drafts`, one transaction each, one after the other. Reports:

  store µs/message   the committing thread's CPU in `store_drafts` (time.thread_time): the checks,
                     the rows built, the statements sent, not the COMMIT
  wall µs/message    the whole transaction as the committer waits for it, COMMIT included
  PostgreSQL only: each statement's time in the database for the batch halfway through (EXPLAIN
                     ANALYZE, in a savepoint rolled back): `lock` (the rooms locked, memberships and client_ids
                     read) and `write` (messages, rooms moved on, outbox rows)

The relay publishes nothing here (no notice of the commits), so SQLite's outbox keeps every row
unpublished: past a few hundred batches its unpublished index grows with them. Compare runs of
the same length.

    python bench/send_batch.py                          # SQLite
    python bench/send_batch.py --database postgresql    # PostgreSQL (and Redis) at their defaults
    python bench/send_batch.py --rooms 1000 --batch 256
"""

from __future__ import annotations

import argparse
import tempfile
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import trio
from pipeline import DEFAULT_POSTGRES_URL, DEFAULT_REDIS_URL, make_users_and_rooms, node_for

from roomcast.node import Node
from roomcast.services.send_store import Draft, store_drafts
from roomcast.storage import driver_rows
from roomcast.storage.users import UserSnapshot

_PG_EXECUTE = driver_rows.pg_execute


def explained(timings: dict[str, float], armed: list[bool]) -> Any:
    """A `pg_execute` that also times each statement in the database once, once `armed[0]` (EXPLAIN ANALYZE)."""
    run = _PG_EXECUTE

    def execute(session: Any, statement: str, params: Mapping[str, object]) -> Any:
        name = "write" if statement.startswith("WITH inserted") else "lock"
        if armed[0] and name not in timings:
            savepoint = session.begin_nested()
            rows, _ = run(session, "EXPLAIN (ANALYZE, TIMING OFF) " + statement, params)
            savepoint.rollback()
            total = [float(str(row[0]).split()[-2]) for row in rows if str(row[0]).startswith("Execution Time")]
            timings[name] = total[0]
        return run(session, statement, params)

    return execute


async def measure(node: Node, rooms: int, batch: int, batches: int, postgresql: bool) -> dict[str, float]:
    senders: list[UserSnapshot] = []
    room_ids: list[int] = []
    for _ in range(rooms):  # each room its own member, who sends to it
        users, made = await make_users_and_rooms(node, 1, 1)
        senders.append(UserSnapshot.of(users[0]))
        room_ids += made
    store_cpu = 0.0
    timings: dict[str, float] = {}
    armed = [False]  # statements are timed in the batch halfway through, on tables of some size
    if postgresql:  # the batch path's statements: the lock with the targets (pipelined), then the writes
        timed = driver_rows.pg_execute = explained(timings, armed)
        pipelined = driver_rows.pg_execute_together

        def together(session: Any, statements: Any) -> Any:
            if armed[0] and "lock" not in timings:
                timed(session, *statements[0])
            return pipelined(session, statements)

        driver_rows.pg_execute_together = together
    started = time.perf_counter()
    for number in range(batches):
        armed[0] = number == batches // 2
        entries = sorted(((senders[(number * batch + k) % rooms],
                           Draft(room_ids[(number * batch + k) % rooms], f"message {number}.{k} " + "x" * 40,
                                 client_id=f"c{number}-{k}"))
                          for k in range(batch)), key=lambda entry: entry[1].room_id)

        def work(session: Any, entries: list[tuple[UserSnapshot, Draft]] = entries) -> list[Any]:
            nonlocal store_cpu
            before = time.thread_time()
            outcomes = store_drafts(node, session, entries)
            store_cpu += time.thread_time() - before
            return outcomes

        outcomes = await node.database.write(work)
        assert not any(isinstance(outcome, Exception) for outcome in outcomes), outcomes[:3]
    wall = time.perf_counter() - started
    messages = batches * batch
    return {"store_us_per_message": round(1e6 * store_cpu / messages, 2),
            "wall_us_per_message": round(1e6 * wall / messages, 2),
            **{f"{name}_ms_in_database": round(ms, 3) for name, ms in sorted(timings.items())}}


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--database", choices=["sqlite", "postgresql"], default="sqlite")
    parser.add_argument("--rooms", type=int, default=100)
    parser.add_argument("--batch", type=int, default=160, help="drafts per batch (flat-100x10: about 160)")
    parser.add_argument("--batches", type=int, default=300)
    parser.add_argument("--postgres-url", default=DEFAULT_POSTGRES_URL)
    parser.add_argument("--redis-url", default=DEFAULT_REDIS_URL)
    args = parser.parse_args()
    backend = "memory" if args.database == "sqlite" else "redis"
    with tempfile.TemporaryDirectory() as data_dir:
        async with node_for(backend, Path(data_dir), args.postgres_url, args.redis_url) as node:
            figures = await measure(node, args.rooms, args.batch, args.batches, args.database == "postgresql")
    print({"database": args.database, "rooms": args.rooms, "batch": args.batch, "batches": args.batches, **figures})


if __name__ == "__main__":
    trio.run(main)
