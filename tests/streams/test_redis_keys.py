"""The Redis backends format each room's key once and reuse it, within a bound."""

from __future__ import annotations

import pytest

from roomcast.storage.streams import STREAM_START, Append, redis_base
from roomcast.storage.streams.redis_base import RedisStreams
from tests.conftest import REDIS_KINDS


@pytest.fixture(params=REDIS_KINDS)
def backend_kind(request: pytest.FixtureRequest) -> str:
    return str(request.param)


async def test_reads_over_more_rooms_than_the_key_cache_holds_find_every_room(
        backend: RedisStreams, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(redis_base, "_KEY_CACHE_MAX", 8)
    rooms = list(range(1, 21))
    ids = await backend.append([Append(room, f'{{"room":{room}}}'.encode(), 1) for room in rooms])
    for _ in range(2):  # the second pass starts over a cache that was cleared on the way
        found = await backend.read(dict.fromkeys(rooms, STREAM_START), count=10, timeout=0.2)
        assert sorted(found) == rooms
        assert [found[room][0].data for room in rooms] == [f'{{"room":{room}}}'.encode() for room in rooms]
        assert len(backend._keys) <= 8
    assert await backend.read(dict(zip(rooms, ids, strict=True)), count=10, timeout=0.2) == {}
    assert backend.key(3) == backend.key(3) == f"{backend.prefix}room:3".encode()
