"""Which presence backend a node gets, and Redis presence meeting an unreachable Redis."""

from __future__ import annotations

import socket

import pytest

from roomcast.config import load_settings
from roomcast.storage.presence import MemoryPresence, open_presence
from roomcast.storage.presence.redis import RedisPresence
from roomcast.storage.streams import MemoryStreamBackend, StreamUnavailable, open_stream_backend
from roomcast.storage.streams.redis import open_redis_backend


def test_without_redis_presence_is_in_process() -> None:
    assert isinstance(open_presence(load_settings(environ={}), MemoryStreamBackend()), MemoryPresence)


def test_redis_presence_needs_the_redis_stream_backend() -> None:
    settings = load_settings({"redis_url": "redis://127.0.0.1:6379/0"}, environ={})
    with pytest.raises(TypeError):
        open_presence(settings, MemoryStreamBackend())


@pytest.mark.redis
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


async def test_an_unreachable_redis_is_stream_unavailable_and_a_refused_join_leaves_nothing() -> None:
    url = f"redis://127.0.0.1:{closed_port()}/0"
    async with open_redis_backend(url, prefix="rc-test:closed:", maxlen=100, max_connections=2, timeout_s=2,
                                  connect_timeout_s=1) as streams:
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
