"""Per-user token buckets for sends and typing: in the process, or in Redis shared by every node.

The in-process buckets run on Trio's clock (so tests can drive it). With `redis_url`
set, a user's bucket lives in Redis and every node takes from the same one (a Lua
script refills and takes atomically, on Redis's clock). The tokens asked for at the same
moment go in one script call; on a Redis Cluster, which refuses a script whose keys span
slots, in one call per user's bucket, each on the master of that user's slot. When Redis cannot be reached
the node falls back to its own buckets (fail open: each node then counts alone, as
without Redis), logs that once, and goes back to Redis once it answers again.
"""

from __future__ import annotations

import logging
from collections import OrderedDict
from typing import Protocol

import coredis
import trio

from .errors import RateLimited
from .logs import log_event
from .storage.streams.redis_base import RedisClient

log = logging.getLogger("roomcast.ratelimit")


class TokenBucket:
    """`burst` tokens, refilled at `rate_per_s`; each action takes one."""

    __slots__ = ("burst", "rate_per_s", "tokens", "updated")

    def __init__(self, rate_per_s: float, burst: int) -> None:
        self.rate_per_s = rate_per_s
        self.burst = burst
        self.tokens = float(burst)
        self.updated = trio.current_time()

    def take(self) -> float:
        """Take a token; returns 0 on success, else the seconds until one is available."""
        now = trio.current_time()
        self.tokens = min(self.burst, self.tokens + (now - self.updated) * self.rate_per_s)
        self.updated = now
        if self.tokens >= 1:
            self.tokens -= 1
            return 0.0
        return (1 - self.tokens) / self.rate_per_s


class Limiter(Protocol):
    """What the services take a token from: one bucket per key (a user id)."""

    async def acquire(self, key: int) -> None:
        """Take one token for `key` or raise RateLimited with the wait in `retry_after`."""
        ...

    async def take(self, key: int, count: int) -> list[float]:
        """Try `count` actions of `key` in a row: for each, 0 when it took a token, else the wait."""
        ...


class RateLimiter:
    """One bucket per key (a user id), shared by that user's REST calls and WebSocket sessions.

    Buckets of keys not seen for a while are dropped, oldest first, so memory stays
    bounded by `max_keys` whatever the number of users.
    """

    def __init__(self, rate_per_s: float, burst: int, max_keys: int = 100_000) -> None:
        self.rate_per_s = rate_per_s
        self.burst = burst
        self.max_keys = max_keys
        self._buckets: OrderedDict[object, TokenBucket] = OrderedDict()

    def check(self, key: object) -> None:
        """Take one token for `key` or raise RateLimited with the wait in `retry_after`."""
        [wait] = self.take_now(key, 1)
        if wait:
            raise RateLimited(round(wait, 3))

    def take_now(self, key: object, count: int) -> list[float]:
        """`count` tokens for `key`, one at a time: for each, 0 when taken, else the wait."""
        bucket = self._buckets.pop(key, None) or TokenBucket(self.rate_per_s, self.burst)
        self._buckets[key] = bucket  # most recently used last
        if len(self._buckets) > self.max_keys:
            self._buckets.popitem(last=False)
        return [bucket.take() for _ in range(count)]

    async def acquire(self, key: int) -> None:
        self.check(key)

    async def take(self, key: int, count: int) -> list[float]:
        return self.take_now(key, count)


# KEYS: the buckets to take one token from each, in order (a key twice takes two); each a hash:
# t = tokens, u = when last refilled. ARGV: rate per second, burst. Returns the wait in seconds
# of each, as strings ("0" when a token was taken): Lua numbers come back as integers.
_TAKE = """
local now = redis.call('TIME')
now = tonumber(now[1]) + tonumber(now[2]) / 1000000
local rate, burst = tonumber(ARGV[1]), tonumber(ARGV[2])
local ttl = math.ceil(burst / rate * 1000) + 1000
local waits = {}
for i, key in ipairs(KEYS) do
  local state = redis.call('HMGET', key, 't', 'u')
  local tokens, updated = tonumber(state[1]), tonumber(state[2])
  if tokens == nil or updated == nil then tokens, updated = burst, now end
  tokens = math.min(burst, tokens + math.max(0, now - updated) * rate)
  local wait = 0
  if tokens >= 1 then tokens = tokens - 1 else wait = (1 - tokens) / rate end
  redis.call('HSET', key, 't', tostring(tokens), 'u', tostring(now))
  redis.call('PEXPIRE', key, ttl)
  waits[i] = tostring(wait)
end
return waits
"""


class _Takes:
    """The tokens asked for while one script call gathers: its keys, then each one's wait (None: no answer)."""

    __slots__ = ("done", "keys", "waits")

    def __init__(self) -> None:
        self.keys: list[str] = []
        self.waits: list[float | None] = []
        self.done = trio.Event()


class FailOpen:
    """A shared store's outage: logged once, and its end once, however many calls meet it.

    While it lasts the store is asked again at most once per `retry_s` (the other calls go
    without it at once), so a Redis that hangs does not add its timeout to every call.
    """

    def __init__(self, what: str, retry_s: float = 1.0) -> None:
        self.what = what
        self.retry_s = retry_s
        self.down = False
        self._next_try = 0.0

    def should_try(self) -> bool:
        """Whether to ask the store now: always while it answers; once per `retry_s` while it does not."""
        if not self.down:
            return True
        now = trio.current_time()
        if now < self._next_try:
            return False
        self._next_try = now + self.retry_s
        return True

    def failed(self, error: BaseException | None) -> None:
        self._next_try = trio.current_time() + self.retry_s
        if not self.down:
            self.down = True
            log_event(log, "ratelimit.store_unavailable", logging.WARNING, store=self.what,
                      error=repr(error) if error is not None else "timed out",
                      effect="allowing; each node counts on its own until it answers")

    def succeeded(self) -> None:
        if self.down:
            self.down = False
            log_event(log, "ratelimit.store_recovered", store=self.what)


class SharedRateLimiter:
    """Token buckets in Redis, shared by every node; this node's own buckets while Redis is down.

    The tokens that the node's senders ask for meanwhile go to Redis together: the first
    asker of a scheduling round sends one script call for everyone who asked by then (and
    for all who asked while the previous call was out), so a node sending flat out makes
    one round trip per batch, not per send. Each token is still taken from its own user's
    bucket, on Redis's clock, in the order asked.
    """

    def __init__(self, client: RedisClient, key_prefix: str, rate_per_s: float, burst: int, *,
                 timeout_s: float = 1.0) -> None:
        self.rate_per_s = rate_per_s
        self.burst = burst
        self.key_prefix = key_prefix
        self.timeout_s = timeout_s
        self._script = client.register_script(_TAKE)
        self._cluster = isinstance(client, coredis.RedisCluster)
        self.local = RateLimiter(rate_per_s, burst)
        self.health = FailOpen(f"redis {key_prefix}")
        self.calls = 0  # batches sent, each for one or more tokens
        self._gathering: _Takes | None = None  # open to more askers until its call is sent
        self._in_flight: trio.Event | None = None  # set when the call out now is answered

    async def acquire(self, key: int) -> None:
        [wait] = await self.take(key, 1)
        if wait > 0:
            raise RateLimited(round(wait, 3))

    async def take(self, key: int, count: int) -> list[float]:
        if not self.health.should_try():
            return self.local.take_now(key, count)
        takes = self._gathering
        first = takes is None
        if takes is None:
            takes = self._gathering = _Takes()
        start = len(takes.keys)
        takes.keys += [f"{self.key_prefix}{key}"] * count
        if first:
            await self._call(takes)
        else:
            await takes.done.wait()
        waits = takes.waits[start:start + count]
        if any(wait is None for wait in waits):  # Redis did not answer: this node counts on its own
            return self.local.take_now(key, count)
        return [wait for wait in waits if wait is not None]

    async def _call(self, takes: _Takes) -> None:
        """Send `takes` once everyone who asks in this round (and while the last call is out) joined."""
        error: Exception | None = None
        # Shielded, and bounded by two timeouts: the other askers wait on this call even if the
        # task that makes it is cancelled (its own session ended, say).
        with trio.CancelScope(shield=True):
            await trio.lowlevel.checkpoint()  # the others woken in this round ask before it closes
            while self._in_flight is not None:  # one call out at a time: what asks meanwhile joins
                await self._in_flight.wait()
            self._gathering = None
            self._in_flight = answered = trio.Event()
            try:
                with trio.move_on_after(self.timeout_s):  # a slow Redis must not hold a send
                    try:
                        self.calls += 1
                        takes.waits = await self._execute(takes.keys)
                    except Exception as exc:  # unreachable, timed out, a script error: never refuse everyone
                        error = exc
            finally:
                self._in_flight = None
                answered.set()
                if len(takes.waits) != len(takes.keys):
                    takes.waits = [None] * len(takes.keys)
                    self.health.failed(error)
                else:
                    self.health.succeeded()
                takes.done.set()

    async def _execute(self, keys: list[str]) -> list[float | None]:
        """Each key's wait, in order: one script call, or on a cluster one per distinct key (a
        user's tokens stay in one call, in order; their waits depend on that bucket alone)."""
        if not self._cluster:
            return await self._execute_one(keys)
        places: dict[str, list[int]] = {}
        for index, key in enumerate(keys):
            places.setdefault(key, []).append(index)
        waits: list[float | None] = [None] * len(keys)

        async def take_for(key: str, indexes: list[int]) -> None:
            for index, wait in zip(indexes, await self._execute_one([key] * len(indexes)), strict=True):
                waits[index] = wait

        async with trio.open_nursery() as nursery:
            for key, indexes in places.items():
                nursery.start_soon(take_for, key, indexes)
        return waits

    async def _execute_one(self, keys: list[str]) -> list[float | None]:
        answer = await self._script.execute(keys=keys, args=[repr(self.rate_per_s), str(self.burst)])
        if not isinstance(answer, list) or len(answer) != len(keys):
            raise TypeError(f"the script answered {answer!r}")
        return [float(wait.decode() if isinstance(wait, bytes) else str(wait)) for wait in answer]
