"""Outage fixtures: a live node whose PostgreSQL and Redis are reached through cuttable proxies.

Imported by the outage tests; other fault tests keep the usual fixtures."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any
from urllib.parse import urlsplit

import coredis
import pytest
import trio

from tests.helpers import POSTGRES_URL, REDIS_URL

from .proxy import TcpProxy


@pytest.fixture
def db_backend() -> str:
    return "postgresql"


async def _proxy_to(url: str, nursery: trio.Nursery) -> TcpProxy:
    parts = urlsplit(url.replace("postgresql+psycopg://", "postgresql://"))
    proxy = TcpProxy(parts.hostname or "127.0.0.1", parts.port or 0)
    await nursery.start(proxy.run)
    return proxy


@pytest.fixture
async def pg_proxy(nursery: trio.Nursery) -> AsyncIterator[TcpProxy]:
    proxy = await _proxy_to(POSTGRES_URL, nursery)
    yield proxy
    proxy.restore()


@pytest.fixture
async def redis_proxy(nursery: trio.Nursery) -> AsyncIterator[TcpProxy]:
    proxy = await _proxy_to(REDIS_URL, nursery)
    yield proxy
    proxy.restore()


@pytest.fixture
async def database_url(database_url: str, pg_proxy: TcpProxy) -> str:
    """The test schema's URL, through the proxy."""
    return pg_proxy.url_for(database_url)


@pytest.fixture
async def settings_overrides(redis_url: str, redis_key_prefix: str,
                             redis_proxy: TcpProxy) -> AsyncIterator[dict[str, Any]]:
    """Redis through its proxy, with retries and sweeps short enough for a test."""
    yield {
        "redis_url": redis_proxy.url_for(redis_url),
        "redis_key_prefix": redis_key_prefix,
        "stream_read_block_s": 0.5,
        "stream_retry_base_s": 0.05,
        "stream_retry_max_s": 0.5,
        "outbox_sweep_s": 1.0,
        "send_burst": 10_000,
        "send_rate_per_s": 10_000.0,
        "typing_burst": 10_000,
        "typing_rate_per_s": 10_000.0,
    }
    async with coredis.Redis.from_url(redis_url) as client:
        keys = [key async for key in client.scan_iter(match=f"{redis_key_prefix}*")]
        if keys:
            await client.delete(keys)
