"""/ws tests run on two stacks: SQLite with in-process streams, and PostgreSQL with Redis."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import coredis
import pytest


@pytest.fixture(params=[
    pytest.param(("sqlite", "memory"), id="sqlite-memory"),
    pytest.param(("postgresql", "redis"), id="postgresql-redis", marks=[pytest.mark.postgres, pytest.mark.redis]),
])
def stack(request: pytest.FixtureRequest) -> tuple[str, str]:
    return request.param


@pytest.fixture
def db_backend(stack: tuple[str, str]) -> str:
    return stack[0]


@pytest.fixture
def ws_settings() -> dict[str, Any]:
    """Override in a module to change settings for its nodes."""
    return {}


@pytest.fixture
async def settings_overrides(stack: tuple[str, str], request: pytest.FixtureRequest,
                             ws_settings: dict[str, Any]) -> AsyncIterator[dict[str, Any]]:
    overrides = {"send_burst": 10_000, "send_rate_per_s": 10_000.0, **ws_settings}
    if stack[1] == "memory":
        yield overrides
        return
    url = request.getfixturevalue("redis_url")
    prefix = request.getfixturevalue("redis_key_prefix")
    yield {"redis_url": url, "redis_key_prefix": prefix, "stream_read_block_s": 0.5, **overrides}
    async with coredis.Redis.from_url(url) as client:
        keys = [key async for key in client.scan_iter(match=f"{prefix}*")]
        if keys:
            await client.delete(keys)
