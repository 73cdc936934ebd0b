"""Where every node posts its live figures for `/api/admin/stats` to read across the cluster (Redis).

Keys: `<prefix>stats:{board}:node:<id>` (the node's figures as JSON) and
`<prefix>stats:{board}:users:<id>` (a HyperLogLog of the node's connected user ids), both
expiring after `ttl_s`, and `<prefix>stats:{board}:nodes`, a sorted set of node ids scored by
when their entries expire. The `{board}` hash tag keeps them in one slot of a Redis Cluster,
so a publish stays one transaction and the PFCOUNT of every node's users one command. A node
that stops refreshing (it died) drops out within `ttl_s`. Distinct users across nodes is the
PFCOUNT of the live nodes' HyperLogLogs: exact for small numbers, within about 1% at scale,
and a read costs the same however many users are online.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterable
from contextlib import AbstractContextManager
from dataclasses import dataclass

from coredis import PureToken

from ..config import Settings
from ..wire import JsonObject
from .streams import StreamBackend
from .streams.redis_base import RedisClient


@dataclass(frozen=True, slots=True)
class ClusterFigures:
    """Every live node's last published figures, and the distinct users connected across them."""

    nodes: list[JsonObject]
    users_online: int


class RedisStatsBoard:
    """Each node's figures in Redis, shared by every node that uses the same key prefix."""

    def __init__(self, client: RedisClient, prefix: str, ttl_s: float,
                 guard: Callable[[], AbstractContextManager[None]],
                 clock: Callable[[], float] = time.time) -> None:
        self.client = client
        self.ttl_s = ttl_s
        self._index = f"{prefix}stats:{{board}}:nodes"
        self._figures = f"{prefix}stats:{{board}}:node:"
        self._users = f"{prefix}stats:{{board}}:users:"
        self._guard = guard  # Redis unreachable → StreamUnavailable (the streams' outage guard)
        self._clock = clock

    async def publish(self, node_id: str, figures: JsonObject, user_ids: Iterable[int]) -> None:
        """Replace this node's entry (figures and users); StreamUnavailable when Redis is down."""
        ttl_ms = int(self.ttl_s * 1000)
        now = self._clock()
        users_key = self._users + node_id
        ids = [str(user_id) for user_id in user_ids]
        with self._guard():
            async with self.client.pipeline(transaction=True) as pipe:
                pipe.set(self._figures + node_id, json.dumps(figures), px=ttl_ms)
                pipe.delete([users_key])
                if ids:
                    pipe.pfadd(users_key, *ids)
                    pipe.pexpire(users_key, ttl_ms)
                pipe.zadd(self._index, {node_id: now + self.ttl_s})
                pipe.zremrangebyscore(self._index, float("-inf"), now)
                pipe.pexpire(self._index, ttl_ms * 2)

    async def withdraw(self, node_id: str) -> None:
        """Take this node's entry out at once (an orderly stop)."""
        with self._guard():
            async with self.client.pipeline(transaction=True) as pipe:
                pipe.zrem(self._index, [node_id])
                pipe.delete([self._figures + node_id, self._users + node_id])

    async def read(self) -> ClusterFigures:
        """Every live node's figures (ordered by node id); StreamUnavailable when Redis is down."""
        with self._guard():
            ids = sorted(member.decode() for member in await self.client.zrange(
                self._index, self._clock(), "+inf", sortby=PureToken.BYSCORE))
            if not ids:
                return ClusterFigures([], 0)
            raw = await self.client.mget([self._figures + node_id for node_id in ids])
            users = await self.client.pfcount([self._users + node_id for node_id in ids])
        nodes: list[JsonObject] = []
        for value in raw:
            if value is None:
                continue  # expired between the two reads
            try:
                figures = json.loads(value)
            except ValueError:
                continue  # written by something else under our prefix: not a node's entry
            if isinstance(figures, dict):
                nodes.append(figures)
        return ClusterFigures(nodes, users)


def open_stats_board(settings: Settings, streams: StreamBackend) -> RedisStatsBoard | None:
    """The board on the streams' Redis (through their outage guard), or None without Redis."""
    if settings.redis_url is None:
        return None
    from .streams.redis_base import RedisStreams

    if not isinstance(streams, RedisStreams):
        raise TypeError(f"the stats board needs the Redis stream backend, not {type(streams).__name__}")
    return RedisStatsBoard(streams.client, settings.redis_key_prefix, ttl_s=settings.stats_ttl_s,
                           guard=streams.guarded)
