"""A stream backend and a database that can be switched off, to test outages without a real server."""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping, Sequence
from contextlib import asynccontextmanager
from typing import Any

import pytest
import trio
from sqlalchemy.exc import OperationalError

from roomcast import node as node_module
from roomcast.config import Settings
from roomcast.node import Node, open_node
from roomcast.storage.database import Database
from roomcast.storage.streams import Append, MemoryStreamBackend, ReadCursor, StreamEntry, StreamUnavailable


class SwitchableBackend:
    """The in-process backend, with `down` making every operation fail as if unreachable."""

    name = "switchable"

    def __init__(self, inner: MemoryStreamBackend) -> None:
        self.inner = inner
        self.down = False
        self.failed_calls = 0

    def _check(self) -> None:
        if self.down:
            self.failed_calls += 1
            raise StreamUnavailable("switched off")

    async def append(self, items: Sequence[Append]) -> list[str]:
        await trio.lowlevel.checkpoint()
        self._check()
        return await self.inner.append(items)

    async def last_ids(self, room_ids: Sequence[int]) -> dict[int, str]:
        await trio.lowlevel.checkpoint()
        self._check()
        return await self.inner.last_ids(room_ids)

    async def read(self, positions: Mapping[int, str], *, count: int, timeout: float,
                   cursor: ReadCursor | None = None) -> dict[int, list[StreamEntry]]:
        await trio.lowlevel.checkpoint()
        self._check()
        return await self.inner.read(positions, count=count, timeout=timeout, cursor=cursor)

    def interrupt(self) -> None:
        self.inner.interrupt()

    async def ping(self) -> None:
        self._check()
        await self.inner.ping()


class SlowWakeBackend(MemoryStreamBackend):
    """The in-process backend, with interrupting a blocked read taking as long as `wake_delay_s`.

    On Redis the interrupt is an append to a wake stream, answered by the blocked XREAD a
    round trip later; here the delay is as long as a test needs to see what happens meanwhile.
    """

    def __init__(self, wake_delay_s: float) -> None:
        super().__init__()
        self.wake_delay_s = wake_delay_s

    def interrupt(self) -> None:
        async def later() -> None:
            await trio.sleep(self.wake_delay_s)
            MemoryStreamBackend.interrupt(self)
        trio.lowlevel.spawn_system_task(later)


@asynccontextmanager
async def open_node_with(backend: object, settings: Settings,
                         monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[Node]:
    """open_node, but on the given stream backend."""
    @asynccontextmanager
    async def given_backend(_: Settings) -> AsyncIterator[object]:
        yield backend

    with monkeypatch.context() as patch:
        patch.setattr(node_module, "open_stream_backend", given_backend)
        async with open_node(settings, migrate=False) as node:
            yield node


class DatabaseOutage:
    """Makes a node's database fail every call, as a refused connection does, while `down`.

    It replaces the gateway's worker-thread function, so everything above it (the
    mapping to DatabaseUnavailable, the actors) runs as in a real outage.
    """

    def __init__(self, database: Database, monkeypatch: pytest.MonkeyPatch) -> None:
        self.down = False
        self.failed_calls = 0
        self._transaction = database._transaction
        self._checkpoint = database._checkpoint
        monkeypatch.setattr(database, "_transaction", self._fail_or_run)
        monkeypatch.setattr(database, "_checkpoint", self._fail_or_checkpoint)

    def _fail_or_run(self, work: Any, args: tuple[Any, ...], writes: bool) -> Any:
        self._fail_if_down()
        return self._transaction(work, args, writes)

    def _fail_or_checkpoint(self) -> tuple[int, int]:
        self._fail_if_down()
        return self._checkpoint()

    def _fail_if_down(self) -> None:
        if self.down:
            self.failed_calls += 1
            raise OperationalError("SELECT 1", {}, ConnectionRefusedError("connection refused"))
