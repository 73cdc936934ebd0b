"""A session's bounded outbound queue: what its socket could not take at once waits here."""

from __future__ import annotations

from collections.abc import Callable

import trio


class Overflowed(Exception):
    """The client fell too far behind; its session must close with 1013."""


class Stopped(Exception):
    """The session is closing for another reason (the server drains); stop writing."""


class OutboundQueue:
    """Pre-encoded JSON events waiting for the socket, at most `limit` of them.

    `push` never blocks (room actors call it for every subscriber); `take` hands the
    session's writer everything pending at once so it goes out as one frame.

    A catch-up (a room's replay) is paced instead: it queues at most `free_slots()`
    events, which leaves half the queue to live events and replies, and then waits
    in `wait_for_room` until the writer has taken and written what was pending.
    """

    __slots__ = ("_in_flight", "_items", "_on_closing", "_room", "_stopped", "catch_up_limit", "limit", "overflowed")

    def __init__(self, limit: int, on_closing: Callable[[], None] = lambda: None) -> None:
        self.limit = limit
        # A list, not a deque: an idle session's empty queue then costs 56 bytes, not 600.
        self._items: list[bytes] = []
        self.overflowed = False
        self._stopped = False
        self._on_closing = on_closing
        # A catch-up keeps queued plus in-flight events at or below this.
        self.catch_up_limit = max(1, limit // 2)
        # Events the writer took last and is writing (they still occupy the session until its next take).
        self._in_flight = 0
        # Set at the next `take` or close, for catch-ups waiting for room; made only when one waits.
        self._room: trio.Event | None = None

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
            self._wake()
            self._on_closing()

    def stop(self) -> None:
        """Make the writer's next `take` raise Stopped (it finishes its current frame first)."""
        first = not self.is_closing
        self._stopped = True
        if first:
            self._wake()
            self._on_closing()

    def free_slots(self) -> int:
        """How many more events a catch-up may queue now (0 once closing)."""
        if self.is_closing:
            return 0
        return max(0, self.catch_up_limit - len(self._items) - self._in_flight)

    async def room_changed(self) -> None:
        """Wait for the writer's next `take` (what it wrote before is gone) or for the close."""
        if self._room is None:
            self._room = trio.Event()
        await self._room.wait()

    def made_room(self) -> None:
        """Room was made other than by the writer (events held elsewhere went): wake catch-ups waiting."""
        self._wake()

    def _wake(self) -> None:
        if self._room is not None:
            self._room.set()
            self._room = None

    def take(self, max_bytes: int) -> list[bytes]:
        """As many pending events as fit in `max_bytes` (at least one, if any are pending).

        Raises Overflowed or Stopped instead once the session must close: between
        frames, so the close frame never lands inside a half-written one.
        """
        if self.overflowed:
            raise Overflowed
        if self._stopped:
            raise Stopped
        # Once per frame, never per event: the previous frame is written, its events leave.
        if self._room is not None:
            self._wake()
        items = self._items
        size = count = 0
        for item in items:
            if count and size + len(item) >= max_bytes:
                break
            size += len(item) + 1
            count += 1
        self._in_flight = count
        if count == len(items):
            self._items = []
            return items
        batch = items[:count]
        del items[:count]
        return batch
