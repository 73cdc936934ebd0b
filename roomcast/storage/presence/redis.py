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
from collections.abc import Callable, Collection, Iterable, Sequence
from contextlib import AbstractContextManager, nullcontext

from coredis import PureToken

from ..streams.redis_base import RedisClient
from .base import Departure

_REFRESH_FRACTION = 3  # refresh entries three times per ttl
_REFRESH_CHUNK = 100  # keys per refresh pipeline: each costs the event loop a few ms at most


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
            async with self.client.pipeline(transaction=False) as pipe:  # one round trip
                pipe.zadd(key, {member: self._clock() + self.ttl_s})
                pipe.expire(key, int(self.ttl_s * 2))
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
        return (await self.join_many([(room_id, user_id, session_id)]))[room_id]

    async def join_many(self, joins: Sequence[tuple[int, int, str]],
                        read: Collection[int] = ()) -> dict[int, list[int]]:
        expiry = self._clock() + self.ttl_s
        added: defaultdict[str, list[str]] = defaultdict(list)  # room key -> its new members
        for room_id, user_id, session_id in joins:
            added[self._room_key(room_id)].append(f"{user_id}:{session_id}")
        rooms = list(dict.fromkeys([room_id for room_id, _, _ in joins] + list(read)))
        if not rooms:
            return {}
        now = self._clock()
        with self._guard():
            # One pipeline: every room's new entries, then every room's online list after them.
            async with self.client.pipeline(transaction=False) as pipe:
                for key, members in added.items():
                    pipe.zadd(key, dict.fromkeys(members, expiry))
                    pipe.expire(key, int(self.ttl_s * 2))
                ranges = [pipe.zrange(self._room_key(room_id), now, "+inf", sortby=PureToken.BYSCORE)
                          for room_id in rooms]
            online = {room_id: _user_ids(await members) for room_id, members in zip(rooms, ranges, strict=True)}
        for key, members in added.items():  # only once stored, as in `_add`
            self._local[key].update(members)
        return online

    async def leave(self, room_id: int, user_id: int, session_id: str) -> list[int]:
        await self._remove(self._room_key(room_id), f"{user_id}:{session_id}")
        return await self.online_in(room_id)

    async def online_in(self, room_id: int) -> list[int]:
        with self._guard():
            members = await self.client.zrange(self._room_key(room_id), self._clock(), "+inf",
                                               sortby=PureToken.BYSCORE)
        return _user_ids(members)

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
        entries = list(self._local.items())
        departures: list[Departure] = []
        for start in range(0, len(entries), _REFRESH_CHUNK):
            departures += await self._refresh(entries[start:start + _REFRESH_CHUNK])
        return departures

    async def _refresh(self, entries: list[tuple[str, set[str]]]) -> list[Departure]:
        """Re-score these keys' entries, and take the expired ones out, in one pipeline (a node
        with thousands of sessions would otherwise spend thousands of round trips every round)."""
        now = self._clock()
        expiry = now + self.ttl_s
        current = [(key, list(members)) for key, members in entries if members]  # emptied meanwhile: gone
        rooms = [key for key, _ in current if key.startswith(self._room_prefix)]
        with self._guard():
            async with self.client.pipeline(transaction=False) as pipe:
                for key, members in current:
                    pipe.zadd(key, dict.fromkeys(members, expiry))
                    pipe.expire(key, int(self.ttl_s * 2))
                    if not key.startswith(self._room_prefix):
                        pipe.zremrangebyscore(key, float("-inf"), now)
                expired = [pipe.zrange(key, "-inf", now, sortby=PureToken.BYSCORE) for key in rooms]
            departures: list[Departure] = []
            for key, request in zip(rooms, expired, strict=True):
                if gone := await request:
                    departures += await self._take_expired(int(key[len(self._room_prefix):]), key, gone)
        return departures

    async def _take_expired(self, room_id: int, key: str, expired: Iterable[bytes]) -> list[Departure]:
        """Remove these expired entries of the room; the users who thereby left (no live entry remains).

        Every node with sessions in the room races for the same entries: ZREM answers 1 to
        exactly one of them, so each departure is reported once.
        """
        gone: set[int] = set()
        for member in expired:
            if await self.client.zrem(key, [member]):
                gone.add(int(member.split(b":", 1)[0]))
        if not gone:
            return []
        online = await self.online_in(room_id)
        return [Departure(room_id, user_id, online) for user_id in sorted(gone - set(online))]


def _user_ids(members: Iterable[bytes]) -> list[int]:
    """The distinct user ids of a room's members (`<user id>:<session id>`), sorted."""
    return sorted({int(member.split(b":", 1)[0]) for member in members})
