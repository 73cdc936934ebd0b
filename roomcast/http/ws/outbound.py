"""A session's bounded outbound queue: room actors push encoded events, one writer drains it."""

from __future__ import annotations

from collections import deque

import trio


class Overflowed(Exception):
    """The client fell too far behind; its session must close with 1013."""


class Stopped(Exception):
    """The session is closing for another reason (the server drains); stop writing."""


class OutboundQueue:
    """Pre-encoded JSON events waiting for the socket, at most `limit` of them.

    `push` never blocks (room actors call it for every subscriber); `take_all`
    hands the writer everything pending at once so it goes out as one frame.
    """

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self._items: deque[bytes] = deque()
        self._ready = trio.Event()
        self.overflowed = False
        self._stopped = False
        self._flush_requested = False
        # Set once the session must end (overflow or stop): its keep-alive task waits on it.
        self.closing = trio.Event()

    def push(self, payload: bytes) -> bool:
        """Queue one event; False (and the overflowed flag) when the queue is full."""
        if self.overflowed:
            return False
        if len(self._items) >= self.limit:
            self.overflowed = True
            self.closing.set()
            self._ready.set()
            return False
        self._items.append(payload)
        self._ready.set()
        return True

    def request_flush(self) -> None:
        """Wake the writer even with nothing queued (the socket holds a partly written frame)."""
        self._flush_requested = True
        self._ready.set()

    def mark_overflowed(self) -> None:
        """The client fell behind elsewhere (a room dropped it): end like a full queue."""
        self.overflowed = True
        self.closing.set()
        self._ready.set()

    def __len__(self) -> int:
        return len(self._items)

    def stop(self) -> None:
        """Make the writer's next `take_all` raise Stopped (it finishes its current frame first)."""
        self._stopped = True
        self.closing.set()
        self._ready.set()

    async def take_all(self, max_bytes: int) -> list[bytes]:
        """Wait for events, then return as many as fit in `max_bytes` (none after `request_flush`).

        Raises Overflowed or Stopped instead once the session must close: between
        frames, so the close frame never lands inside a half-written one.
        """
        while not self._items and not self._flush_requested:
            self._raise_if_closing()
            await self._ready.wait()
            self._ready = trio.Event()
        self._raise_if_closing()
        self._flush_requested = False
        if not self._items:
            return []
        batch = [self._items.popleft()]
        size = len(batch[0])
        while self._items and size + len(self._items[0]) < max_bytes:
            item = self._items.popleft()
            size += len(item) + 1
            batch.append(item)
        return batch

    def _raise_if_closing(self) -> None:
        if self.overflowed:
            raise Overflowed
        if self._stopped:
            raise Stopped
