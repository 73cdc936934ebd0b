"""The `wal_checkpointer` actor (SQLite file databases): the WAL copied into the database beside the writer.

Left to itself, SQLite checkpoints in the commit that takes the WAL past `wal_autocheckpoint`
pages: that writer copies every page written since the last checkpoint and syncs both files
while it holds the write lock, and every send of the node waits behind it. A batch of sends
to many rooms writes some 330 pages (each room's last page of three indexes), so with SQLite's
default of 1000 pages every third batch paid for a checkpoint, and a sync that stalls (100-300
ms at times on a busy disk) stalled the node's sends for as long.

This actor checkpoints from a pooled connection every `CHECKPOINT_INTERVAL_S`, passively: it
waits for no reader and holds no writer back, and copies a page written by several batches in
the meantime once. The writer still checkpoints itself past a far larger WAL
(`storage.database._SQLITE_WRITER_AUTOCHECKPOINT_PAGES`), should this actor fall behind.
"""

from __future__ import annotations

import logging

import trio

from ..logs import log_event
from ..storage.database import Database
from .actor import ActorContext
from .backoff import Backoff, until_available

log = logging.getLogger("roomcast.checkpointer")

ACTOR_NAME = "wal_checkpointer"
# Often enough that the WAL holds a few batches' pages at most; an idle database's checkpoint
# finds nothing to copy and costs a worker thread's hop.
CHECKPOINT_INTERVAL_S = 0.1


class WalCheckpointer:
    """Checkpoints a SQLite file database's WAL every `interval_s`; waits out the database's outages."""

    def __init__(self, database: Database, interval_s: float, retry: Backoff) -> None:
        self.database = database
        self.interval_s = interval_s
        self.retry = retry
        self.checkpoints = 0
        self.frames = 0  # in the WAL at the last checkpoint
        self.copied = 0  # of those, in the database since

    async def run(self, ctx: ActorContext) -> None:
        failures = 0
        while True:
            # After a failure, backing off: one that recurs is logged with growing gaps, not ten times a second.
            await trio.sleep(self.retry.delay(failures) if failures else self.interval_s)
            try:
                frames, copied = await until_available(self.database.checkpoint, self.retry, log,
                                                       "checkpoint.waiting")
            except Exception as exc:  # a bug, or a database that refuses: the writer still checkpoints itself
                failures += 1
                log_event(log, "checkpoint.failed", logging.ERROR, error=repr(exc), attempt=failures)
                continue
            failures = 0
            if frames < 0:  # SQLite's answer while another connection checkpoints: this one did nothing
                continue
            self.frames, self.copied = frames, copied
            self.checkpoints += 1

    def describe(self) -> dict[str, object]:
        return {"checkpoints": self.checkpoints, "wal_frames": self.frames, "copied_frames": self.copied,
                "interval_s": self.interval_s}
