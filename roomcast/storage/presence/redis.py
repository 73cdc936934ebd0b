"""Presence in Redis sorted sets shared by every node (scores are expiry times).

Every command names one key, so a Redis Cluster serves it as it is (a pipeline of them is
split per master by the cluster client).

Keys: `<prefix>presence:room:<id>` with members `<user id>:<session id>`, and
`<prefix>presence:user:<id>` with members `<session id>`. Each node refreshes its
own sessions' entries every `ttl_s / 3`, so the entries of a node that dies expire
within `ttl_s`. Each refresh also takes the expired entries out of the rooms this
node has sessions in, and reports who left through them, so the survivors can
announce `left` for the users of a dead node (within `ttl_s` plus one refresh interval).
"""

from __future__ import annotations

import time
from collections import defaultdict
from collections.abc import Callable, Iterable
from contextlib import AbstractContextManager, nullcontext

from coredis import PureToken

from ..streams.redis_base import RedisClient
from .base import Departure

_REFRESH_FRACTION = 3  # refresh entries three times per ttl


class RedisPresence:
    """Presence shared through Redis by every node.

    `guard()` is the stream backend's: inside it, Redis being unreachable raises
    StreamUnavailable (presence lives on the same Redis as the streams). `clock` gives
    the wall time the scores are in (every node must agree on it): time.time, or a
    test's own.
    """

    def __init__(self, client: RedisClient, prefix: str, ttl_s: float = 15.0,
                 guard: Callable[[], AbstractContextManager[None]] = nullcontext,
                 clock: Callable[[], float] = time.time) -> None:
        self.client = client
        self.prefix = prefix
        self.ttl_s = ttl_s
        self.refresh_interval_s = ttl_s / _REFRESH_FRACTION
        self._room_prefix = f"{prefix}presence:room:"
        self._guard = guard
        self._clock = clock
        # What this node has registered, re-scored periodically: key -> members.
        self._local: defaultdict[str, set[str]] = defaultdict(set)

    def _room_key(self, room_id: int) -> str:
        return f"{self._room_prefix}{room_id}"

    def _user_key(self, user_id: int) -> str:
        return f"{self.prefix}presence:user:{user_id}"

    async def _add(self, key: str, member: str) -> None:
        with self._guard():
            await self.client.zadd(key, {member: self._clock() + self.ttl_s})
            await self.client.expire(key, int(self.ttl_s * 2))
        # Only once stored: a join refused for an outage must leave nothing to refresh.
        self._local[key].add(member)

    async def _remove(self, key: str, member: str) -> None:
        self._forget_local(key, member)
        with self._guard():
            await self.client.zrem(key, [member])

    def _forget_local(self, key: str, member: str) -> None:
        members = self._local.get(key)
        if members is not None:
            members.discard(member)
            if not members:
                del self._local[key]

    def forget(self, user_id: int, session_id: str, room_ids: Iterable[int]) -> None:
        for room_id in room_ids:
            self._forget_local(self._room_key(room_id), f"{user_id}:{session_id}")
        self._forget_local(self._user_key(user_id), session_id)

    async def join(self, room_id: int, user_id: int, session_id: str) -> list[int]:
        await self._add(self._room_key(room_id), f"{user_id}:{session_id}")
        return await self.online_in(room_id)

    async def leave(self, room_id: int, user_id: int, session_id: str) -> list[int]:
        await self._remove(self._room_key(room_id), f"{user_id}:{session_id}")
        return await self.online_in(room_id)

    async def online_in(self, room_id: int) -> list[int]:
        with self._guard():
            members = await self.client.zrange(self._room_key(room_id), self._clock(), "+inf",
                                               sortby=PureToken.BYSCORE)
        return sorted({int(member.split(b":", 1)[0]) for member in members})

    async def connect(self, user_id: int, session_id: str) -> None:
        await self._add(self._user_key(user_id), session_id)

    async def disconnect(self, user_id: int, session_id: str) -> None:
        await self._remove(self._user_key(user_id), session_id)

    async def online_users(self, user_ids: Iterable[int]) -> set[int]:
        ids = list(dict.fromkeys(user_ids))
        if not ids:
            return set()
        now = self._clock()
        with self._guard():
            async with self.client.pipeline(transaction=False) as pipe:
                counts = [pipe.zcount(self._user_key(user_id), now, "+inf") for user_id in ids]
            return {user_id for user_id, count in zip(ids, counts, strict=True) if await count}

    async def refresh(self) -> list[Departure]:
        if not self._local:
            return []  # nothing of this node's to keep alive, nor rooms to look after
        expiry = self._clock() + self.ttl_s
        departures: list[Departure] = []
        with self._guard():
            for key, members in list(self._local.items()):
                if members:
                    await self.client.zadd(key, dict.fromkeys(members, expiry))
                    await self.client.expire(key, int(self.ttl_s * 2))
                if key.startswith(self._room_prefix):
                    departures += await self._take_expired(int(key[len(self._room_prefix):]), key)
                else:
                    await self.client.zremrangebyscore(key, float("-inf"), self._clock())
        return departures

    async def _take_expired(self, room_id: int, key: str) -> list[Departure]:
        """Remove the room's expired entries; the users who thereby left (no live entry remains).

        Every node with sessions in the room races for the same entries: ZREM answers 1 to
        exactly one of them, so each departure is reported once.
        """
        expired = await self.client.zrange(key, "-inf", self._clock(), sortby=PureToken.BYSCORE)
        gone: set[int] = set()
        for member in expired:
            if await self.client.zrem(key, [member]):
                gone.add(int(member.split(b":", 1)[0]))
        if not gone:
            return []
        online = await self.online_in(room_id)
        return [Departure(room_id, user_id, online) for user_id in sorted(gone - set(online))]
