"""The stream reader: a room attached at any moment is placed and read without waiting out a blocked read."""

from __future__ import annotations

from collections.abc import Sequence

import trio
import trio.testing

from roomcast.actors.stream_reader import Resync, StreamBatch, StreamReader
from roomcast.storage.streams import Append, MemoryStreamBackend


class GatedBackend(MemoryStreamBackend):
    """The in-process backend, whose `last_ids` waits until the test opens the gate."""

    def __init__(self) -> None:
        super().__init__()
        self.gate = trio.Event()
        self.asked = trio.Event()

    async def last_ids(self, room_ids: Sequence[int]) -> dict[int, str]:
        self.asked.set()
        await self.gate.wait()
        return await super().last_ids(room_ids)


class Inbox:
    """Stands in for a room actor's mailbox."""

    def __init__(self) -> None:
        self.messages: list[object] = []
        self.arrived = trio.Event()

    def tell(self, message: object) -> None:
        self.messages.append(message)
        self.arrived.set()


async def test_a_room_attached_during_a_resync_is_read_without_waiting_for_the_block(
        autojump_clock: trio.testing.MockClock) -> None:
    backend = GatedBackend()
    reader = StreamReader(backend, block_s=5.0)
    placed_late, attached_meanwhile = Inbox(), Inbox()
    async with trio.open_nursery() as nursery:
        nursery.start_soon(reader.run, None)
        reader.attach(1, placed_late, None, epoch=1)  # None: the reader looks up the stream's end
        await backend.asked.wait()
        reader.attach(2, attached_meanwhile, None, epoch=1)  # while that lookup waits
        backend.gate.set()
        with trio.fail_after(1):  # well inside block_s: not left out of the read that follows
            await placed_late.arrived.wait()
            await attached_meanwhile.arrived.wait()
        assert isinstance(placed_late.messages[0], Resync) and isinstance(attached_meanwhile.messages[0], Resync)
        attached_meanwhile.arrived = trio.Event()
        await backend.append([Append(2, b'{"type":"typing"}')])
        with trio.fail_after(1):
            await attached_meanwhile.arrived.wait()
        nursery.cancel_scope.cancel()
    batch = attached_meanwhile.messages[1]
    assert isinstance(batch, StreamBatch) and [entry.data for entry in batch.entries] == [b'{"type":"typing"}']
