#!/usr/bin/env python3
"""Stream read benchmark: the CPU one read of the stream reader costs, over the in-process backend.

One StreamReader with N rooms attached, in one process. Each cycle appends one entry to
each of `busy` rooms (one append call) and waits until the reader has handed every batch
over. CPU time (`time.thread_time`) is summed around the whole cycle and around the same
appends made with no reader, so `reader` (cycle - append) is what the read path costs.
A second figure times `MemoryStreamBackend.read` alone (positions given, entries waiting).
Cases: 100 rooms all with news, 1000 rooms of which 10 have news, 1000 rooms all with news.

    python bench/stream_reads.py          # 2000 cycles per case, after 50 of warm-up
    python bench/stream_reads.py 500
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import trio

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from roomcast.actors.stream_reader import StreamReader
from roomcast.storage.streams import Append, MemoryStreamBackend


class Sink:
    """Stands for a room actor's mailbox: counts what it is told, and says when all has come."""

    def __init__(self, counter: list[int], done: list[trio.Event], expected: list[int]) -> None:
        self.counter, self.done, self.expected = counter, done, expected

    def tell(self, message: object) -> None:
        self.counter[0] += 1
        if self.counter[0] >= self.expected[0]:
            self.done[0].set()


async def reader_cycles(rooms: int, busy: int, cycles: int) -> tuple[float, float]:
    backend = MemoryStreamBackend(1000)
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


async def appends_alone(rooms: int, busy: int, cycles: int) -> float:
    backend = MemoryStreamBackend(1000)
    hot = [Append(room_id, b'{"type":"typing"}') for room_id in list(range(1, rooms + 1))[:: rooms // busy][:busy]]
    started = time.thread_time()
    for _ in range(cycles):
        await backend.append(hot)
    return time.thread_time() - started


async def backend_reads(rooms: int, busy: int, reads: int) -> float:
    backend = MemoryStreamBackend(1000)
    ids = list(range(1, rooms + 1))
    positions = dict(await backend.last_ids(ids))
    hot = [Append(room_id, b"x") for room_id in ids[:: rooms // busy][:busy]]
    spent = 0.0
    for _ in range(reads):
        await backend.append(hot)
        started = time.thread_time()
        found = await backend.read(positions, count=256, timeout=1.0)
        spent += time.thread_time() - started
        assert len(found) == busy
        for room_id, entries in found.items():
            positions[room_id] = entries[-1].id
    return spent


async def main() -> None:
    cycles = int(sys.argv[1]) if len(sys.argv) > 1 else 2000
    for rooms, busy in ((100, 100), (1000, 10), (1000, 1000)):
        total, _ = await reader_cycles(rooms, busy, cycles)
        appending = await appends_alone(rooms, busy, cycles)
        alone = await backend_reads(rooms, busy, cycles)
        print(f"{rooms:5} rooms, {busy:4} with news: cycle {total / cycles * 1e6:7.1f} us, "
              f"append {appending / cycles * 1e6:6.1f} us, reader {(total - appending) / cycles * 1e6:7.1f} us/read; "
              f"backend.read alone {alone / cycles * 1e6:6.1f} us/read")


if __name__ == "__main__":
    trio.run(main)
