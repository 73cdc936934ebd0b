#!/usr/bin/env python3
"""Stream read benchmark: the CPU one read of the stream reader costs, over the in-process backend or Redis.

One StreamReader with N rooms attached, in one process. Each cycle appends one entry to
each of `busy` rooms (one append call) and waits until the reader has handed every batch
over. CPU time (`time.thread_time`) is summed around the whole cycle and around the same
appends made with no reader, so `reader` (cycle - append) is what the read path costs.
A second figure times the backend's `read` alone (positions given, entries waiting), with a
`ReadCursor` kept as the stream reader keeps it.
Cases: 100 rooms all with news, 1000 rooms of which 10 have news, 1000 rooms all with news.

With `--redis URL` the same cycles run over the Redis backend (coredis, one process): the
figures are then this process's CPU, the client's side of each XADD and XREAD (Redis's own
CPU is not in them), under throwaway keys that are deleted afterwards.

    python bench/stream_reads.py          # 2000 cycles per case, after 50 of warm-up
    python bench/stream_reads.py 500
    python bench/stream_reads.py 500 --redis redis://127.0.0.1:6379/0
"""

from __future__ import annotations

import argparse
import secrets
import sys
import time
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from pathlib import Path

import trio

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from roomcast.actors.stream_reader import StreamReader
from roomcast.storage.streams import Append, MemoryStreamBackend, ReadCursor, StreamBackend
from roomcast.storage.streams.redis import open_redis_backend

Backends = Callable[[int], AbstractAsyncContextManager[StreamBackend]]


@asynccontextmanager
async def memory_backend(rooms: int) -> AsyncIterator[StreamBackend]:
    yield MemoryStreamBackend(1000)


def redis_backends(url: str) -> Backends:
    @asynccontextmanager
    async def redis_backend(rooms: int) -> AsyncIterator[StreamBackend]:
        async with open_redis_backend(url, prefix=f"bench-reads-{secrets.token_hex(4)}:", maxlen=1000,
                                      max_connections=8, timeout_s=10.0, connect_timeout_s=2.0) as backend:
            try:
                yield backend
            finally:
                await backend.single.delete([backend.key(room_id) for room_id in range(1, rooms + 1)])
                await backend.forget_wake_stream()

    return redis_backend


class Sink:
    """Stands for a room actor's mailbox: counts what it is told, and says when all has come."""

    def __init__(self, counter: list[int], done: list[trio.Event], expected: list[int]) -> None:
        self.counter, self.done, self.expected = counter, done, expected

    def tell(self, message: object) -> None:
        self.counter[0] += 1
        if self.counter[0] >= self.expected[0]:
            self.done[0].set()


async def reader_cycles(backend: StreamBackend, rooms: int, busy: int, cycles: int) -> tuple[float, float]:
    reader = StreamReader(backend, block_s=5.0)
    counter, done, expected = [0], [trio.Event()], [0]
    ids = list(range(1, rooms + 1))
    ends = await backend.last_ids(ids)
    for room_id in ids:
        reader.attach(room_id, Sink(counter, done, expected), ends[room_id], epoch=1)  # type: ignore[arg-type]
    hot = [Append(room_id, b'{"type":"typing"}') for room_id in ids[:: rooms // busy][:busy]]
    total = appending = 0.0
    async with trio.open_nursery() as nursery:
        nursery.start_soon(reader.run, None)  # type: ignore[arg-type]  # the reader never looks at its context
        await trio.sleep(0.05)
        for i in range(cycles + 50):
            if i == 50:
                total = appending = 0.0  # warm-up done
            started = time.thread_time()
            expected[0] = counter[0] + busy
            done[0] = trio.Event()
            await backend.append(hot)
            appending += time.thread_time() - started
            await done[0].wait()
            total += time.thread_time() - started
        nursery.cancel_scope.cancel()
    return total, appending


async def appends_alone(backend: StreamBackend, rooms: int, busy: int, cycles: int) -> float:
    hot = [Append(room_id, b'{"type":"typing"}') for room_id in list(range(1, rooms + 1))[:: rooms // busy][:busy]]
    started = time.thread_time()
    for _ in range(cycles):
        await backend.append(hot)
    return time.thread_time() - started


async def backend_reads(backend: StreamBackend, rooms: int, busy: int, reads: int) -> float:
    ids = list(range(1, rooms + 1))
    positions = dict(await backend.last_ids(ids))
    hot = [Append(room_id, b"x") for room_id in ids[:: rooms // busy][:busy]]
    cursor = ReadCursor()  # kept as the stream reader keeps it: every position it moves noted
    spent = 0.0
    for _ in range(reads):
        await backend.append(hot)
        started = time.thread_time()
        found = await backend.read(positions, count=256, timeout=1.0, cursor=cursor)
        spent += time.thread_time() - started
        assert len(found) == busy
        for room_id, entries in found.items():
            positions[room_id] = entries[-1].id
            cursor.moved.add(room_id)
    return spent


async def main(cycles: int, backends: Backends) -> None:
    for rooms, busy in ((100, 100), (1000, 10), (1000, 1000)):
        async with backends(rooms) as backend:
            total, _ = await reader_cycles(backend, rooms, busy, cycles)
        async with backends(rooms) as backend:
            appending = await appends_alone(backend, rooms, busy, cycles)
        async with backends(rooms) as backend:
            alone = await backend_reads(backend, rooms, busy, cycles)
        print(f"{rooms:5} rooms, {busy:4} with news: cycle {total / cycles * 1e6:7.1f} us, "
              f"append {appending / cycles * 1e6:6.1f} us, reader {(total - appending) / cycles * 1e6:7.1f} us/read; "
              f"backend.read alone {alone / cycles * 1e6:6.1f} us/read ({alone / cycles / busy * 1e6:5.1f} per entry)")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("cycles", nargs="?", type=int, default=2000)
    parser.add_argument("--redis", metavar="URL", help="measure the Redis backend at URL instead of the in-process one")
    args = parser.parse_args()
    trio.run(main, args.cycles, redis_backends(args.redis) if args.redis else memory_backend)
