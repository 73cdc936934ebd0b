"""Which presence backend a node gets, and Redis presence meeting an unreachable Redis."""

from __future__ import annotations

import socket

import pytest

from roomcast.config import load_settings
from roomcast.storage.presence import MemoryPresence, open_presence
from roomcast.storage.presence.redis import _REFRESH_BATCH, RedisPresence, _refresh_batches
from roomcast.storage.streams import MemoryStreamBackend, StreamUnavailable, open_stream_backend
from tests.conftest import REDIS_KINDS
from tests.redis_helpers import open_redis_streams


@pytest.fixture(params=REDIS_KINDS)
def backend_kind(request: pytest.FixtureRequest) -> str:
    return str(request.param)


def test_without_redis_presence_is_in_process() -> None:
    assert isinstance(open_presence(load_settings(environ={}), MemoryStreamBackend()), MemoryPresence)


def test_redis_presence_needs_the_redis_stream_backend() -> None:
    settings = load_settings({"redis_url": "redis://127.0.0.1:6379/0"}, environ={})
    with pytest.raises(TypeError):
        open_presence(settings, MemoryStreamBackend())


async def test_with_redis_presence_shares_the_streams_redis_with_the_configured_ttl(
        redis_url: str, redis_key_prefix: str) -> None:
    settings = load_settings({"redis_url": redis_url, "redis_key_prefix": redis_key_prefix, "presence_ttl_s": 3},
                             environ={})
    async with open_stream_backend(settings) as streams:
        presence = open_presence(settings, streams)
        assert isinstance(presence, RedisPresence)
        assert (presence.ttl_s, presence.refresh_interval_s) == (3, 1)
        try:
            assert await presence.join(1, 5, "a") == [5]
            key = f"{redis_key_prefix}presence:room:1"
            assert list(await presence.client.zrange(key, 0, -1)) == [b"5:a"]  # the key scheme nodes share
        finally:
            await presence.leave(1, 5, "a")


def closed_port() -> int:
    """A local port nothing listens on (connecting is refused at once)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.mark.parametrize("scheme", ["redis", "redis+cluster"])
async def test_an_unreachable_redis_is_stream_unavailable_and_a_refused_join_leaves_nothing(scheme: str) -> None:
    async with open_redis_streams(f"{scheme}://127.0.0.1:{closed_port()}", "rc-test:closed:") as streams:
        presence = RedisPresence(streams.client, "rc-test:closed:", guard=streams.guarded)
        with pytest.raises(StreamUnavailable):
            await presence.join(1, 5, "a")
        with pytest.raises(StreamUnavailable):
            await presence.join_many([(1, 5, "a"), (2, 6, "b")], read=[3])
        with pytest.raises(StreamUnavailable):
            await presence.connect(5, "a")
        with pytest.raises(StreamUnavailable):
            await presence.online_users([5])
        assert await presence.refresh() == []  # nothing was stored, so nothing to keep alive


def test_a_refresh_is_cut_into_short_pipelines_a_big_room_over_several() -> None:
    room = ("p:presence:room:1", {f"{n}:s{n}" for n in range(150)})
    users = [(f"p:presence:user:{n}", {f"s{n}"}) for n in range(70)]
    batches = _refresh_batches([room, *users])
    sizes = [sum(len(members) + 2 for _, members, _ in batch) for batch in batches]
    assert max(sizes) <= _REFRESH_BATCH and len(batches) > 4
    parts = [part for batch in batches for part in batch]
    assert sorted(m for key, members, _ in parts if key == room[0] for m in members) == sorted(room[1])
    assert [first for key, _, first in parts if key == room[0]] == [True, False, False]  # one EXPIRE, one scan
    assert [(key, set(members), first) for key, members, first in parts if key != room[0]] == \
        [(key, members, True) for key, members in users]
