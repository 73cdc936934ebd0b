"""Room streams: the backend interface, the in-process, one-Redis and Redis Cluster implementations."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from ...config import Settings
from .base import NOTICES_STREAM, STREAM_START, Append, ReadCursor, StreamBackend, StreamEntry, StreamUnavailable
from .memory import MemoryStreamBackend

__all__ = [
    "NOTICES_STREAM",
    "STREAM_START",
    "Append",
    "MemoryStreamBackend",
    "ReadCursor",
    "StreamBackend",
    "StreamEntry",
    "StreamUnavailable",
    "open_stream_backend",
]


@asynccontextmanager
async def open_stream_backend(settings: Settings) -> AsyncIterator[StreamBackend]:
    """Redis Streams when `settings.redis_url` is set (on a cluster for a redis+cluster:// URL), else
    the in-process backend."""
    from .redis_base import RedisOptions

    if settings.redis_url is None:
        yield MemoryStreamBackend(settings.memory_stream_maxlen, settings.memory_stream_max_entries)
        return
    options: RedisOptions = {"prefix": settings.redis_key_prefix, "maxlen": settings.redis_stream_maxlen,
                             "max_connections": settings.redis_max_connections,
                             "timeout_s": settings.redis_timeout_s,
                             "connect_timeout_s": settings.redis_connect_timeout_s}
    if settings.redis_cluster is not None:
        from .redis_cluster import open_redis_cluster_backend

        async with open_redis_cluster_backend(settings.redis_cluster, **options) as cluster_backend:
            yield cluster_backend
        return
    from .redis import open_redis_backend

    async with open_redis_backend(settings.redis_url, **options) as backend:
        yield backend
