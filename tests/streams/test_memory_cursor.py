"""Reads of the in-process backend with a `ReadCursor` look at fewer rooms and find what reads without one find."""

from __future__ import annotations

from dataclasses import dataclass

import trio
import trio.testing
from hypothesis import given, settings
from hypothesis import strategies as st

from roomcast.storage.streams import STREAM_START, Append, MemoryStreamBackend, ReadCursor

from .cursor_reader import CursorReader

ROOMS = range(1, 7)


@dataclass(frozen=True)
class AppendTo:
    rooms: tuple[int, ...]


@dataclass(frozen=True)
class Read:
    count: int
    moves_on: bool  # the positions move to what it found (as the node's reader does), or stay


@dataclass(frozen=True)
class Move:
    room: int
    back: int | None  # entries back from the room's newest; None: no longer named


operations = st.lists(st.one_of(
    st.builds(AppendTo, st.lists(st.sampled_from(ROOMS), min_size=1, max_size=4).map(tuple)),
    st.builds(Read, st.integers(1, 3), st.booleans()),
    st.builds(Move, st.sampled_from(ROOMS), st.one_of(st.none(), st.integers(0, 6)))), max_size=60)


@settings(max_examples=300, deadline=None)
@given(operations, st.integers(2, 5))
def test_a_read_with_a_cursor_finds_what_a_read_without_one_finds(ops: list[object], maxlen: int) -> None:
    async def main() -> None:
        # Small caps: rooms also lose their oldest entries, and whole logs are given up.
        backend = MemoryStreamBackend(maxlen=maxlen, max_entries=3 * maxlen)
        reader = CursorReader(backend)
        ids: dict[int, list[str]] = {room: [STREAM_START] for room in ROOMS}
        for room in ROOMS:
            reader.place(room, STREAM_START)
        for op in ops:
            if isinstance(op, AppendTo):
                appended = await backend.append([Append(room, b"x", None) for room in op.rooms])
                for room, entry_id in zip(op.rooms, appended, strict=True):
                    ids[room].append(entry_id)
            elif isinstance(op, Read):
                await reader.read(op.count, op.moves_on)
            else:
                assert isinstance(op, Move)
                known = ids[op.room]
                reader.place(op.room, None if op.back is None else known[max(0, len(known) - 1 - op.back)])
        for count in (1, 1000):
            await reader.read(count)

    trio.run(main)


async def test_a_blocked_read_with_a_cursor_wakes_for_an_append_and_the_next_finds_what_came_after() -> None:
    backend = MemoryStreamBackend()
    reader = CursorReader(backend)
    for room in ROOMS:
        reader.place(room, STREAM_START)
    assert await backend.read(reader.positions, count=10, timeout=0, cursor=reader.cursor) == {}
    async with trio.open_nursery() as nursery:
        found: dict[int, list[object]] = {}

        async def blocked() -> None:
            found.update(await backend.read(reader.positions, count=10, timeout=60, cursor=reader.cursor))

        nursery.start_soon(blocked)
        await trio.testing.wait_all_tasks_blocked()
        await backend.append([Append(3, b"a", 1)])
    assert list(found) == [3]
    reader.place(3, found[3][-1].id)  # type: ignore[attr-defined]
    await backend.append([Append(5, b"b", 1)])
    later = await backend.read(reader.positions, count=10, timeout=0, cursor=reader.cursor)
    assert [entry.data for entry in later[5]] == [b"b"] and list(later) == [5]


async def test_after_a_cancelled_read_the_next_looks_at_every_room() -> None:
    backend = MemoryStreamBackend()
    reader = CursorReader(backend)
    reader.place(1, STREAM_START)
    await backend.read(reader.positions, count=10, timeout=0, cursor=reader.cursor)
    await backend.append([Append(2, b"early", 1)])
    reader.place(2, STREAM_START)  # moved before the read that is cancelled: only that read was told
    with trio.move_on_after(0):
        await backend.read({1: STREAM_START}, count=10, timeout=60, cursor=reader.cursor)
    assert reader.cursor.state is None
    found = await backend.read(reader.positions, count=10, timeout=0, cursor=reader.cursor)
    assert [entry.data for entry in found[2]] == [b"early"]


async def test_a_cursor_another_backend_used_is_not_trusted() -> None:
    first, second = MemoryStreamBackend(), MemoryStreamBackend()
    cursor = ReadCursor()
    await first.read({1: STREAM_START}, count=10, timeout=0, cursor=cursor)
    await second.append([Append(1, b"there", 1)])
    found = await second.read({1: STREAM_START}, count=10, timeout=0, cursor=cursor)
    assert [entry.data for entry in found[1]] == [b"there"]
