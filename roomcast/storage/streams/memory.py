"""The in-process stream backend: the embedded default when no Redis is configured.

Each room has a bounded deque of entries with increasing ids `0-<n>`. One
`trio.Event`, replaced after each wake-up, tells blocked readers that something
was appended; readers then look only at the rooms they asked for.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Mapping, Sequence
from itertools import islice

import trio

from .base import Append, StreamEntry


def _number(entry_id: str) -> int:
    return int(entry_id.rpartition("-")[2])


class _RoomLog:
    __slots__ = ("entries", "next_number")

    def __init__(self, maxlen: int) -> None:
        self.entries: deque[StreamEntry] = deque(maxlen=maxlen)
        self.next_number = 1

    def after(self, number: int, count: int) -> list[StreamEntry]:
        entries = self.entries
        if not entries or self.next_number - 1 <= number:
            return []
        first = self.next_number - len(entries)  # number of entries[0]
        start = max(0, number + 1 - first)
        newer = len(entries) - start
        if newer * 2 < len(entries):
            # A reader near the end (every live one): walk from the right, not past all the older ones.
            tail = list(islice(reversed(entries), newer))
            tail.reverse()
            return tail[:count]
        return list(islice(entries, start, start + count))


class MemoryStreamBackend:
    """Room streams held in this process; a real component, not a test double."""

    name = "memory"

    def __init__(self, maxlen: int = 1000) -> None:
        self.maxlen = maxlen
        self._logs: dict[int, _RoomLog] = {}
        self._appended = trio.Event()
        self._interrupted = False

    def _log(self, room_id: int) -> _RoomLog:
        log = self._logs.get(room_id)
        if log is None:
            log = self._logs[room_id] = _RoomLog(self.maxlen)
        return log

    async def append(self, items: Sequence[Append]) -> list[str]:
        ids = []
        for item in items:
            log = self._log(item.room_id)
            entry_id = f"0-{log.next_number}"
            log.next_number += 1
            log.entries.append(StreamEntry(entry_id, item.seq, item.data, item.origin))
            ids.append(entry_id)
        if items:
            self._wake()
        await trio.lowlevel.checkpoint()
        return ids

    async def last_ids(self, room_ids: Sequence[int]) -> dict[int, str]:
        await trio.lowlevel.checkpoint()
        result = {}
        for room_id in room_ids:
            log = self._logs.get(room_id)
            result[room_id] = f"0-{log.next_number - 1}" if log else "0-0"
        return result

    async def read(self, positions: Mapping[int, str], *, count: int, timeout: float) -> dict[int, list[StreamEntry]]:
        numbers = {room_id: _number(position) for room_id, position in positions.items()}
        deadline = trio.current_time() + max(timeout, 0)
        found: dict[int, list[StreamEntry]] = {}
        while not found:
            found = self._collect(numbers, count)
            if found:
                break
            if self._interrupted:
                self._interrupted = False
                break
            with trio.move_on_at(deadline) as waiting:
                await self._appended.wait()
            if waiting.cancelled_caught:
                break
        await trio.lowlevel.checkpoint()
        return found

    def _collect(self, numbers: Mapping[int, int], count: int) -> dict[int, list[StreamEntry]]:
        found = {}
        for room_id, number in numbers.items():
            log = self._logs.get(room_id)
            if log is not None and log.next_number - 1 > number:
                found[room_id] = log.after(number, count)
        return found

    def interrupt(self) -> None:
        self._interrupted = True
        self._wake()

    def _wake(self) -> None:
        self._appended.set()
        self._appended = trio.Event()

    async def ping(self) -> None:
        await trio.lowlevel.checkpoint()
