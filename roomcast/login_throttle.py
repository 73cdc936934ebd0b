"""Login throttling: failed attempts counted per username and per client address (`limits`).

Only failures count: a login that succeeds adds nothing, so a user who signs in often is
never locked out by it. Once either count reaches its limit within the window (a moving
window: the oldest failure leaves it first), attempts are refused with 429 and
`Retry-After` before any password is checked, so a guessing run costs no hashing either.

In one process the counts live in `limits`' memory storage; with Redis configured, in
Redis (`limits`' async storage over the node's coredis pool, its cluster storage on a Redis
Cluster: each window is one key), shared by every node. A Redis that cannot be reached lets
attempts through (fail open), logged once.
"""

from __future__ import annotations

import ipaddress
import time
from collections.abc import Coroutine
from typing import TypeVar

import coredis
import trio
from limits import RateLimitItem, parse
from limits.aio.storage import RedisClusterStorage, RedisStorage
from limits.aio.strategies import MovingWindowRateLimiter as SharedWindow
from limits.storage import MemoryStorage
from limits.strategies import MovingWindowRateLimiter as LocalWindow

from .errors import RateLimited
from .ratelimit import FailOpen
from .storage.streams.redis_base import RedisClient

T = TypeVar("T")


class LoginThrottle:
    """Failed logins per (tenant, username) and per client address."""

    def __init__(self, per_username: str, per_address: str, *, redis: RedisClient | None = None,
                 key_prefix: str = "roomcast:", timeout_s: float = 1.0) -> None:
        self.per_username: RateLimitItem = parse(per_username)
        self.per_address: RateLimitItem = parse(per_address)
        self.timeout_s = timeout_s
        self._local: LocalWindow | None = None
        self._shared: SharedWindow | None = None
        if redis is None:
            self._local = LocalWindow(MemoryStorage())
        elif isinstance(redis, coredis.RedisCluster):
            # The URL only satisfies the parser: with a pool given, the nodes are the pool's.
            cluster = RedisClusterStorage("async+redis+cluster://localhost:7000", implementation="coredis",
                                          key_prefix=f"{key_prefix}login",
                                          connection_pool=redis.connection_pool)  # type: ignore[arg-type]
            self._shared = SharedWindow(cluster)
        else:
            storage = RedisStorage("async+redis://", implementation="coredis", key_prefix=f"{key_prefix}login",
                                   # typed as scalar options, but the documented way to share a pool
                                   connection_pool=redis.connection_pool)  # type: ignore[arg-type]
            self._shared = SharedWindow(storage)
        self.health = FailOpen("redis login throttle")

    def _keys(self, tenant: str, username: str, address: str | None) -> list[tuple[RateLimitItem, str, str]]:
        keys = [(self.per_username, "user", f"{tenant}/{username}")]
        if address:
            keys.append((self.per_address, "address", _address_key(address)))
        return keys

    async def check(self, tenant: str, username: str, address: str | None) -> None:
        """RateLimited when this username or this address has failed too often lately."""
        for item, kind, identity in self._keys(tenant, username, address):
            wait = await self._wait(item, kind, identity)
            if wait is not None:
                raise RateLimited(wait, f"too many failed logins for this {'username' if kind == 'user' else 'address'}"
                                        "; try again later")

    async def failed(self, tenant: str, username: str, address: str | None) -> None:
        """Count one failed attempt against the username and the address."""
        for item, kind, identity in self._keys(tenant, username, address):
            if self._local is not None:
                self._local.hit(item, kind, identity)
            elif self._shared is not None:
                await self._shared_call(self._shared.hit(item, kind, identity))

    async def _wait(self, item: RateLimitItem, kind: str, identity: str) -> float | None:
        """Seconds until this key may try again, or None if it may now."""
        if self._local is not None:
            if self._local.test(item, kind, identity):
                return None
            stats = self._local.get_window_stats(item, kind, identity)
        elif self._shared is not None:
            allowed = await self._shared_call(self._shared.test(item, kind, identity))
            if allowed is None or allowed:
                return None
            shared_stats = await self._shared_call(self._shared.get_window_stats(item, kind, identity))
            if shared_stats is None:
                return None
            stats = shared_stats
        else:
            return None
        return max(0.001, round(stats.reset_time - time.time(), 3))

    async def _shared_call(self, call: Coroutine[object, object, T]) -> T | None:
        """What Redis answered; None (fail open, the outage logged once) when it failed or was too slow."""
        if not self.health.should_try():
            call.close()  # not sent: no "never awaited" warning
            return None
        with trio.move_on_after(self.timeout_s):
            try:
                result = await call
            except Exception as exc:  # unreachable, or anything else of the store's: never refuse everyone
                self.health.failed(exc)
                return None
            self.health.succeeded()
            return result
        self.health.failed(None)
        return None


def _address_key(address: str) -> str:
    """An IPv4 address as it is; an IPv6 one by its /64, which one client usually holds whole."""
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return address
    if isinstance(ip, ipaddress.IPv6Address):
        if ip.ipv4_mapped is not None:
            return str(ip.ipv4_mapped)
        return str(ipaddress.ip_network(f"{ip}/64", strict=False))
    return str(ip)
