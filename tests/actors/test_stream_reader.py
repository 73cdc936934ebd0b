"""The stream reader: a room attached at any moment is placed and read without waiting out a blocked read."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import trio
import trio.testing

from roomcast.actors.stream_reader import Resync, StreamBatch, StreamReader
from roomcast.storage.streams import Append, MemoryStreamBackend, ReadCursor, StreamEntry


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


class HeldReadBackend(MemoryStreamBackend):
    """The in-process backend, whose reads, once they have found something, wait for the test's gate;
    the positions a read was given must not change under it (a cluster's read looks at them again)."""

    def __init__(self) -> None:
        super().__init__()
        self.gate = trio.Event()
        self.found = trio.Event()

    async def read(self, positions: Mapping[int, str], *, count: int, timeout: float,
                   cursor: ReadCursor | None = None) -> dict[int, list[StreamEntry]]:
        given = dict(positions)
        found = await super().read(positions, count=count, timeout=timeout, cursor=cursor)
        if found:
            self.found.set()
            await self.gate.wait()
        assert positions == given
        return found


class SmallMailbox(Inbox):
    """A mailbox that holds `room` messages until the test takes them."""

    def __init__(self, room: int) -> None:
        super().__init__()
        self.room = room

    def tell(self, message: object) -> None:
        if self.room == 0:
            raise trio.WouldBlock
        self.room -= 1
        super().tell(message)


def typing(room_id: int, n: int) -> Append:
    return Append(room_id, f'{{"n":{n}}}'.encode())


def numbers(messages: list[object]) -> list[int]:
    return [int(entry.data[5:-1]) for batch in messages if isinstance(batch, StreamBatch) for entry in batch.entries]


async def test_a_room_with_a_full_mailbox_is_held_back_without_stalling_the_others_and_loses_nothing(
        autojump_clock: trio.testing.MockClock) -> None:
    backend = MemoryStreamBackend()
    reader = StreamReader(backend, block_s=5.0)
    full, other = SmallMailbox(1), Inbox()
    async with trio.open_nursery() as nursery:
        nursery.start_soon(reader.run, None)
        await trio.sleep(0.1)  # running: a room attached from now on is read from its position
        reader.attach(1, full, "0-0", epoch=1)
        reader.attach(2, other, "0-0", epoch=1)
        await backend.append([typing(1, 1), typing(2, 1)])
        with trio.fail_after(1):
            await full.arrived.wait()
            await other.arrived.wait()
        await backend.append([typing(1, 2)])  # does not fit: held back
        await trio.sleep(1)
        await backend.append([typing(1, 3), typing(2, 2)])  # room 1 is left out of reads meanwhile
        await trio.sleep(1)
        assert numbers(full.messages) == [1] and numbers(other.messages) == [1, 2]
        assert reader.position(1) == "0-2"
        full.room = 10  # the actor took its mail: the held batch goes first, then what followed it
        await trio.sleep(1)
        assert numbers(full.messages) == [1, 2, 3]
        assert all(isinstance(batch, StreamBatch) and batch.epoch == 1 for batch in full.messages)
        nursery.cancel_scope.cancel()


async def test_what_a_read_found_for_an_attachment_replaced_meanwhile_is_not_handed_to_the_new_one(
        autojump_clock: trio.testing.MockClock) -> None:
    backend = HeldReadBackend()
    reader = StreamReader(backend, block_s=5.0)
    old, new, gone = Inbox(), Inbox(), Inbox()
    async with trio.open_nursery() as nursery:
        nursery.start_soon(reader.run, None)
        await trio.sleep(0.1)
        reader.attach(1, old, "0-0", epoch=1)
        reader.attach(2, gone, "0-0", epoch=1)
        reader.attach(3, Inbox(), "0-0", epoch=1)
        ids = await backend.append([typing(1, 1), typing(1, 2), typing(2, 1)])
        with trio.fail_after(1):
            await backend.found.wait()  # the read has room 1 from 0-0 and room 2
        reader.attach(1, new, ids[0], epoch=2)  # from after the first entry
        reader.detach(2, epoch=1)
        backend.gate.set()
        with trio.fail_after(1):
            await new.arrived.wait()
        nursery.cancel_scope.cancel()
    assert old.messages == [] and gone.messages == []
    assert numbers(new.messages) == [2] and all(
        isinstance(batch, StreamBatch) and batch.epoch == 2 for batch in new.messages)
    assert reader.position(1) == ids[1] and reader.position(2) is None
