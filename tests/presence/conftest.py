"""Presence backends for the contract suite: the in-process one (on MockClock) and real Redis.

Redis presence scores its entries in wall time; its tests give it a `WallClock` they move
themselves, so entries expire without anyone waiting.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass

import pytest
import trio.testing

from roomcast.storage.presence import MemoryPresence, Presence
from roomcast.storage.presence.redis import RedisPresence
from roomcast.storage.streams.redis import RedisStreamBackend, open_redis_backend

TTL_S = 15.0  # Redis also expires whole keys after 2 * TTL_S of real time: far beyond any test


class WallClock:
    """The wall time Redis presence reads, moved by the test instead of by waiting."""

    def __init__(self) -> None:
        self.now = time.time()

    def __call__(self) -> float:
        return self.now


@dataclass
class PresenceWorld:
    """The presence under test, how to move its time, and (Redis) other nodes on the same store."""

    presence: Presence
    advance: Callable[[float], None]
    peer: Callable[[], Presence]


@pytest.fixture(params=["memory", pytest.param("redis", marks=pytest.mark.redis)])
def backend_kind(request: pytest.FixtureRequest) -> str:
    return request.param


@pytest.fixture
def clock(backend_kind: str) -> trio.testing.MockClock | None:
    """Virtual time for the in-process backend. Redis answers in real time, so its tests keep
    Trio's real clock (its scores follow the WallClock instead)."""
    return trio.testing.MockClock(autojump_threshold=0) if backend_kind == "memory" else None


def redis_presence(streams: RedisStreamBackend, prefix: str, wall: WallClock) -> RedisPresence:
    """One node's presence, as open_presence builds it, but on the test's clock."""
    return RedisPresence(streams.client, prefix, ttl_s=TTL_S, guard=streams.guarded, clock=wall)


@pytest.fixture
async def world(backend_kind: str, clock: trio.testing.MockClock | None,
                request: pytest.FixtureRequest) -> AsyncIterator[PresenceWorld]:
    if backend_kind == "memory":
        assert clock is not None

        def no_peer() -> Presence:
            raise AssertionError("in-process presence has no other nodes")

        yield PresenceWorld(MemoryPresence(), clock.jump, no_peer)
        return
    url = request.getfixturevalue("redis_url")
    prefix = request.getfixturevalue("redis_key_prefix")
    wall = WallClock()

    def advance(seconds: float) -> None:
        wall.now += seconds

    async with open_redis_backend(url, prefix=prefix, maxlen=100, max_connections=4, timeout_s=10,
                                  connect_timeout_s=5) as streams:
        try:
            yield PresenceWorld(redis_presence(streams, prefix, wall), advance,
                                lambda: redis_presence(streams, prefix, wall))
        finally:
            keys = [key async for key in streams.client.scan_iter(match=f"{prefix}*")]
            if keys:
                await streams.client.delete(keys)
