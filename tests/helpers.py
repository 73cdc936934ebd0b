"""Small helpers shared by test modules (fixtures live in conftest.py)."""

from __future__ import annotations

import inspect
import os
import random
import socket
from collections.abc import Callable
from pathlib import Path
from typing import Any

import trio

POSTGRES_URL = os.environ.get("ROOMCAST_TEST_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test")
REDIS_URL = os.environ.get("ROOMCAST_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")
JWT_SECRET = "test-secret-" + "x" * 32

_private_ports: set[int] = set()


def private_port() -> int:
    """A free port on 127.0.0.1 for a server a test stops and starts again on the same port.

    A port from bind(0) is not safe for that: while the server is down, any process (parallel test
    workers included) may get it for its own bind(0) or outgoing connection, as the kernel hands
    out the ephemeral range to all of them. This one lies just below that range, where only another
    caller of this function could pick it (at random, so hardly ever), and never twice in a process.
    """
    try:
        low = int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        low = 32768
    for _ in range(200):
        port = random.randrange(max(1024, low - 10_000), low) if low > 2048 else 0
        if port in _private_ports:
            continue
        with socket.socket() as sock:
            try:
                sock.bind(("127.0.0.1", port))
            except OSError:
                continue
            port = sock.getsockname()[1]
        _private_ports.add(port)
        return port
    raise RuntimeError("no free port below the ephemeral range")


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
