"""Transient events published at the same moment go to the stream backend together.

Presence records, typing, read pointers and integrations' `event`s are not stored: each is
one entry appended to its room's stream, and its publisher waits for the append (and gets
StreamUnavailable when the backend is down). One append per event, a storm of n joins costs
n round trips, each holding one of the Redis connections the outbox relay and the stream
reader need too. The node's `transients` actor takes every event waiting in its bounded
mailbox, oldest first, up to `_BATCH_MAX`, appends them in one call (one Redis pipeline, so
entries reach the streams in the order published) and answers each publisher: an idle node
appends at once, a busy one many events per round trip.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

import trio

from ..storage.streams import Append, StreamBackend, StreamUnavailable
from .actor import Actor, ActorContext, take_waiting

log = logging.getLogger("roomcast.actors.transients")

_BATCH_MAX = 500
_MAILBOX = 1024


class _Publication:
    __slots__ = ("done", "error", "item")

    def __init__(self, item: Append) -> None:
        self.item = item
        self.done = trio.Event()
        self.error: BaseException | None = None

    def give_up(self) -> None:
        self.finish(StreamUnavailable("the node is stopping"))

    def finish(self, error: BaseException | None = None) -> None:
        if not self.done.is_set():
            self.error = error
            self.done.set()


class TransientPublisher:
    """The node's `transients` actor: appends what is published, many events per append."""

    def __init__(self, backend: StreamBackend) -> None:
        self.backend = backend
        self.appends = 0
        self.published = 0
        self.actor = Actor("transients", self.run, mailbox_size=_MAILBOX, describe_extra=self.describe)

    async def publish(self, item: Append) -> None:
        """Append `item` with whatever else is being published; StreamUnavailable if it could not be."""
        await self.publish_many([item])

    async def publish_many(self, items: Sequence[Append]) -> None:
        """Append `items`, in order, with whatever else is being published; the first error if any failed."""
        publications = [_Publication(item) for item in items]
        for publication in publications:
            try:
                await self.actor.send(publication)
            except trio.BrokenResourceError:
                raise StreamUnavailable("the node is stopping") from None
        for publication in publications:
            await self.actor.wait_unless_terminated(publication.done, publication.give_up)
        for publication in publications:
            if publication.error is not None:
                raise publication.error

    async def run(self, ctx: ActorContext) -> None:
        mailbox = ctx.mailbox
        try:
            while True:
                batch = [await mailbox.receive()]
                try:
                    await trio.lowlevel.checkpoint()  # publishers already woken in this round queue theirs first
                    take_waiting(mailbox, batch, _BATCH_MAX)
                    await self._append(batch)
                finally:
                    for publication in batch:  # cancelled (the node stops): whether appended is unknown
                        publication.finish(StreamUnavailable("the node is stopping"))
        finally:
            while True:
                try:
                    mailbox.receive_nowait().finish(StreamUnavailable("the node is stopping"))
                except (trio.WouldBlock, trio.ClosedResourceError, trio.EndOfChannel):
                    break

    async def _append(self, batch: list[_Publication]) -> None:
        try:
            await self.backend.append([publication.item for publication in batch])
        except StreamUnavailable as exc:
            error: BaseException | None = exc
        except Exception as exc:  # a bug: these publishers are told, the actor goes on
            log.error("an append of transient events failed", exc_info=exc)
            error = exc
        else:
            error = None
            self.appends += 1
            self.published += len(batch)
        for publication in batch:
            publication.finish(error)

    def describe(self) -> dict[str, int]:
        return {"appends": self.appends, "published": self.published}
