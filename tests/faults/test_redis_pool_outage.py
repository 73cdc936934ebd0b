"""Redis connections lost in the middle of a command (the stream reader's blocking XREAD) must
not cost the node its connection pool: after as many such outages as the pool has connections,
Redis is still reachable as soon as it is back."""

from __future__ import annotations

import pytest
import trio

from roomcast.storage.streams import StreamUnavailable
from roomcast.storage.streams.redis import open_redis_backend
from tests.helpers import REDIS_URL

from .outage_fixtures import redis_proxy
from .proxy import TcpProxy

__all__ = ["redis_proxy"]

pytestmark = [pytest.mark.redis]

POOL = 2


async def test_outages_during_blocking_reads_leave_the_pool_whole(redis_proxy: TcpProxy,
                                                                  redis_key_prefix: str) -> None:
    async with open_redis_backend(redis_proxy.url_for(REDIS_URL), prefix=redis_key_prefix, maxlen=100,
                                  max_connections=POOL, timeout_s=10, connect_timeout_s=2) as backend:
        await backend.ping()
        async def read() -> None:
            with pytest.raises(StreamUnavailable), trio.fail_after(5):
                await backend.read({1: "$"}, count=10, timeout=4)

        for _ in range(POOL + 1):
            async with trio.open_nursery() as nursery:
                nursery.start_soon(read)
                await trio.sleep(0.3)  # the XREAD is blocked in Redis, holding its connection
                redis_proxy.cut()
            redis_proxy.restore()
            with trio.fail_after(5):  # a pool with no connection left to give waits forever
                await backend.ping()
