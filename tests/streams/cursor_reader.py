"""A reader of a stream backend that keeps its positions as the node's stream reader does (tests of `ReadCursor`)."""

from __future__ import annotations

from roomcast.storage.streams import ReadCursor, StreamBackend


class CursorReader:
    """Positions kept as the node's stream reader keeps them: every change noted in the cursor.

    Each read is made twice, without the cursor and then with it, and the two must find the same.
    """

    def __init__(self, backend: StreamBackend) -> None:
        self.backend = backend
        self.positions: dict[int, str] = {}
        self.cursor = ReadCursor()

    def place(self, room: int, position: str | None) -> None:
        if position is None:
            self.positions.pop(room, None)
        else:
            self.positions[room] = position
        self.cursor.moved.add(room)

    async def read(self, count: int, moves_on: bool = True) -> None:
        """Read both ways; then move each room on to the last entry found (`moves_on`), or leave it."""
        expected = await self.backend.read(dict(self.positions), count=count, timeout=0)
        found = await self.backend.read(self.positions, count=count, timeout=0, cursor=self.cursor)
        assert found == expected
        for room, entries in found.items():
            if moves_on:
                self.place(room, entries[-1].id)
