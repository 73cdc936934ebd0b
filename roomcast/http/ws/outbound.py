"""A session's bounded outbound queue: room actors push encoded events, one writer drains it."""

from __future__ import annotations

from collections.abc import Callable

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

    def __init__(self, limit: int, on_closing: Callable[[], None] = lambda: None) -> None:
        self.limit = limit
        # A list, not a deque: an idle session's empty queue then costs 56 bytes, not 600.
        self._items: list[bytes] = []
        self._ready = trio.Event()
        self.overflowed = False
        self._stopped = False
        self._flush_requested = False
        self.ping_requested = False
        self._on_closing = on_closing

    @property
    def is_closing(self) -> bool:
        """Overflowed or stopped: the writer ends at its next frame boundary."""
        return self.overflowed or self._stopped

    def push(self, payload: bytes) -> bool:
        """Queue one event; False (and the overflowed flag) when the queue is full."""
        if self.overflowed:
            return False
        if len(self._items) >= self.limit:
            self.mark_overflowed()
            return False
        self._items.append(payload)
        self._ready.set()
        return True

    def request_flush(self, *, ping: bool = False) -> None:
        """Wake the writer even with nothing queued: the socket holds a partly written
        frame, or (with `ping`) a heartbeat is due."""
        self._flush_requested = True
        self.ping_requested = self.ping_requested or ping
        self._ready.set()

    def mark_overflowed(self) -> None:
        """The client fell behind (here, or a room dropped it): the session closes with 1013."""
        self._begin_closing()
        self.overflowed = True

    def stop(self) -> None:
        """Make the writer's next `take_all` raise Stopped (it finishes its current frame first)."""
        self._begin_closing()
        self._stopped = True

    def _begin_closing(self) -> None:
        first = not self.is_closing
        self._ready.set()
        if first:
            self._on_closing()

    def __len__(self) -> int:
        return len(self._items)

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
        items = self._items
        size = count = 0
        for item in items:
            if count and size + len(item) >= max_bytes:
                break
            size += len(item) + 1
            count += 1
        if count == len(items):
            self._items = []
            return items
        batch = items[:count]
        del items[:count]
        return batch

    def _raise_if_closing(self) -> None:
        if self.overflowed:
            raise Overflowed
        if self._stopped:
            raise Stopped
