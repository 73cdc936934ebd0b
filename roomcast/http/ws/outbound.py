"""A session's bounded outbound queue: what its socket could not take at once waits here."""

from __future__ import annotations

from collections.abc import Callable


class Overflowed(Exception):
    """The client fell too far behind; its session must close with 1013."""


class Stopped(Exception):
    """The session is closing for another reason (the server drains); stop writing."""


class OutboundQueue:
    """Pre-encoded JSON events waiting for the socket, at most `limit` of them.

    `push` never blocks (room actors call it for every subscriber); `take` hands the
    session's writer everything pending at once so it goes out as one frame.
    """

    def __init__(self, limit: int, on_closing: Callable[[], None] = lambda: None) -> None:
        self.limit = limit
        # A list, not a deque: an idle session's empty queue then costs 56 bytes, not 600.
        self._items: list[bytes] = []
        self.overflowed = False
        self._stopped = False
        self._on_closing = on_closing

    @property
    def is_closing(self) -> bool:
        """Overflowed or stopped: the writer ends at its next frame boundary."""
        return self.overflowed or self._stopped

    def __len__(self) -> int:
        return len(self._items)

    def push(self, payload: bytes) -> bool:
        """Queue one event; False (and the overflowed flag) when the queue is full."""
        if self.overflowed:
            return False
        if len(self._items) >= self.limit:
            self.mark_overflowed()
            return False
        self._items.append(payload)
        return True

    def extend(self, payloads: list[bytes]) -> bool:
        """Queue several events, all or none; False (and the overflowed flag) when they do not fit."""
        if self.overflowed:
            return False
        if len(self._items) + len(payloads) > self.limit:
            self.mark_overflowed()
            return False
        self._items.extend(payloads)
        return True

    def mark_overflowed(self) -> None:
        """The client fell behind (here, or a room dropped it): the session closes with 1013."""
        first = not self.is_closing
        self.overflowed = True
        if first:
            self._on_closing()

    def stop(self) -> None:
        """Make the writer's next `take` raise Stopped (it finishes its current frame first)."""
        first = not self.is_closing
        self._stopped = True
        if first:
            self._on_closing()

    def take(self, max_bytes: int) -> list[bytes]:
        """As many pending events as fit in `max_bytes` (at least one, if any are pending).

        Raises Overflowed or Stopped instead once the session must close: between
        frames, so the close frame never lands inside a half-written one.
        """
        if self.overflowed:
            raise Overflowed
        if self._stopped:
            raise Stopped
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
