"""Stream backends for the contract suite: the in-process one (on MockClock) and real Redis."""

from __future__ import annotations

from collections.abc import AsyncIterator

import coredis
import pytest
import trio
import trio.testing

from roomcast.storage.streams import MemoryStreamBackend, StreamBackend
from roomcast.storage.streams.redis import open_redis_backend

MAXLEN = 100


@pytest.fixture(params=["memory", pytest.param("redis", marks=pytest.mark.redis)])
def backend_kind(request: pytest.FixtureRequest) -> str:
    return request.param


@pytest.fixture
def clock(backend_kind: str) -> trio.testing.MockClock | None:
    """Virtual time for the in-process backend. Redis blocks in real time on the server,
    so its tests keep the real clock (and short timeouts)."""
    return trio.testing.MockClock(autojump_threshold=0) if backend_kind == "memory" else None


async def delete_keys(url: str, prefix: str) -> None:
    async with coredis.Redis.from_url(url) as client:
        keys = [key async for key in client.scan_iter(match=f"{prefix}*")]
        if keys:
            await client.delete(keys)


@pytest.fixture
async def backend(backend_kind: str, request: pytest.FixtureRequest) -> AsyncIterator[StreamBackend]:
    if backend_kind == "memory":
        yield MemoryStreamBackend(maxlen=MAXLEN)
        return
    url = request.getfixturevalue("redis_url")
    prefix = request.getfixturevalue("redis_key_prefix")
    try:
        async with open_redis_backend(url, prefix=prefix, maxlen=MAXLEN, max_connections=4, timeout_s=10,
                                      connect_timeout_s=5) as redis_backend:
            yield redis_backend
    finally:
        await delete_keys(url, prefix)
