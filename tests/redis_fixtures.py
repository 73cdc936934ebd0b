"""Fixtures for a module that runs on one Redis and on a Redis Cluster: import them into it (and name
them in its `__all__`), as the outage fixtures are."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from tests.conftest import REDIS_KINDS, redis_kind_url
from tests.redis_helpers import delete_keys


@pytest.fixture(params=REDIS_KINDS)
def redis_url(request: pytest.FixtureRequest) -> str:
    """The one Redis, then the cluster."""
    return redis_kind_url(request)


@pytest.fixture
async def redis_key_prefix(redis_key_prefix: str, redis_url: str) -> AsyncIterator[str]:
    """The test's key prefix; its keys are deleted afterwards."""
    yield redis_key_prefix
    await delete_keys(redis_url, redis_key_prefix)
