"""Logging set-up: the Redis client's own retry lines stay below roomcast's outage lines."""

from __future__ import annotations

import logging
from collections.abc import Iterator

import pytest

from roomcast.logs import configure_logging


@pytest.fixture
def restored_logging() -> Iterator[None]:
    root, coredis = logging.getLogger(), logging.getLogger("coredis")
    handlers, level, coredis_level = root.handlers[:], root.level, coredis.level
    yield
    root.handlers[:] = handlers
    root.setLevel(level)
    coredis.setLevel(coredis_level)


@pytest.mark.parametrize(("level", "expected"), [("info", logging.WARNING), ("debug", logging.WARNING),
                                                 ("error", logging.ERROR)])
def test_the_redis_clients_retry_lines_are_not_logged_at_info(restored_logging: None, level: str,
                                                              expected: int) -> None:
    configure_logging("text", level)
    assert logging.getLogger("coredis").getEffectiveLevel() == expected
