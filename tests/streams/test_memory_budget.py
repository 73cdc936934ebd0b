"""The in-process stream's bound on all rooms together: every room that ever had an event keeps a
log while the process runs, so past `max_entries` the rooms appended to least recently give up
their entries, and a reader behind one of them reads on from what follows, as past `maxlen`."""

from __future__ import annotations

from roomcast.storage.streams import STREAM_START, Append, MemoryStreamBackend


def stored(room_id: int, seq: int) -> Append:
    return Append(room_id, f'{{"room":{room_id},"seq":{seq}}}'.encode(), seq)


async def kept(backend: MemoryStreamBackend, room_id: int) -> list[int | None]:
    found = await backend.read({room_id: STREAM_START}, count=1000, timeout=0)
    return [entry.seq for entry in found.get(room_id, [])]


async def test_past_the_budget_the_rooms_appended_to_least_recently_give_theirs_up_first() -> None:
    backend = MemoryStreamBackend(maxlen=16, max_entries=40)
    for room_id in (1, 2, 3):
        await backend.append([stored(room_id, seq) for seq in range(1, 13)])  # 36 kept
    await backend.append([stored(2, 13)])  # room 2 is now the most recent: room 1 is the oldest
    assert backend.entries == 37
    await backend.append([stored(4, seq) for seq in range(1, 11)])  # 47: room 1 gives up its 12
    assert backend.entries == 35
    assert await kept(backend, 1) == []
    assert await kept(backend, 3) == list(range(1, 13))
    assert await kept(backend, 2) == list(range(1, 14))
    assert await kept(backend, 4) == list(range(1, 11))


async def test_the_rooms_appended_to_now_keep_theirs_even_past_the_budget() -> None:
    backend = MemoryStreamBackend(maxlen=16, max_entries=20)
    await backend.append([stored(room_id, seq) for room_id in (1, 2) for seq in range(1, 13)])
    assert backend.entries == 24  # both appended to just now: a reader may not have read them yet
    assert await kept(backend, 1) == list(range(1, 13)) and await kept(backend, 2) == list(range(1, 13))
    await backend.append([stored(3, 1)])
    assert backend.entries == 13  # room 1, the older of the two by its last append, gave up its 12
    assert await kept(backend, 1) == []


async def test_a_room_that_gave_up_its_entries_goes_on_from_its_ids() -> None:
    backend = MemoryStreamBackend(maxlen=16, max_entries=16)
    ids = await backend.append([stored(1, seq) for seq in range(1, 6)])
    await backend.append([stored(2, seq) for seq in range(1, 16)])  # room 1's five are given up
    assert await kept(backend, 1) == []
    later = await backend.append([stored(1, 6)])
    assert later == ["0-6"]  # never an id it had already used: a reader's position stays meaningful
    found = await backend.read({1: ids[2]}, count=10, timeout=0)  # a reader left at seq 3
    assert [entry.seq for entry in found[1]] == [6]  # reads on from what follows (seqs 4-5 heal from the database)
    assert (await backend.read({1: later[0]}, count=10, timeout=0)).get(1) is None


async def test_entries_dropped_past_maxlen_are_counted_out() -> None:
    backend = MemoryStreamBackend(maxlen=16, max_entries=1000)
    await backend.append([stored(1, seq) for seq in range(1, 41)])
    await backend.append([stored(2, seq) for seq in range(1, 4)])
    assert backend.entries == 19
