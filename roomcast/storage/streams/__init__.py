"""Room streams: the backend interface, the in-process and the Redis implementations."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from ...config import Settings
from .base import NOTICES_STREAM, STREAM_START, Append, StreamBackend, StreamEntry, StreamUnavailable
from .memory import MemoryStreamBackend

__all__ = [
    "NOTICES_STREAM",
    "STREAM_START",
    "Append",
    "MemoryStreamBackend",
    "StreamBackend",
    "StreamEntry",
    "StreamUnavailable",
    "open_stream_backend",
]


@asynccontextmanager
async def open_stream_backend(settings: Settings) -> AsyncIterator[StreamBackend]:
    """Redis Streams when `settings.redis_url` is set, else the in-process backend."""
    if settings.redis_url is None:
        yield MemoryStreamBackend(settings.memory_stream_maxlen)
        return
    from .redis import open_redis_backend

    async with open_redis_backend(
        settings.redis_url,
        prefix=settings.redis_key_prefix,
        maxlen=settings.redis_stream_maxlen,
        max_connections=settings.redis_max_connections,
        timeout_s=settings.redis_timeout_s,
        connect_timeout_s=settings.redis_connect_timeout_s,
    ) as backend:
        yield backend
