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

import math
import time
from collections import defaultdict
from collections.abc import Callable, Collection, Iterable, Sequence
from contextlib import AbstractContextManager, nullcontext

from coredis import PureToken

from ..streams.redis_base import RedisClient
from .base import Departure

_REFRESH_FRACTION = 3  # refresh entries three times per ttl
# Members and keys per refresh pipeline: encoding one and reading its replies is one step of the
# event loop, and every room's messages wait behind it; at 64, about 2 ms. A node with thousands
# of sessions refreshes them in many such steps, each a round trip, rather than in a few long ones.
_REFRESH_BATCH = 64


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
        # When the keys' TTLs were last extended and the users' keys swept (see `refresh`).
        self._maintained_at = -math.inf

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
        # Every round re-scores the entries and looks for expired ones in the rooms (departures are
        # announced within a round). Extending the keys' TTLs (twice the entries') and sweeping the
        # users' keys can wait a ttl: every third round, a third of the commands of the others.
        maintain = self._clock() - self._maintained_at >= self.ttl_s * 0.9
        departures: list[Departure] = []
        for batch in _refresh_batches(list(self._local.items())):
            departures += await self._refresh(batch, maintain)
        if maintain:
            self._maintained_at = self._clock()
        return departures

    async def _refresh(self, batch: list[tuple[str, list[str], bool]], maintain: bool) -> list[Departure]:
        """Re-score these entries (key, members, whether it is the key's first part), and take the
        expired ones out of each room once, in one pipeline (a node with thousands of sessions would
        otherwise spend thousands of round trips every round)."""
        now = self._clock()
        expiry = now + self.ttl_s
        rooms = []
        with self._guard():
            async with self.client.pipeline(transaction=False) as pipe:
                for key, listed, first in batch:
                    # Only what is still this node's: a session that left while earlier batches
                    # went out must not be scored back in.
                    live = self._local.get(key, ())
                    members = [member for member in listed if member in live]
                    if members:
                        pipe.zadd(key, dict.fromkeys(members, expiry))
                    if not first:
                        continue
                    if maintain:
                        pipe.expire(key, int(self.ttl_s * 2))
                    if key.startswith(self._room_prefix):
                        rooms.append(key)
                    elif maintain:
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


def _refresh_batches(entries: list[tuple[str, set[str]]]) -> list[list[tuple[str, list[str], bool]]]:
    """The entries cut into refresh pipelines of about `_REFRESH_BATCH` members and keys each: a big
    room's members are spread over several, each part tagged whether it is its key's first."""
    batches: list[list[tuple[str, list[str], bool]]] = []
    batch: list[tuple[str, list[str], bool]] = []
    size = 0
    for key, members in entries:
        listed = list(members)
        step = _REFRESH_BATCH - 2  # a part and its key's other commands fill a pipeline at most
        for start in range(0, max(len(listed), 1), step):
            part = listed[start:start + step]
            if batch and size + len(part) + 2 > _REFRESH_BATCH:
                batches.append(batch)
                batch, size = [], 0
            batch.append((key, part, start == 0))
            size += len(part) + 2  # its ZADD's members, and the key's other commands
    if batch:
        batches.append(batch)
    return batches
