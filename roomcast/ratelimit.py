"""Per-user token buckets for sends and typing: in the process, or in Redis shared by every node.

The in-process buckets run on Trio's clock (so tests can drive it). With `redis_url`
set, a user's bucket lives in Redis and every node takes from the same one (a Lua
script refills and takes atomically, on Redis's clock). The tokens asked for at the same
moment go in one script call; on a Redis Cluster, which refuses a script whose keys span
slots, in one call per user's bucket, each on the master of that user's slot. A busy user's
calls lease a few tokens ahead, spent here with no round trip (`SharedRateLimiter`). When
Redis cannot be reached the node falls back to its own buckets (fail open: each node then counts alone, as
without Redis), logs that once, and goes back to Redis once it answers again.
"""

from __future__ import annotations

import logging
import math
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
        [wait] = self.take_many(1)
        return wait

    def take_many(self, count: int) -> list[float]:
        """Take `count` tokens one after another, at this moment: for each, 0 when taken, else the wait."""
        now = trio.current_time()
        tokens = min(self.burst, self.tokens + (now - self.updated) * self.rate_per_s)
        self.updated = now
        if tokens >= count:  # the usual case: all of them
            self.tokens = tokens - count
            return [0.0] * count
        waits: list[float] = []
        for _ in range(count):
            if tokens >= 1:
                tokens -= 1
                waits.append(0.0)
            else:
                waits.append((1 - tokens) / self.rate_per_s)
        self.tokens = tokens
        return waits


class Limiter(Protocol):
    """What the services take a token from: one bucket per key (a user id)."""

    async def acquire(self, key: int) -> None:
        """Take one token for `key` or raise RateLimited with the wait in `retry_after`."""
        ...

    async def take(self, key: int, count: int) -> list[float]:
        """Try `count` actions of `key` in a row: for each, 0 when it took a token, else the wait."""
        ...

    def take_if_ready(self, key: int, count: int) -> list[float] | None:
        """As `take`, when that needs no wait (no round trip); else None, and nothing is taken."""
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
        buckets = self._buckets
        bucket = buckets.get(key)
        if bucket is None:
            bucket = buckets[key] = TokenBucket(self.rate_per_s, self.burst)
            if len(buckets) > self.max_keys:
                buckets.popitem(last=False)
        else:
            buckets.move_to_end(key)  # most recently used last
        return bucket.take_many(count)

    async def acquire(self, key: int) -> None:
        self.check(key)

    async def take(self, key: int, count: int) -> list[float]:
        return self.take_now(key, count)

    def take_if_ready(self, key: int, count: int) -> list[float] | None:
        return self.take_now(key, count)


# KEYS: the buckets to take from, each once; ARGV: rate per second, burst, then for each key
# the tokens it needs (each taken or refused in turn) and how many more it may lease, from the
# upper half of the bucket only (near its limit every token is taken exactly when needed). Each
# bucket is a hash: t = tokens, u = when last refilled. Returns, key after key, the wait in
# seconds of each needed token ("0" when taken) and then the count leased, all as strings (Lua
# numbers come back as integers).
_TAKE = """
local now = redis.call('TIME')
now = tonumber(now[1]) + tonumber(now[2]) / 1000000
local rate, burst = tonumber(ARGV[1]), tonumber(ARGV[2])
local ttl = math.ceil(burst / rate * 1000) + 1000
local out = {}
for i, key in ipairs(KEYS) do
  local need, extra = tonumber(ARGV[1 + 2 * i]), tonumber(ARGV[2 + 2 * i])
  local state = redis.call('HMGET', key, 't', 'u')
  local tokens, updated = tonumber(state[1]), tonumber(state[2])
  if tokens == nil or updated == nil then tokens, updated = burst, now end
  tokens = math.min(burst, tokens + math.max(0, now - updated) * rate)
  for _ = 1, need do
    if tokens >= 1 then
      tokens = tokens - 1
      out[#out + 1] = '0'
    else
      out[#out + 1] = tostring((1 - tokens) / rate)
    end
  end
  local leased = math.max(0, math.min(extra, math.floor(tokens - burst / 2)))
  tokens = tokens - leased
  out[#out + 1] = tostring(leased)
  redis.call('HSET', key, 't', tostring(tokens), 'u', tostring(now))
  redis.call('PEXPIRE', key, ttl)
end
return out
"""

# Tokens a node takes from a busy user's bucket ahead of need are spent within this long, or
# dropped: they count against the user, so they must not linger. At most burst / _LEASE_SHARE of
# them at once, so a user sending through two nodes loses a tenth of a burst to each at worst.
_LEASE_S = 1.0
_LEASE_SHARE = 10


class _Lease:
    """A user's tokens taken ahead on this node: spent with no round trip until `until`."""

    __slots__ = ("size", "tokens", "until")

    def __init__(self) -> None:
        self.tokens = 0
        self.until = -math.inf  # when the tokens lapse: a second after the last call for the user
        self.size = 0  # the extra tokens asked for in that call; doubles while the user keeps asking


class _Ask:
    """One user's part of a script call: the tokens needed, and the extra ones to lease."""

    __slots__ = ("extra", "need", "user")

    def __init__(self, user: int, extra: int) -> None:
        self.user = user
        self.need = 0
        self.extra = extra


class _Takes:
    """The tokens asked for while one script call gathers: per bucket key, its ask; then the waits
    of each key's needed tokens and the count leased (no entry: no answer)."""

    __slots__ = ("asks", "done", "leased", "waits")

    def __init__(self) -> None:
        self.asks: dict[str, _Ask] = {}
        self.waits: dict[str, list[float]] = {}
        self.leased: dict[str, int] = {}
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

    A user who asks again within `_LEASE_S` of the last call is busy: the next call also
    leases up to 1, 2, 4, ... extra tokens (at most burst / `_LEASE_SHARE`), which this node
    then hands out with no round trip until they lapse. Every token still comes out of the one
    shared bucket, so no user ever gets more than the budget. A leased token left unspent is
    lost to its user, so leases are small, short, and drawn only from the upper half of the
    bucket: a user near the limit has every token taken exactly when needed, and so has every
    user of a small burst (under ten).
    """

    def __init__(self, client: RedisClient, key_prefix: str, rate_per_s: float, burst: int, *,
                 timeout_s: float = 1.0, max_keys: int = 100_000) -> None:
        self.rate_per_s = rate_per_s
        self.burst = burst
        self.key_prefix = key_prefix
        self.timeout_s = timeout_s
        self.max_keys = max_keys
        self._script = client.register_script(_TAKE)
        self._cluster = isinstance(client, coredis.RedisCluster)
        self.local = RateLimiter(rate_per_s, burst, max_keys)
        self.health = FailOpen(f"redis {key_prefix}")
        self.calls = 0  # batches sent, each for one or more tokens
        self._lease_max = burst // _LEASE_SHARE
        self._leases: OrderedDict[int, _Lease] = OrderedDict()  # by user, least recently asked first
        self._gathering: _Takes | None = None  # open to more askers until its call is sent
        self._in_flight: trio.Event | None = None  # set when the call out now is answered

    async def acquire(self, key: int) -> None:
        [wait] = await self.take(key, 1)
        if wait > 0:
            raise RateLimited(round(wait, 3))

    def take_if_ready(self, key: int, count: int) -> list[float] | None:
        """Without a round trip: this node's own buckets while Redis is down, or a busy user's lease
        when it covers all `count` (a lease partly spent would leave the rest to a call anyway)."""
        if not self.health.should_try():
            return self.local.take_now(key, count)
        lease = self._leases.get(key)
        if lease is not None and lease.tokens >= count and trio.current_time() < lease.until:
            lease.tokens -= count
            return [0.0] * count
        return None

    async def take(self, key: int, count: int) -> list[float]:
        if not self.health.should_try():
            return self.local.take_now(key, count)
        now = trio.current_time()
        lease = self._leases.get(key)
        spent = 0
        if lease is not None and lease.tokens and now < lease.until:
            spent = min(count, lease.tokens)
            lease.tokens -= spent
            if spent == count:
                return [0.0] * count
        need = count - spent
        takes = self._gathering
        first = takes is None
        if takes is None:
            takes = self._gathering = _Takes()
        bucket = f"{self.key_prefix}{key}"
        ask = takes.asks.get(bucket)
        if ask is None:
            ask = takes.asks[bucket] = _Ask(key, self._extra(lease, now))
        start = ask.need
        ask.need += need
        if first:
            await self._call(takes)
        else:
            await takes.done.wait()
        waits = takes.waits.get(bucket)
        if waits is None:  # Redis did not answer: this node counts on its own
            return [0.0] * spent + self.local.take_now(key, need)
        return [0.0] * spent + waits[start:start + need]

    def _extra(self, lease: _Lease | None, now: float) -> int:
        """How many tokens to lease beyond the need: none for a user not asked for within a lease's life."""
        if lease is None or now >= lease.until or not self._lease_max:
            return 0
        return min(self._lease_max, max(1, lease.size * 2))

    def _credit(self, takes: _Takes) -> None:
        """Keep what each user of an answered call leased, and how much to ask for next time."""
        until = trio.current_time() + _LEASE_S
        leases = self._leases
        for bucket, ask in takes.asks.items():
            lease = leases.pop(ask.user, None)
            if lease is None:
                lease = _Lease()
            elif trio.current_time() >= lease.until:
                lease.tokens = 0  # lapsed meanwhile
            refused = any(wait > 0 for wait in takes.waits[bucket])
            lease.tokens += takes.leased[bucket]
            lease.size = 0 if refused else ask.extra
            lease.until = until
            leases[ask.user] = lease  # most recently asked last
        while len(leases) > self.max_keys:
            leases.popitem(last=False)

    async def _call(self, takes: _Takes) -> None:
        """Send `takes` once everyone who asks in this round (and while the last call is out) joined."""
        error: Exception | None = None
        answered_all = False
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
                        takes.waits, takes.leased = await self._execute(takes.asks)
                        answered_all = True
                    except Exception as exc:  # unreachable, timed out, a script error: never refuse everyone
                        error = exc
            finally:
                self._in_flight = None
                answered.set()
                if answered_all:
                    self.health.succeeded()
                    self._credit(takes)
                else:
                    takes.waits, takes.leased = {}, {}
                    self.health.failed(error)
                takes.done.set()

    async def _execute(self, asks: dict[str, _Ask]) -> tuple[dict[str, list[float]], dict[str, int]]:
        """Each bucket's waits and leased count: one script call, or on a cluster one per bucket
        (a script's keys must share a slot; a user's tokens stay in one call, in order)."""
        if not self._cluster:
            return await self._execute_one(asks)
        waits: dict[str, list[float]] = {}
        leased: dict[str, int] = {}

        async def take_for(bucket: str, ask: _Ask) -> None:
            one_waits, one_leased = await self._execute_one({bucket: ask})
            waits.update(one_waits)
            leased.update(one_leased)

        async with trio.open_nursery() as nursery:
            for bucket, ask in asks.items():
                nursery.start_soon(take_for, bucket, ask)
        return waits, leased

    async def _execute_one(self, asks: dict[str, _Ask]) -> tuple[dict[str, list[float]], dict[str, int]]:
        args = [repr(self.rate_per_s), str(self.burst)]
        for ask in asks.values():
            args += (str(ask.need), str(ask.extra))
        answer = await self._script.execute(keys=list(asks), args=args)
        expected = sum(ask.need + 1 for ask in asks.values())
        if not isinstance(answer, list) or len(answer) != expected:
            raise TypeError(f"the script answered {answer!r}")
        numbers = [float(value.decode() if isinstance(value, bytes) else str(value)) for value in answer]
        waits: dict[str, list[float]] = {}
        leased: dict[str, int] = {}
        at = 0
        for bucket, ask in asks.items():
            waits[bucket] = numbers[at:at + ask.need]
            leased[bucket] = int(numbers[at + ask.need])
            at += ask.need + 1
        return waits, leased
