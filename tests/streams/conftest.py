"""Stream backends for the contract suite: the in-process one (on MockClock), one Redis and a Redis Cluster."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
import trio
import trio.testing

from roomcast.storage.streams import MemoryStreamBackend, StreamBackend
from tests.conftest import REDIS_KINDS, redis_kind_url
from tests.redis_helpers import delete_keys, open_redis_streams

MAXLEN = 100


@pytest.fixture(params=["memory", *REDIS_KINDS])
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
    return redis_kind_url(request, backend_kind)


@pytest.fixture
async def backend(backend_kind: str, request: pytest.FixtureRequest) -> AsyncIterator[StreamBackend]:
    if backend_kind == "memory":
        yield MemoryStreamBackend(maxlen=MAXLEN)
        return
    url = request.getfixturevalue("redis_url")
    prefix = request.getfixturevalue("redis_key_prefix")
    try:
        async with open_redis_streams(url, prefix, maxlen=MAXLEN) as redis_backend:
            yield redis_backend
    finally:
        await delete_keys(url, prefix)
