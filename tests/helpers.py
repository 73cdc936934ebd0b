"""Small helpers shared by test modules (fixtures live in conftest.py)."""

from __future__ import annotations

import inspect
import os
from collections.abc import Callable
from typing import Any

import trio

POSTGRES_URL = os.environ.get("ROOMCAST_TEST_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test")
REDIS_URL = os.environ.get("ROOMCAST_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")
JWT_SECRET = "test-secret-" + "x" * 32


async def error_of(response: Any) -> tuple[int, str]:
    """(status, error code) of a PROTOCOL §1 error envelope, checking its shape on the way."""
    body = await response.get_json()
    assert set(body) == {"error"} and {"code", "message"} <= set(body["error"]), body
    return response.status_code, body["error"]["code"]


async def eventually(condition: Callable[[], Any], timeout: float = 10.0, until: Any = True) -> None:
    """Wait until `condition()` (awaited if it is a coroutine) equals `until` (or is truthy).

    For effects that cross a real socket, such as a peer's close reaching the server.
    It gives up after `timeout`; passing never depends on how fast the machine is,
    only on the effect happening.
    """
    with trio.fail_after(timeout):
        while True:
            value = condition()
            if inspect.isawaitable(value):
                value = await value
            if (bool(value) if until is True else value == until):
                return
            await trio.sleep(0.005)
