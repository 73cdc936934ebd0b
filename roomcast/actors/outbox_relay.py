"""The outbox relay: puts committed events on their room streams (DESIGN.md §1).

The send path commits the event and its outbox row in one transaction and calls
`notify(room_id)`. The relay reads that room's unpublished rows in seq order,
appends them to the room's stream and marks them published. A caller that has
the committed rows at hand passes them along (`notify(room_id, events)`), and
the relay publishes those without reading them back: one database round trip
less between a send's commit and its delivery. If the stream backend
is down it keeps the rooms pending and retries with backoff. If the process dies
between commit and publish, the rows stay unpublished and the next run's sweep
publishes them: nothing committed is lost. Publishing twice (after a crash between
the append and the marking) is harmless: room actors drop a seq they have already
delivered.

Marking is lazy: rows published are marked together, `mark_delay_s` later (or
sooner once a batch is due, and always before reading unpublished rows back), so
the marking's write neither queues behind nor slows the fan-out of what it just
published, and a steady trickle of sends costs one marking a second, not one per
send: each marking is a transaction in a worker thread that competes with the
fan-out for the interpreter. A crash before the marking republishes those rows on
restart, which room actors drop.

Besides the rooms it is told about, the relay sweeps every unpublished row at
start and every `sweep_s`: rows older than `sweep_s` that another process left
behind (it died, or its stream backend was down) get published too.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Collection, Sequence
from datetime import timedelta
from typing import Any

import trio

from ..logs import log_event
from ..storage.database import Database
from ..storage.outbox import mark_published, unpublished
from ..storage.streams import Append, StreamBackend, StreamUnavailable
from ..timestamps import utcnow
from .actor import ActorContext
from .backoff import Backoff

log = logging.getLogger("roomcast.actors.outbox_relay")

# Committed events handed over in memory and waiting for the relay, at most; past it the
# rooms are read back from the database instead.
_MAX_READY = 10_000


class OutboxRelay:
    """Publishes committed, unpublished outbox rows to the room streams, in seq order."""

    def __init__(self, database: Database, backend: StreamBackend, *, batch_size: int = 500,
                 sweep_s: float = 5.0, mark_delay_s: float = 1.0, backoff: Backoff | None = None) -> None:
        self.database = database
        self.backend = backend
        self.batch_size = batch_size
        self.sweep_s = sweep_s
        # Well inside sweep_s: other nodes' sweeps take rows left unmarked that long for orphans.
        self.mark_delay_s = min(mark_delay_s, sweep_s / 4)
        self.backoff = backoff or Backoff(base=0.1, cap=5.0)
        self.published = 0
        self.failures = 0
        self._pending: set[int] = set()
        self._ready: list[Append] = []  # committed rows handed over by notify, in commit order
        self._unmarked: list[tuple[int, int]] = []  # (room, seq) published, not yet marked in the database
        self._mark_due = math.inf
        self._wake = trio.Event()

    def notify(self, room_id: int, events: Sequence[Append] = ()) -> None:
        """`room_id` has newly committed outbox rows; never blocks.

        `events`, if given, are those rows exactly as stored (payload and seq): they are
        published as they are, not read back.
        """
        if events and len(self._ready) < _MAX_READY:
            self._ready.extend(events)
        else:
            self._pending.add(room_id)
        self._wake.set()

    async def run(self, ctx: ActorContext) -> None:
        sweep_all = True  # every run starts by publishing whatever any earlier one left behind
        next_sweep = trio.current_time()
        while True:
            ok = True
            if sweep_all or trio.current_time() >= next_sweep:
                cutoff = None if sweep_all else utcnow() - timedelta(seconds=self.sweep_s)
                ok = await self._publish(room_ids=None, created_before=cutoff)
                if ok:
                    sweep_all = False
                    next_sweep = trio.current_time() + self.sweep_s
            if ok and self._ready:
                ok = await self._publish_ready()
            if ok and self._pending:
                rooms, self._pending = self._pending, set()
                ok = await self._publish(room_ids=rooms)
                if not ok:
                    self._pending |= rooms
            if not ok:
                await trio.sleep(self.backoff.delay(self.failures))
                continue
            if self._pending or self._ready:
                continue
            if trio.current_time() >= self._mark_due:
                await self._mark()
            with trio.move_on_at(min(next_sweep, self._mark_due)):
                await self._wake.wait()
            self._wake = trio.Event()

    async def _publish_ready(self) -> bool:
        """Publish the rows handed over in memory; False (their rooms then pending) if the backend is down."""
        events, self._ready = self._ready, []
        if not await self._append(events):
            self._pending.update(event.room_id for event in events)  # read back on the retry
            return False
        self.published += len(events)
        self._unmarked.extend((event.room_id, event.seq) for event in events)
        if len(self._unmarked) >= self.batch_size:
            await self._mark()
        elif self._mark_due == math.inf:
            self._mark_due = trio.current_time() + self.mark_delay_s
        return True

    async def _mark(self) -> None:
        """Mark what was published since the last marking."""
        rows, self._unmarked, self._mark_due = self._unmarked, [], math.inf
        if rows:
            await self.database.write(mark_published, rows, utcnow())

    async def _append(self, events: list[Append]) -> bool:
        try:
            await self.backend.append(events)
        except StreamUnavailable as exc:
            self.failures += 1
            log_event(log, "outbox.stream_unavailable", logging.WARNING if self.failures == 1 else logging.DEBUG,
                      error=str(exc), attempt=self.failures, waiting=len(events))
            return False
        if self.failures:
            log_event(log, "outbox.stream_recovered", attempts=self.failures)
            self.failures = 0
        return True

    async def _publish(self, *, room_ids: Collection[int] | None, created_before: Any = None) -> bool:
        """Publish batches until none is left; False if the stream backend is down."""
        await self._mark()  # what is published but unmarked would otherwise be read back as unpublished
        while True:
            rows = await self.database.read(
                lambda session: unpublished(session, room_ids=room_ids, created_before=created_before,
                                            limit=self.batch_size))
            if not rows:
                return True
            if not await self._append([Append(row.room_id, row.payload.encode(), row.seq) for row in rows]):
                return False
            self.published += len(rows)  # counted once on the stream, before the marking's await
            await self.database.write(mark_published, [(row.room_id, row.seq) for row in rows], utcnow())
            if len(rows) < self.batch_size:
                return True

    def describe(self) -> dict[str, Any]:
        return {"published": self.published, "pending_rooms": len(self._pending), "ready": len(self._ready),
                "unmarked": len(self._unmarked), "failures": self.failures}
