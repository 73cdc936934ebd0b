"""Presence backends for the contract suite: the in-process one (on MockClock), one Redis and a Redis Cluster.

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
from roomcast.storage.streams.redis_base import RedisStreams
from tests.conftest import REDIS_KINDS, redis_kind_url
from tests.redis_helpers import delete_keys, open_redis_streams

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


@pytest.fixture(params=["memory", *REDIS_KINDS])
def backend_kind(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def redis_url(backend_kind: str, request: pytest.FixtureRequest) -> str:
    """The Redis the backend kind names."""
    return redis_kind_url(request, backend_kind)


@pytest.fixture
def clock(backend_kind: str) -> trio.testing.MockClock | None:
    """Virtual time for the in-process backend. Redis answers in real time, so its tests keep
    Trio's real clock (its scores follow the WallClock instead)."""
    return trio.testing.MockClock(autojump_threshold=0) if backend_kind == "memory" else None


def redis_presence(streams: RedisStreams, prefix: str, wall: WallClock) -> RedisPresence:
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

    try:
        async with open_redis_streams(url, prefix) as streams:
            yield PresenceWorld(redis_presence(streams, prefix, wall), advance,
                                lambda: redis_presence(streams, prefix, wall))
    finally:
        await delete_keys(url, prefix)
