"""Presence: the backend interface, the in-process and the Redis implementations."""

from __future__ import annotations

from ...config import Settings
from ..streams import StreamBackend
from .base import Departure, Presence
from .memory import MemoryPresence

__all__ = ["Departure", "MemoryPresence", "Presence", "open_presence"]


def open_presence(settings: Settings, streams: StreamBackend) -> Presence:
    """Redis presence when `settings.redis_url` is set (on the streams' Redis, through their
    outage guard), else the in-process one. It holds no resources of its own."""
    if settings.redis_url is None:
        return MemoryPresence()
    from ..streams.redis_base import RedisStreams
    from .redis import RedisPresence

    if not isinstance(streams, RedisStreams):
        raise TypeError(f"Redis presence needs the Redis stream backend, not {type(streams).__name__}")
    return RedisPresence(streams.client, settings.redis_key_prefix, ttl_s=settings.presence_ttl_s,
                         guard=streams.guarded)
