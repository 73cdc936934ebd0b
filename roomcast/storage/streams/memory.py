"""The in-process stream backend: the embedded default when no Redis is configured.

Each room has a bounded deque of entries with increasing ids `0-<n>`. Each append
fires a `_Wake` naming the rooms it appended to and links the next one, so a blocked
read, on waking, looks only at the rooms appended to since it began waiting, and
only those of them it asked for. A read looks at a room by comparing the position
with the room's newest id (a string compare); only a room with news has its
position parsed: a read costs little per room without news.

A reader that carries a `ReadCursor` from read to read is spared even that: its next read
starts from the wake-up that was next when its last one returned, and looks only at the rooms
appended to since, those the reader moved, and those the last read returned entries of. A
node's one reader names every room it serves on every read, so with a thousand quiet rooms that
scan was most of what a message cost to read.

Every room that ever had an event keeps a log while the process runs, so the entries of all
rooms together are bounded too (`max_entries`): past it, the rooms appended to least recently
give up theirs first. A room keeps its ids' count, so a reader behind it reads on from what is
left, exactly as past `maxlen`, and the room actor heals the gap from the database.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass
from itertools import islice

import trio

from .base import STREAM_START, Append, ReadCursor, StreamEntry


def _number(entry_id: str) -> int:
    return int(entry_id.rpartition("-")[2])


class _RoomLog:
    __slots__ = ("entries", "last_id", "next_number")

    def __init__(self, maxlen: int) -> None:
        self.entries: deque[StreamEntry] = deque(maxlen=maxlen)
        self.next_number = 1
        self.last_id = STREAM_START  # of the newest entry: a reader at it has nothing to read

    def after(self, number: int, count: int) -> list[StreamEntry]:
        entries = self.entries
        newer = min(self.next_number - 1 - number, len(entries))  # entries kept past `number`
        if newer <= 0:
            return []
        if newer == 1:  # the usual live reader, one entry behind
            return [entries[-1]]
        if newer * 2 < len(entries):
            # A reader near the end (every live one): walk from the right, not past all the older ones.
            tail = list(islice(reversed(entries), newer))
            tail.reverse()
            return tail[:count]
        start = len(entries) - newer
        return list(islice(entries, start, start + count))


class _Wake:
    """One append's wake-up: the rooms it appended to, and once it has fired the next wake-up."""

    __slots__ = ("event", "next", "rooms")

    def __init__(self) -> None:
        self.event = trio.Event()
        self.rooms: Collection[int] = ()
        self.next: _Wake | None = None


@dataclass(frozen=True, slots=True)
class _Resume:
    """A cursor's state: where the read that returned left off, on which backend."""

    backend: MemoryStreamBackend
    wake: _Wake  # next when it returned: the chain from here names every room appended to since
    returned: Collection[int]  # its rooms with entries: the caller may read them from where it did


def _appended_since(wake: _Wake) -> set[int]:
    """The rooms appended to since `wake` was the next wake-up."""
    rooms: set[int] = set()
    while wake.next is not None:
        rooms.update(wake.rooms)
        wake = wake.next
    return rooms


class MemoryStreamBackend:
    """Room streams held in this process; a real component, not a test double."""

    name = "memory"

    def __init__(self, maxlen: int = 1000, max_entries: int = 100_000) -> None:
        self.maxlen = maxlen
        self.max_entries = max(max_entries, maxlen)
        self.entries = 0  # kept, all rooms together
        self._logs: dict[int, _RoomLog] = {}  # the least recently appended to first
        self._wake = _Wake()  # the next one, which blocked reads wait for
        self._interrupted = False

    def _log(self, room_id: int) -> _RoomLog:
        log = self._logs.get(room_id)
        if log is None:
            log = self._logs[room_id] = _RoomLog(self.maxlen)
        return log

    async def append(self, items: Sequence[Append]) -> list[str]:
        ids = []
        kept = self.entries
        for item in items:
            log = self._log(item.room_id)
            entry_id = log.last_id = f"0-{log.next_number}"
            log.next_number += 1
            kept += len(log.entries) < self.maxlen  # else the deque drops its oldest
            log.entries.append(StreamEntry(entry_id, item.seq, item.data, item.origin))
            ids.append(entry_id)
        self.entries = kept
        if items:
            rooms = {item.room_id for item in items}
            logs = self._logs
            for room_id in rooms:  # now the most recently appended to
                logs[room_id] = logs.pop(room_id)
            if kept > self.max_entries:
                self._give_up_oldest(rooms)
            self._fire(rooms)
        await trio.lowlevel.checkpoint()
        return ids

    def _give_up_oldest(self, appended: Collection[int]) -> None:
        """Empty the logs of the rooms appended to least recently until all are within `max_entries`
        (never one appended to just now)."""
        logs = self._logs
        while self.entries > self.max_entries:
            room_id = next(iter(logs))
            if room_id in appended:
                return
            log = logs.pop(room_id)
            self.entries -= len(log.entries)
            log.entries.clear()
            logs[room_id] = log  # kept for its ids: the next append goes on from them

    async def last_ids(self, room_ids: Sequence[int]) -> dict[int, str]:
        await trio.lowlevel.checkpoint()
        result = {}
        for room_id in room_ids:
            log = self._logs.get(room_id)
            result[room_id] = log.last_id if log else STREAM_START
        return result

    async def read(self, positions: Mapping[int, str], *, count: int, timeout: float,
                   cursor: ReadCursor | None = None) -> dict[int, list[StreamEntry]]:
        if cursor is None:
            found, _ = await self._read(positions, positions.items(), count, timeout)
            return found
        resume = cursor.state
        cursor.state = None  # until this read returns: one cancelled leaves the next to look at every room
        if isinstance(resume, _Resume) and resume.backend is self:
            rooms = _appended_since(resume.wake)
            rooms.update(cursor.moved)
            rooms.update(resume.returned)
            candidates: Iterable[tuple[int, str]] = (
                (room_id, positions[room_id]) for room_id in rooms if room_id in positions)
        else:
            candidates = positions.items()
        cursor.moved = set()  # what the caller moves from here on, the next read looks at
        found, resumes_at = await self._read(positions, candidates, count, timeout)
        cursor.state = _Resume(self, resumes_at, tuple(found))
        return found

    async def _read(self, positions: Mapping[int, str], candidates: Iterable[tuple[int, str]], count: int,
                    timeout: float) -> tuple[dict[int, list[StreamEntry]], _Wake]:
        """`read`, looking first at `candidates` only (the rooms of `positions` that may have news); and
        the wake-up from which on appends may have come after the rooms were looked at."""
        deadline = trio.current_time() + max(timeout, 0)
        wake = self._wake
        found = self._collect(candidates, count)
        while not found:
            if self._interrupted:
                self._interrupted = False
                break
            with trio.move_on_at(deadline) as waiting:
                await wake.event.wait()
            if waiting.cancelled_caught:
                break
            # Every room not named since the wait began still has nothing after its position.
            touched = _appended_since(wake)
            wake = self._wake
            found = self._collect(((room_id, positions[room_id]) for room_id in touched if room_id in positions), count)
        await trio.lowlevel.checkpoint()
        return found, wake

    def _collect(self, positions: Iterable[tuple[int, str]], count: int) -> dict[int, list[StreamEntry]]:
        found = {}
        logs = self._logs
        for room_id, position in positions:
            log = logs.get(room_id)
            # Compared as strings first: most rooms have nothing new, and need no parsing.
            if log is not None and position != log.last_id:
                entries = log.after(_number(position), count)
                if entries:
                    found[room_id] = entries
        return found

    def interrupt(self) -> None:
        self._interrupted = True
        self._fire(())

    def _fire(self, rooms: Collection[int]) -> None:
        wake = self._wake
        wake.rooms = rooms
        wake.next = self._wake = _Wake()
        wake.event.set()

    async def ping(self) -> None:
        await trio.lowlevel.checkpoint()
