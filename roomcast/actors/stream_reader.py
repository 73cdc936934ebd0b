"""The stream reader: ONE task per process reads every active room's stream (DESIGN.md §7).

Room actors attach with the stream position to read from; the reader keeps one
blocking multi-room read going (one XREAD on Redis) and hands each room's
entries to that room actor's mailbox, or to its fan-out at once if it waits
idle (`take_now`). The number of Redis connections therefore
does not grow with the number of rooms.

A room whose mailbox is full is not waited for: its batch is held back and the
room is left out of reads until the batch fits, so a busy room never stalls the
others and nothing is skipped.

What a read names (each readable room's position), the rooms held back and those
not yet placed are kept up to date as feeds change, not rebuilt for each read: a
read costs the reader work per room with entries, not per room attached. The rooms
whose positions changed go in the read's cursor, so the in-process backend need not
compare every position either.

When the backend fails, the reader retries with exponential backoff. Once it
answers again the reader *resyncs*: it moves every room to the stream's current
end and tells each room actor to fetch from the database what it may have
missed (entries published while the reader was away may be gone, e.g. after a
Redis restart). Committed events are in the database, so none is lost.
"""

from __future__ import annotations

import logging
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import trio

from ..logs import log_event
from ..storage.streams import NOTICES_STREAM, ReadCursor, StreamBackend, StreamEntry, StreamUnavailable
from .actor import Actor, ActorContext
from .backoff import Backoff

log = logging.getLogger("roomcast.actors.stream_reader")

# How soon a room held back for a full mailbox is looked at again.
_HELD_BACK_RETRY_S = 0.05


@dataclass(frozen=True, slots=True)
class StreamBatch:
    """Entries of one room's stream, in order, for the attachment `epoch` they were read for."""

    epoch: int
    entries: list[StreamEntry]


@dataclass(frozen=True, slots=True)
class Resync:
    """Stream entries may have been missed: fetch from the database what is past your last seq."""


# Takes a batch in the reader's own task, if its actor can (a room actor waiting idle for
# mail: `RoomActor.take_now`); False when it did not, and the batch goes to the mailbox.
TakeNow = Callable[[StreamBatch], bool]


@dataclass(slots=True)
class _Feed:
    actor: Actor
    position: str | None  # None: not yet known; the reader takes the stream's end and sends Resync
    epoch: int
    serial: int  # which attach (of this reader) made it: one made during a read is newer than the read
    take_now: TakeNow | None = None
    # Messages that did not fit in the mailbox yet, in order (at most a batch and a Resync).
    held_back: deque[StreamBatch | Resync] = field(default_factory=deque)


class StreamReader:
    """Multiplexes every attached room's stream into one blocking read."""

    def __init__(self, backend: StreamBackend, *, block_s: float = 5.0, count: int = 256,
                 backoff: Backoff | None = None) -> None:
        self.backend = backend
        self.block_s = block_s
        self.count = count
        self.backoff = backoff or Backoff(base=0.1, cap=5.0)
        self.failures = 0
        self.reads = 0
        self._feeds: dict[int, _Feed] = {}
        self._attachments = 0
        # Kept by _track: the position of each room the next read names (placed, nothing held back);
        # the rooms with messages held back, and those without a position (dicts: in a stable order).
        self._positions: dict[int, str] = {}
        self._held: dict[int, None] = {}
        self._unplaced: dict[int, None] = {}
        self._lent = False  # the read under way has _positions: it is copied before it changes
        self._cursor = ReadCursor()  # every position set goes in its `moved` (see _track)
        self._reading = False
        self._interrupt_sent = False
        self._needs_resync = False

    @property
    def rooms(self) -> int:
        """Rooms being read (the notices stream, read too, is not a room)."""
        return len(self._feeds) - (NOTICES_STREAM in self._feeds)

    def attach(self, room_id: int, actor: Actor, position: str | None, epoch: int,
               take_now: TakeNow | None = None) -> None:
        """Read `room_id` from after `position` into `actor`'s mailbox (replacing any earlier attachment);
        a batch `take_now` takes, while nothing waits in the mailbox, skips it.

        With `position` None the reader starts at the stream's current end and then
        sends the actor a Resync, so that it fetches from the database whatever was
        committed before that point and is newer than what it has.
        """
        self._attachments += 1
        self._feeds[room_id] = _Feed(actor, position, epoch, self._attachments, take_now)
        self._track(room_id)
        self._wake()

    def detach(self, room_id: int, epoch: int) -> None:
        """Stop reading for that attachment (a newer one for the room is left alone)."""
        feed = self._feeds.get(room_id)
        if feed is not None and feed.epoch == epoch:
            del self._feeds[room_id]
            self._track(room_id)

    def position(self, room_id: int) -> str | None:
        """How far the reader has read `room_id`'s stream (None when not attached)."""
        feed = self._feeds.get(room_id)
        return feed.position if feed else None

    def _wake(self) -> None:
        # Only a read already under way needs interrupting: the next one sees the new feed.
        if self._reading and not self._interrupt_sent:
            self._interrupt_sent = True
            self.backend.interrupt()

    async def run(self, ctx: ActorContext) -> None:
        # A previous run may have died between a read and the hand-over: check the database.
        self._needs_resync = bool(self._feeds)
        self._cursor = ReadCursor()  # nor may its last read have been followed up: the next looks at every room
        while True:
            everything = self._needs_resync
            unplaced = list(self._feeds if everything else self._unplaced)
            if unplaced:
                ok, _ = await self._attempt(self._resync, unplaced)
                if not ok:
                    continue
                if everything:
                    self._needs_resync = False
                    log_event(log, "stream.resynced", backend=self.backend.name, rooms=len(unplaced))
                continue  # a room attached while that ran was not interrupted for: look again
            for room_id in list(self._held):
                self._hand_over(room_id, self._feeds[room_id])
            timeout = min(self.block_s, _HELD_BACK_RETRY_S) if self._held else self.block_s
            read_from = self._attachments  # feeds attached later were not in this read
            self._reading, self._interrupt_sent, self._lent = True, False, True
            try:
                ok, batches = await self._attempt(self.backend.read, self._positions, count=self.count,
                                                  timeout=timeout, cursor=self._cursor)
            finally:
                self._reading = self._lent = False
            if not ok:
                continue
            self.reads += 1
            for room_id, entries in batches.items():
                feed = self._feeds.get(room_id)
                if feed is None or feed.serial > read_from or not entries:
                    continue  # detached or re-attached while the read was under way
                feed.position = entries[-1].id
                feed.held_back.append(StreamBatch(feed.epoch, entries))
                self._hand_over(room_id, feed)

    async def _attempt(self, operation: Any, *args: Any, **kwargs: Any) -> tuple[bool, Any]:
        """Run a backend operation; on StreamUnavailable log it, back off and return (False, None)."""
        try:
            result = await operation(*args, **kwargs)
        except StreamUnavailable as exc:
            self.failures += 1
            self._needs_resync = True
            delay = self.backoff.delay(self.failures)
            # The outage itself is logged once by the backend (dependency.unavailable).
            log_event(log, "stream.unavailable", logging.DEBUG,
                      backend=self.backend.name, error=str(exc), attempt=self.failures, retry_in_s=round(delay, 3))
            await trio.sleep(delay)
            return False, None
        if self.failures:
            log_event(log, "stream.reconnected", logging.DEBUG, backend=self.backend.name, attempts=self.failures)
            self.failures = 0
        return True, result

    async def _resync(self, room_ids: list[int]) -> None:
        """Move these rooms to their stream's end, then have their actors check the database.

        Whatever was published before that end was committed before the actor's
        database fetch, which follows; whatever comes after it is read from the stream.
        """
        feeds = {room_id: self._feeds[room_id] for room_id in room_ids}
        newest = await self.backend.last_ids(room_ids)
        for room_id, before in feeds.items():
            feed = self._feeds.get(room_id)
            if feed is not before or room_id not in newest:
                continue  # re-attached meanwhile: its own position counts
            feed.position = newest[room_id]
            # Behind any held-back batch: the database fetch must come after it.
            feed.held_back.append(Resync())
            self._hand_over(room_id, feed)

    def _hand_over(self, room_id: int, feed: _Feed) -> None:
        """Move the feed's held-back messages into its actor's mailbox, as far as they fit."""
        while feed.held_back:
            message = feed.held_back[0]
            if feed.take_now is not None and isinstance(message, StreamBatch) and feed.take_now(message):
                feed.held_back.popleft()
                continue
            try:
                feed.actor.tell(message)
            except trio.WouldBlock:
                break
            except (trio.BrokenResourceError, trio.ClosedResourceError):
                self.detach(room_id, feed.epoch)  # that actor has ended; a successor attaches anew
                return
            feed.held_back.popleft()
        self._track(room_id)

    def _track(self, room_id: int) -> None:
        """Bring what the next read names, and the held-back and unplaced rooms, in line with the room's feed."""
        feed = self._feeds.get(room_id)
        position = feed.position if feed is not None else None
        if feed is not None and feed.held_back:
            self._held[room_id] = None
        else:
            self._held.pop(room_id, None)
        if feed is not None and position is None:
            self._unplaced[room_id] = None
        else:
            self._unplaced.pop(room_id, None)
        readable = None if room_id in self._held else position
        if self._positions.get(room_id) == readable:
            return
        self._cursor.moved.add(room_id)
        if self._lent:  # the backend may look at the dict it was given until the read ends
            self._positions, self._lent = dict(self._positions), False
        if readable is None:
            del self._positions[room_id]
        else:
            self._positions[room_id] = readable

    def describe(self) -> dict[str, Any]:
        return {"backend": self.backend.name, "rooms": self.rooms, "reads": self.reads,
                "connected": self.failures == 0}
