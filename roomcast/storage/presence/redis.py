"""Presence in Redis sorted sets shared by every node (scores are expiry times).

Every command names one key, so a Redis Cluster serves it as it is (a pipeline of them is
split per master by the cluster client). The periodic refresh is the exception on one Redis:
there a script re-scores hundreds of keys per call (`_REFRESH_SCRIPT`), where a pipeline costs
the client a command object, its encoding and its reply for each key.

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

import coredis
from coredis import PureToken

from ..streams.base import StreamUnavailable
from ..streams.redis_base import RedisClient
from .base import Departure

_REFRESH_FRACTION = 3  # refresh entries three times per ttl
# Members and keys per refresh pipeline: encoding one and reading its replies is one step of the
# event loop, and every room's messages wait behind it; at 64, about 2 ms. A node with thousands
# of sessions refreshes them in many such steps, each a round trip, rather than in a few long ones.
_REFRESH_BATCH = 64
# The same on one Redis, where a batch is one script call: its arguments are plain strings, a
# few µs each to encode. Redis runs the call in about a millisecond and answers no one else
# meanwhile, as it does for a pipeline of 64 commands.
_SCRIPT_BATCH = 256


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
        # One Redis: refresh rounds go by script. A cluster refuses a script whose keys span slots.
        self._refresh_script = None if isinstance(client, coredis.RedisCluster) else client.register_script(
            _REFRESH_SCRIPT)

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
        size = _REFRESH_BATCH if self._refresh_script is None else _SCRIPT_BATCH
        for batch in _refresh_batches(list(self._local.items()), size):
            departures += await self._refresh(batch, maintain)
        if maintain:
            self._maintained_at = self._clock()
        return departures

    async def _refresh(self, batch: list[tuple[str, list[str], bool]], maintain: bool) -> list[Departure]:
        """Re-score these entries (key, members, whether it is the key's first part), and take the
        expired ones out of each room once: in one script call, or one pipeline on a cluster (a node
        with thousands of sessions would otherwise spend thousands of round trips every round)."""
        now = self._clock()
        expiry = now + self.ttl_s
        # Only what is still this node's: a session that left while earlier batches went out
        # must not be scored back in.
        parts = [(key, [member for member in listed if member in self._local.get(key, ())], first)
                 for key, listed, first in batch]
        with self._guard():
            if self._refresh_script is not None:
                expired = await self._rescore_by_script(parts, now, expiry, maintain)
            else:
                expired = await self._rescore_by_pipeline(parts, now, expiry, maintain)
            departures: list[Departure] = []
            for key, gone in expired:
                if gone:
                    departures += await self._take_expired(int(key[len(self._room_prefix):]), key, gone)
        return departures

    async def _rescore_by_pipeline(self, parts: list[tuple[str, list[str], bool]], now: float, expiry: float,
                                   maintain: bool) -> list[tuple[str, list[bytes]]]:
        """`_refresh`'s writes as one command per key: each room's expired members, by key."""
        rooms = []
        async with self.client.pipeline(transaction=False) as pipe:
            for key, members, first in parts:
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
        return [(key, list(await request)) for key, request in zip(rooms, expired, strict=True)]

    async def _rescore_by_script(self, parts: list[tuple[str, list[str], bool]], now: float, expiry: float,
                                 maintain: bool) -> list[tuple[str, list[bytes]]]:
        """`_refresh`'s writes in one call of `_REFRESH_SCRIPT`: each room's expired members, by key."""
        assert self._refresh_script is not None
        keys: list[str] = []
        args: list[str] = [repr(expiry), repr(now), str(int(self.ttl_s * 2)) if maintain else "0"]
        rooms: list[str] = []
        for key, members, first in parts:
            if not members and not first:
                continue
            is_room = key.startswith(self._room_prefix)
            keys.append(key)
            args += (str(int(first) | (2 if is_room else 0)), str(len(members)), *members)
            if first and is_room:
                rooms.append(key)
        if not keys:
            return []
        replied = await self._refresh_script.execute(keys=keys, args=args)
        if not isinstance(replied, list) or len(replied) != len(rooms):
            raise StreamUnavailable(f"redis answered {replied!r} to a presence refresh")
        return [(key, [member for member in gone if isinstance(member, bytes)] if isinstance(gone, list) else [])
                for key, gone in zip(rooms, replied, strict=True)]

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


def _refresh_batches(entries: list[tuple[str, set[str]]],
                     size: int = _REFRESH_BATCH) -> list[list[tuple[str, list[str], bool]]]:
    """The entries cut into refresh batches of about `size` members and keys each: a big room's
    members are spread over several, each part tagged whether it is its key's first."""
    batches: list[list[tuple[str, list[str], bool]]] = []
    batch: list[tuple[str, list[str], bool]] = []
    taken = 0
    for key, members in entries:
        listed = list(members)
        step = size - 2  # a part and its key's other commands fill a batch at most
        for start in range(0, max(len(listed), 1), step):
            part = listed[start:start + step]
            if batch and taken + len(part) + 2 > size:
                batches.append(batch)
                batch, taken = [], 0
            batch.append((key, part, start == 0))
            taken += len(part) + 2  # its ZADD's members, and the key's other commands
    if batch:
        batches.append(batch)
    return batches


# A refresh batch on one Redis (`RedisPresence._rescore_by_script`). KEYS: the keys re-scored; ARGV:
# the entries' new expiry, now, the keys' TTL in seconds (0: a round that leaves TTLs be), then for
# each key its flags (1: the key's first part in this round, 2: a room's key), its count of members
# and the members. Each key's first part also has its upkeep: the TTL extended, and a user's key
# swept of expired entries (a room's are taken one by one, `_take_expired`). Returns the expired
# members of each room key (first parts), in order.
_REFRESH_SCRIPT = """
local expiry, now, ttl = ARGV[1], ARGV[2], tonumber(ARGV[3])
local at, expired = 4, {}
for _, key in ipairs(KEYS) do
  local flags, count = tonumber(ARGV[at]), tonumber(ARGV[at + 1])
  at = at + 2
  if count > 0 then
    local scored = {}
    for i = 0, count - 1 do
      scored[2 * i + 1] = expiry
      scored[2 * i + 2] = ARGV[at + i]
    end
    redis.call('ZADD', key, unpack(scored))
    at = at + count
  end
  if flags % 2 == 1 then
    if ttl > 0 then
      redis.call('EXPIRE', key, ttl)
    end
    if flags >= 2 then
      expired[#expired + 1] = redis.call('ZRANGE', key, '-inf', now, 'BYSCORE')
    elseif ttl > 0 then
      redis.call('ZREMRANGEBYSCORE', key, '-inf', now)
    end
  end
end
return expired
"""
