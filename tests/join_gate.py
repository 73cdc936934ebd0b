"""Holding a node's join batches where a test wants the next joins to pile up (services/joins.py)."""

from __future__ import annotations

from collections.abc import Callable, Collection, Sequence
from typing import TypeVar

import pytest
import trio

from roomcast.node import Node
from roomcast.services import joins
from roomcast.services.joins import JoinBatcher, ensure_joins

T = TypeVar("T")


class JoinGate:
    """Holds each batch of joins at its presence write (`join_many`, after the membership check),
    or with `at="membership"` at its membership check, until `open()`: the joins sent meanwhile
    wait in the batcher's mailbox, for one batch after."""

    def __init__(self, node: Node, monkeypatch: pytest.MonkeyPatch, at: str = "presence") -> None:
        self.batcher: JoinBatcher = ensure_joins(node)
        self.writes: list[list[tuple[int, int, str]]] = []  # each batch's entries, as asked
        self.held = trio.Event()  # a batch waits at the gate
        self.written = 0  # batches whose entries were written since (the gate let them through)
        self._opened = trio.Event()
        real = node.presence.join_many

        async def join_many(joins: Sequence[tuple[int, int, str]],
                            read: Collection[int] = ()) -> dict[int, list[int]]:
            self.writes.append(list(joins))
            self.held.set()
            await self._opened.wait()
            try:
                return await real(joins, read)
            finally:
                self.written += 1

        monkeypatch.setattr(node.presence, "join_many", join_many)
        if at == "membership":
            real_read = node.database.read

            async def read(work: Callable[..., T], *args: object) -> T:
                if work is joins.room_access_rows:
                    self.held.set()
                    await self._opened.wait()
                return await real_read(work, *args)

            monkeypatch.setattr(node.database, "read", read)

    def open(self) -> None:
        self._opened.set()

    def queued(self) -> int:
        """Joins waiting in the batcher's mailbox behind the held batch."""
        return self.batcher.actor.backlog
