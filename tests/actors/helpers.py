"""Writing outbox rows as the send path does, and subscribers that record what they get."""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from typing import Any

import pytest
import trio
from sqlalchemy import update
from sqlalchemy.orm import Session

from roomcast.node import Node
from roomcast.storage.models import OutboxEvent, Room
from roomcast.storage.streams import Append
from roomcast.timestamps import utcnow


def count_appends(node: Node, monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """The size of each append the node's stream backend gets from now on (appended as they go through)."""
    appends: list[int] = []
    real_append = node.streams.append

    async def append(items: Sequence[Append]) -> list[str]:
        appends.append(len(items))
        return await real_append(items)

    monkeypatch.setattr(node.streams, "append", append)
    return appends


async def create_rooms(node: Node, count: int = 1) -> list[int]:
    def work(session: Session) -> list[int]:
        rooms = [Room(tenant="default", kind="group", name=f"room {i}") for i in range(count)]
        session.add_all(rooms)
        session.flush()
        return [room.id for room in rooms]

    return await node.database.write(work)


def _commit(session: Session, room_id: int, count: int, published: bool, filler: str = "") -> list[int]:
    room = session.get(Room, room_id, with_for_update=True)
    assert room is not None
    seqs = []
    for _ in range(count):
        room.last_seq += 1
        seq = room.last_seq
        payload = {"type": "message", "room": room_id, "seq": seq, "message": {"body": f"hello {seq}{filler}"}}
        session.add(OutboxEvent(room_id=room_id, seq=seq, type="message", payload=json.dumps(payload),
                                published_at=utcnow() if published else None))
        seqs.append(seq)
    session.flush()
    return seqs


async def commit_events(node: Node, room_id: int, count: int = 1, *, notify: bool = True,
                        published: bool = False, filler: str = "") -> list[int]:
    """Commit `count` events to the room in one transaction, as the REST send path does.

    `published=True` writes them as if already on the stream (the relay leaves them alone);
    `filler` is appended to each body (to make big events).
    """
    seqs = await node.database.write(_commit, room_id, count, published, filler)
    if notify:
        node.notify_committed(room_id)
    return seqs


async def commit_to_rooms(node: Node, room_ids: list[int], per_room: int = 1) -> None:
    """One transaction that commits `per_room` events to each room, then notifies."""
    def work(session: Session) -> None:
        for room_id in room_ids:
            _commit(session, room_id, per_room, False)

    await node.database.write(work)
    for room_id in room_ids:
        node.notify_committed(room_id)


async def unpublished_count(node: Node) -> int:
    def work(session: Session) -> int:
        return session.query(OutboxEvent).filter(OutboxEvent.published_at.is_(None)).count()

    return await node.database.read(work)


async def mark_all_published(node: Node) -> None:
    await node.database.write(lambda s: s.execute(update(OutboxEvent).values(published_at=utcnow())))


class Recorder:
    """A subscriber with a bounded queue that records what it receives."""

    def __init__(self, limit: int = 10_000) -> None:
        self.limit = limit
        self.items: list[bytes] = []
        self.overflows: list[int] = []
        self.batches: list[list[bytes]] = []  # each list handed to push_many, as handed
        self._changed = trio.Event()

    session_id: str | None = None

    def push(self, data: bytes) -> bool:
        if len(self.items) >= self.limit:
            return False
        self.items.append(data)
        self._changed.set()
        return True

    def push_many(self, room_id: int, data: list[bytes]) -> bool:
        self.batches.append(data)
        room = max(self.limit - len(self.items), 0)
        self.items.extend(data[:room])
        self._changed.set()
        return len(data) <= room

    def notice(self, event: dict[str, Any], data: bytes) -> None:
        self.push(data)  # as a recipient of the notices hub

    def overflowed(self, room_id: int) -> None:
        self.overflows.append(room_id)
        self._changed.set()

    def free_slots(self) -> int:
        return max(self.limit - len(self.items), 0)

    async def wait_for_room(self, n: int) -> bool:
        # Nothing ever leaves a Recorder: a replay that fills it waits until it is dropped.
        await trio.sleep_forever()
        raise AssertionError("unreachable")

    @property
    def events(self) -> list[dict[str, Any]]:
        return [json.loads(item) for item in self.items]

    @property
    def seqs(self) -> list[int]:
        return [event["seq"] for event in self.events if "seq" in event]

    async def wait_for(self, count: int, *, hang_after_s: float = 60) -> None:
        """Until `count` items arrived.

        On MockClock, virtual time leaps whenever every task waits, also while a
        database worker thread runs, so a virtual timeout says nothing about a hang.
        `hang_after_s` is real time, a guard against a stuck test only.
        """
        give_up_at = time.monotonic() + hang_after_s
        while len(self.items) < count:
            if time.monotonic() > give_up_at:
                raise trio.TooSlowError(f"{len(self.items)} of {count} items after {hang_after_s}s")
            self._changed = trio.Event()
            with trio.move_on_after(60):
                await self._changed.wait()


class SlowReader(Recorder):
    """A subscriber whose socket takes `per_tick` events every `tick_s` once `read` runs, like a slow client.

    Like a session's queue: at most `limit` events wait in it (pushing more is an overflow),
    and a replay is offered half of that (`share`).
    """

    def __init__(self, limit: int, per_tick: int = 4, tick_s: float = 0.01) -> None:
        super().__init__()
        self.share = limit // 2
        self.per_tick = per_tick
        self.tick_s = tick_s
        self.queued = 0
        self.most_queued = 0
        self.waits = 0
        self.closing = False
        self._room = trio.Event()
        self.limit = limit

    def push(self, data: bytes) -> bool:
        return self.push_many(0, [data])

    def push_many(self, room_id: int, data: list[bytes]) -> bool:
        self.batches.append(data)
        if self.closing or self.queued + len(data) > self.limit:
            return False
        self.queued += len(data)
        self.most_queued = max(self.most_queued, self.queued)
        self.items.extend(data)
        self._changed.set()
        return True

    def free_slots(self) -> int:
        return 0 if self.closing else max(0, self.share - self.queued)

    async def wait_for_room(self, n: int) -> bool:
        self.waits += 1
        # Like a session: room for half its share will do.
        while not self.closing and self.free_slots() < min(n, (self.share + 1) // 2):
            self._room = trio.Event()
            await self._room.wait()
        return not self.closing

    def close(self) -> None:
        """As a session that starts closing: it takes nothing more."""
        self.closing = True
        self._room.set()

    async def read(self) -> None:
        """Drain at the slow pace, forever (run it in a nursery)."""
        while True:
            await trio.sleep(self.tick_s)
            if self.queued:
                self.queued -= min(self.per_tick, self.queued)
                self._room.set()
