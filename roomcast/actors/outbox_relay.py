"""The outbox relay: puts committed events on their room streams (DESIGN.md §1).

The send path commits the event and its outbox row in one transaction and calls
`notify(room_id)`. The relay reads that room's unpublished rows in seq order,
appends them to the room's stream and marks them published. A caller that has
the committed rows at hand passes them along (`notify(room_id, events)`), and
the relay publishes those without reading them back: one database round trip
less between a send's commit and its delivery. If the stream backend or the
database is down it keeps the rooms pending (and what it published unmarked) and
retries with backoff: an outage is waited out, never a crash (DESIGN.md §11). If the process dies
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

from ..errors import DependencyUnavailable
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
        self.failures = 0  # consecutive rounds that met an outage
        self._waiting_for: str | None = None  # the dependency that was down, while failures > 0
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
            try:
                if sweep_all or trio.current_time() >= next_sweep:
                    cutoff = None if sweep_all else utcnow() - timedelta(seconds=self.sweep_s)
                    await self._publish(room_ids=None, created_before=cutoff)
                    sweep_all = False
                    next_sweep = trio.current_time() + self.sweep_s
                if self._ready:
                    await self._publish_ready()
                if self._pending:
                    rooms, self._pending = self._pending, set()
                    try:
                        await self._publish(room_ids=rooms)
                    except DependencyUnavailable:
                        self._pending |= rooms
                        raise
                if not (self._pending or self._ready) and trio.current_time() >= self._mark_due:
                    await self._mark()
            except DependencyUnavailable as exc:
                # An outage of the stream backend or the database: wait it out, keep what is
                # pending, and go on when it answers (DESIGN.md §11). Logged once by its gateway.
                self._failed(exc)
                await trio.sleep(self.backoff.delay(self.failures))
                continue
            if self._pending or self._ready:
                continue
            with trio.move_on_at(min(next_sweep, self._mark_due)):
                await self._wake.wait()
            self._wake = trio.Event()

    def _failed(self, error: DependencyUnavailable) -> None:
        self.failures += 1
        self._waiting_for = error.dependency
        if error.dependency != "streams":  # the stream's own line, with what waits, comes from _append
            log_event(log, "outbox.database_unavailable", logging.DEBUG, error=str(error), attempt=self.failures)

    def _recovered(self) -> None:
        """A call to the stream backend or the database went through: the outage (if any) is over."""
        if self.failures:
            event = "outbox.stream_recovered" if self._waiting_for == "streams" else "outbox.database_recovered"
            log_event(log, event, logging.DEBUG, attempts=self.failures)
            self.failures = 0
            self._waiting_for = None

    async def _publish_ready(self) -> None:
        """Publish the rows handed over in memory; if the backend is down their rooms stay pending."""
        events, self._ready = self._ready, []
        try:
            await self._append(events)
        except DependencyUnavailable:
            self._pending.update(event.room_id for event in events)  # read back on the retry
            raise
        self.published += len(events)
        # notify hands over stored rows only, so every seq is set (the test is for the type checker).
        self._unmarked.extend((event.room_id, event.seq) for event in events if event.seq is not None)
        if len(self._unmarked) >= self.batch_size:
            await self._mark()
        elif self._mark_due == math.inf:
            self._mark_due = trio.current_time() + self.mark_delay_s

    async def _mark(self) -> None:
        """Mark what was published since the last marking; kept for the next try if the database is down."""
        rows, self._unmarked, self._mark_due = self._unmarked, [], math.inf
        if rows:
            try:
                await self.database.write(mark_published, rows, utcnow())
            except DependencyUnavailable:
                self._unmarked[:0] = rows
                raise
            self._recovered()

    async def _append(self, events: list[Append]) -> None:
        try:
            await self.backend.append(events)
        except StreamUnavailable as exc:
            log_event(log, "outbox.stream_unavailable", logging.DEBUG, error=str(exc), attempt=self.failures + 1,
                      waiting=len(events))
            raise
        self._recovered()

    async def _publish(self, *, room_ids: Collection[int] | None, created_before: Any = None) -> None:
        """Publish batches until none is left; DependencyUnavailable if the stream backend or database is down."""
        await self._mark()  # what is published but unmarked would otherwise be read back as unpublished
        while True:
            rows = await self.database.read(
                lambda session: unpublished(session, room_ids=room_ids, created_before=created_before,
                                            limit=self.batch_size))
            self._recovered()
            if not rows:
                return
            await self._append([Append(row.room_id, row.payload.encode(), row.seq) for row in rows])
            self.published += len(rows)  # counted once on the stream, before the marking's await
            self._unmarked.extend((row.room_id, row.seq) for row in rows)
            await self._mark()
            if len(rows) < self.batch_size:
                return

    def describe(self) -> dict[str, Any]:
        return {"published": self.published, "pending_rooms": len(self._pending), "ready": len(self._ready),
                "unmarked": len(self._unmarked), "failures": self.failures}
