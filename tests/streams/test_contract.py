"""The stream backend contract: the same tests against the in-process backend and real Redis."""

from __future__ import annotations

import pytest
import trio
import trio.testing

from roomcast.storage.streams import STREAM_START, Append, StreamBackend

from .conftest import MAXLEN

# Long enough to be sure a read really blocks, short enough for Redis's real clock.
SHORT = 0.2


def stored(room_id: int, seq: int) -> Append:
    return Append(room_id, f'{{"type":"message","room":{room_id},"seq":{seq}}}'.encode(), seq)


async def test_entries_come_back_in_order_with_their_seq_and_data(
        backend: StreamBackend, clock: trio.testing.MockClock | None) -> None:
    ids = await backend.append([stored(1, 1), Append(1, b'{"type":"typing"}'), stored(1, 2)])
    assert len(set(ids)) == 3
    found = await backend.read({1: STREAM_START}, count=10, timeout=SHORT)
    entries = found[1]
    assert [e.id for e in entries] == ids
    assert [e.seq for e in entries] == [1, None, 2]
    assert entries[0].data == b'{"type":"message","room":1,"seq":1}' and entries[1].data == b'{"type":"typing"}'
    assert all(isinstance(e.data, bytes) for e in entries)


async def test_a_read_returns_only_what_follows_each_position_at_most_count_per_room(
        backend: StreamBackend, clock: trio.testing.MockClock | None) -> None:
    ids = await backend.append([stored(1, seq) for seq in range(1, 6)])
    await backend.append([stored(2, 1)])
    found = await backend.read({1: ids[1], 2: STREAM_START, 3: STREAM_START}, count=2, timeout=SHORT)
    assert sorted(found) == [1, 2]
    assert [e.seq for e in found[1]] == [3, 4]
    assert [e.seq for e in found[2]] == [1]
    rest = await backend.read({1: found[1][-1].id}, count=10, timeout=SHORT)
    assert [e.seq for e in rest[1]] == [5]


@pytest.mark.parametrize("behind", [1, 3, 12, 25, 39])
async def test_a_read_from_anywhere_in_a_long_stream_gets_what_follows_it(
        backend: StreamBackend, clock: trio.testing.MockClock | None, behind: int) -> None:
    ids = await backend.append([stored(1, seq) for seq in range(1, 41)])
    position = ids[-1 - behind]  # `behind` entries after it
    found = await backend.read({1: position}, count=5, timeout=SHORT)
    assert [e.seq for e in found[1]] == list(range(41 - behind, min(41, 46 - behind)))
    everything = await backend.read({1: position}, count=100, timeout=SHORT)
    assert [e.seq for e in everything[1]] == list(range(41 - behind, 41))


async def test_appends_to_one_room_keep_the_order_given_among_other_rooms(
        backend: StreamBackend, clock: trio.testing.MockClock | None) -> None:
    items = [stored(room, seq) for seq in range(1, 21) for room in (1, 2, 3)]
    await backend.append(items)
    found = await backend.read({1: STREAM_START, 2: STREAM_START, 3: STREAM_START}, count=100, timeout=SHORT)
    for room in (1, 2, 3):
        assert [e.seq for e in found[room]] == list(range(1, 21))


async def test_a_blocked_read_wakes_for_an_append_to_any_of_its_rooms(
        backend: StreamBackend, clock: trio.testing.MockClock | None) -> None:
    start = (await backend.last_ids([7]))[7]
    result = {}

    async def reader() -> None:
        result.update(await backend.read({6: STREAM_START, 7: start}, count=10, timeout=30))

    with trio.fail_after(10):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(reader)
            await trio.sleep(SHORT)
            assert not result
            await backend.append([stored(7, 1)])
    assert [e.seq for e in result[7]] == [1]


async def test_a_blocked_read_waits_on_through_appends_to_other_rooms(
        backend: StreamBackend, clock: trio.testing.MockClock | None) -> None:
    start = (await backend.last_ids([7]))[7]
    result = {}

    async def reader() -> None:
        result.update(await backend.read({6: STREAM_START, 7: start}, count=10, timeout=30))

    with trio.fail_after(10):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(reader)
            await trio.sleep(SHORT)
            await backend.append([stored(8, 1)])
            await trio.sleep(SHORT)
            assert not result
            await backend.append([stored(9, 1)])  # one append after another, then one it waits for
            await backend.append([stored(9, 2), stored(7, 1), stored(8, 2)])
    assert sorted(result) == [7] and [e.seq for e in result[7]] == [1]


async def test_a_read_times_out_empty(backend: StreamBackend, clock: trio.testing.MockClock | None) -> None:
    with trio.fail_after(10):
        start = trio.current_time()
        assert await backend.read({1: STREAM_START}, count=10, timeout=SHORT) == {}
        assert trio.current_time() - start >= SHORT * 0.9


async def test_interrupt_ends_a_blocked_read_and_is_not_lost_before_one(
        backend: StreamBackend, clock: trio.testing.MockClock | None) -> None:
    with trio.fail_after(10):
        async with trio.open_nursery() as nursery:
            outcome: list[object] = []

            async def reader() -> None:
                outcome.append(await backend.read({1: STREAM_START}, count=10, timeout=60))

            nursery.start_soon(reader)
            await trio.sleep(SHORT)
            backend.interrupt()
        assert outcome == [{}]
        backend.interrupt()  # before the read starts: the read still returns early
        assert await backend.read({1: STREAM_START}, count=10, timeout=60) == {}


async def test_last_ids_mark_the_end_of_each_stream(backend: StreamBackend,
                                                     clock: trio.testing.MockClock | None) -> None:
    assert await backend.last_ids([1, 2]) == {1: STREAM_START, 2: STREAM_START}
    ids = await backend.append([stored(1, 1), stored(1, 2)])
    last = await backend.last_ids([1, 2])
    assert last == {1: ids[-1], 2: STREAM_START}
    assert await backend.read({1: last[1]}, count=10, timeout=SHORT) == {}
    await backend.append([stored(1, 3)])
    found = await backend.read({1: last[1]}, count=10, timeout=SHORT)
    assert [e.seq for e in found[1]] == [3]


async def test_streams_are_capped_and_an_old_position_reads_from_the_oldest_kept(
        backend: StreamBackend, clock: trio.testing.MockClock | None) -> None:
    total = MAXLEN * 5
    first_ids = await backend.append([stored(1, 1)])
    for start in range(2, total + 1, 100):
        await backend.append([stored(1, seq) for seq in range(start, min(start + 100, total + 1))])
    found = await backend.read({1: STREAM_START}, count=total, timeout=SHORT)
    kept = [e.seq for e in found[1]]
    # Exact in process; Redis trims with MAXLEN ~, in whole nodes of (by default) 100 entries.
    assert MAXLEN <= len(kept) <= MAXLEN * 2
    assert kept == list(range(total - len(kept) + 1, total + 1))
    found = await backend.read({1: first_ids[0]}, count=total, timeout=SHORT)
    assert [e.seq for e in found[1]] == kept


async def test_ping(backend: StreamBackend, clock: trio.testing.MockClock | None) -> None:
    await backend.ping()


@pytest.mark.parametrize("backend_kind", ["memory"], indirect=True)
async def test_the_in_process_backend_keeps_exactly_maxlen(backend: StreamBackend,
                                                            clock: trio.testing.MockClock | None) -> None:
    await backend.append([stored(1, seq) for seq in range(1, MAXLEN + 11)])
    found = await backend.read({1: STREAM_START}, count=10_000, timeout=0)
    assert [e.seq for e in found[1]] == list(range(11, MAXLEN + 11))
