"""A read with a `ReadCursor` finds what a read without one finds, on each backend that uses the cursor:
the in-process one (it looks only at the rooms that may have news) and one Redis (its XREAD, on its
own connection, re-encodes only the rooms moved; through coredis the cursor is left alone).

Seeded random runs of appends, reads and moves, as the node's stream reader makes them. A Redis
Cluster reads by its bells, whose marks one read uses up, so two reads in a row are not comparable
there: its reads take the cursor and leave it alone."""

from __future__ import annotations

import random

import pytest

from roomcast.storage.streams import STREAM_START, Append, StreamBackend, StreamUnavailable
from roomcast.storage.streams.redis import RedisStreamBackend

from .conftest import REDIS_VIA_COREDIS
from .cursor_reader import CursorReader

ROOMS = list(range(1, 9))
KINDS = ["memory", pytest.param("redis", marks=pytest.mark.redis), REDIS_VIA_COREDIS]


@pytest.mark.parametrize("backend_kind", KINDS)
@pytest.mark.parametrize("seed", range(3))
async def test_reads_with_a_cursor_find_what_reads_without_one_find(backend: StreamBackend, seed: int) -> None:
    rng = random.Random(seed)
    reader = CursorReader(backend)
    ids: dict[int, list[str]] = {room: [STREAM_START] for room in ROOMS}
    for room in ROOMS[:5]:  # the others are attached along the way
        reader.place(room, STREAM_START)
    seq = 0
    for _ in range(100):  # (an empty read waits out Redis's own timer resolution, up to 0.1 s)
        roll = rng.random()
        if roll < 0.45:
            rooms = rng.choices(ROOMS, k=rng.randint(1, 4))
            seq += 1
            appended = await backend.append([Append(room, b"m%d" % seq, seq) for room in rooms])
            for room, entry_id in zip(rooms, appended, strict=True):
                ids[room].append(entry_id)
        elif roll < 0.8:
            await reader.read(rng.randint(1, 3), moves_on=rng.random() < 0.9)
        else:
            room = rng.choice(ROOMS)
            known = ids[room]
            reader.place(room, None if rng.random() < 0.3 else known[max(0, len(known) - 1 - rng.randint(0, 4))])
    for count in (1, 1000):
        await reader.read(count)


@pytest.mark.parametrize("backend_kind", [pytest.param("redis", marks=pytest.mark.redis)])
async def test_after_a_read_that_failed_the_next_names_every_room_anew(backend: StreamBackend) -> None:
    assert isinstance(backend, RedisStreamBackend) and backend.reads is not None
    reader = CursorReader(backend)
    reader.place(1, STREAM_START)
    await reader.read(10)
    reader.place(2, STREAM_START)  # noted for the read that fails: only that read was told
    await backend.append([Append(2, b"early", 1)])
    backend.reads.close()
    backend.reads.host, real_host = "127.0.0.1", backend.reads.host
    backend.reads.port, real_port = 1, backend.reads.port  # nothing listens there
    with pytest.raises(StreamUnavailable):
        await backend.read(reader.positions, count=10, timeout=0, cursor=reader.cursor)
    assert reader.cursor.state is None
    backend.reads.host, backend.reads.port = real_host, real_port
    found = await backend.read(reader.positions, count=10, timeout=0, cursor=reader.cursor)
    assert [entry.data for entry in found[2]] == [b"early"]
