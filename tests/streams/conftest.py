"""Stream backends for the contract suite: the in-process one (on MockClock), one Redis (its reads on their
own connection, and through coredis as for a TLS or Unix-socket address) and a Redis Cluster."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
import trio
import trio.testing

from roomcast.storage.streams import MemoryStreamBackend, StreamBackend
from roomcast.storage.streams.redis import RedisStreamBackend
from tests.conftest import REDIS_KINDS, redis_kind_url
from tests.redis_helpers import delete_keys, open_redis_streams

MAXLEN = 100


# One Redis read through coredis, as for an address the reads' own connection does not serve (redis_reads).
REDIS_VIA_COREDIS = pytest.param("redis-via-coredis", marks=pytest.mark.redis)


@pytest.fixture(params=["memory", *REDIS_KINDS, REDIS_VIA_COREDIS])
def backend_kind(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def clock(backend_kind: str) -> trio.testing.MockClock | None:
    """Virtual time for the in-process backend. Redis blocks in real time on the server,
    so its tests keep the real clock (and short timeouts)."""
    return trio.testing.MockClock(autojump_threshold=0) if backend_kind == "memory" else None


@pytest.fixture
def redis_url(backend_kind: str, request: pytest.FixtureRequest) -> str:
    """The Redis the backend kind names."""
    return redis_kind_url(request, "redis" if backend_kind == REDIS_VIA_COREDIS.values[0] else backend_kind)


@pytest.fixture
async def backend(backend_kind: str, request: pytest.FixtureRequest) -> AsyncIterator[StreamBackend]:
    if backend_kind == "memory":
        yield MemoryStreamBackend(maxlen=MAXLEN)
        return
    url = request.getfixturevalue("redis_url")
    prefix = request.getfixturevalue("redis_key_prefix")
    try:
        async with open_redis_streams(url, prefix, maxlen=MAXLEN) as redis_backend:
            if backend_kind == REDIS_VIA_COREDIS.values[0]:
                assert isinstance(redis_backend, RedisStreamBackend) and redis_backend.reads is not None
                redis_backend.reads = None
            yield redis_backend
    finally:
        await delete_keys(url, prefix)
