"""A session's sends in flight: committed in the order sent, many per transaction when they pile up.

Answering each `send` frame only after its own commit would let one connection
commit one message per round trip to the database. Instead the reader checks a
send and queues it here, then goes on reading; one task (alive while the session
keeps sending) takes the sender's rate tokens for whatever has piled up (one call to
Redis for all; a send over the rate is answered `rate_limited` in its place) and
hands the rest to the node's committer (`send_drafts`),
which commits it together with the other sessions' and REST requests' sends, and
answers each with its `ack` or `error`, in order. One batch of a session is in the
committer at a time, so its sends to a room are sequenced and acked in the order
sent. Still every `ack` follows the commit of its message (PROTOCOL §5). A send
that fails fails alone: the others of its transaction are committed and acked all
the same.

On this connection a send's `ack` comes before its `message` event. The event could
otherwise come first: once committed, the row is visible to the relay (it reads a
room's unpublished rows back when another transaction there asks it to), and its
fan-out may reach the session before this task has written the answers. So while a
batch is in the committer, the stored events of its rooms that reach the session are
held here, and written right after the batch's answers.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

import trio

from ...errors import ApiError
from ...services.messaging import Draft, send_drafts, take_send_tokens
from ...services.send_committer import SendOutcome
from ...wire import send_ack
from .protocol import api_error_event, error_event

if TYPE_CHECKING:
    from .session import Session

log = logging.getLogger("roomcast.ws")

# Sends one connection may have waiting; past it the reader waits (the client is pushed back).
MAX_PENDING_SENDS = 64
# Sends of one session handed to the committer at once, at most (and never more than send_batch_max).
MAX_BATCH = 32
_NO_ROOMS: frozenset[int] = frozenset()


class SendPipeline:
    """The pending sends of one session."""

    __slots__ = ("_held", "_held_count", "_holding", "_parked", "_pending", "_room_for_more", "_running", "_session")

    def __init__(self, session: Session) -> None:
        self._session = session
        self._pending: list[tuple[Draft, str | None, float]] = []  # (draft, the frame's ref, when it was taken)
        self._running = False
        self._room_for_more: trio.Event | None = None
        # Set while the task waits, idle, for the next send: it stays while the session keeps
        # sending (a task started per batch costs more than the rest of a small batch's
        # handling here) and ends at the first heartbeat that finds it idle (`retire_if_idle`).
        self._parked: trio.Event | None = None
        self._holding: frozenset[int] = _NO_ROOMS  # the rooms of the batch in the committer
        self._held: list[tuple[int, list[bytes]]] = []  # (room, its stored events) that came meanwhile, in order
        self._held_count = 0

    @property
    def held(self) -> int:
        """Stored events waiting for the answers of the batch in the committer."""
        return self._held_count

    def holds(self, room_id: int) -> bool:
        """Whether the room's stored events wait now: a send to it is in the committer."""
        return room_id in self._holding

    def hold(self, room_id: int, data: list[bytes]) -> bool:
        """Keep a room's stored events (shared: not to be changed) until the batch is answered;
        False when the session could not take them (the room then drops it, as one that fell behind)."""
        if self._held_count + len(data) <= self._session.outbound.limit:
            self._held.append((room_id, data))
            self._held_count += len(data)
            return True
        # More than the session would queue, in one commit's time: they go now, in order, and
        # the batch's acks may follow their messages (the client is not to blame for the wait).
        self._holding = _NO_ROOMS
        return self._write_held(data)

    def drop_held(self, room_id: int) -> None:
        """The session stopped following the room: its held events are not to be written."""
        if self._held_count:
            self._held = [(room, data) for room, data in self._held if room != room_id]
            self._held_count = sum(len(data) for _, data in self._held)
            self._session.outbound.made_room()

    def _write_held(self, more: list[bytes]) -> bool:
        """Write what is held, then `more`; False (and the session closing, 1013) when it could not take them."""
        events = [event for _, data in self._held for event in data] + more
        self._held, self._held_count = [], 0
        written = self._session.deliver_stored(events)
        self._session.outbound.made_room()  # a catch-up may wait for the slots they took
        return written

    async def submit(self, draft: Draft, ref: str | None) -> None:
        """Queue a checked send; its answer follows its commit. Waits while too many are pending."""
        self._pending.append((draft, ref, trio.current_time()))
        if self._parked is not None:
            self._parked.set()
            self._parked = None
        elif not self._running:
            self._running = True
            self._session.start_soon(self._commit_pending)
        if len(self._pending) >= MAX_PENDING_SENDS:
            self._room_for_more = event = trio.Event()
            await event.wait()

    def retire_if_idle(self) -> None:
        """End the task if it waits for sends (the heartbeat's call): the next send starts another."""
        if self._parked is not None:
            self._parked.set()  # it wakes to nothing pending, and ends
            self._parked = None

    async def _commit_pending(self) -> None:
        try:
            while True:
                if not self._pending:
                    self._parked = parked = trio.Event()
                    await parked.wait()
                    if not self._pending:
                        return
                node = self._session.node
                count = min(MAX_BATCH, node.settings.send_batch_max)
                batch, self._pending = self._pending[:count], self._pending[count:]
                if self._room_for_more is not None:
                    self._room_for_more.set()
                    self._room_for_more = None
                user = self._session.user
                refusals = await take_send_tokens(node, user, len(batch))
                allowed = [draft for (draft, _, _), refusal in zip(batch, refusals, strict=True) if refusal is None]
                if allowed:
                    self._holding = frozenset(draft.room_id for draft in allowed)
                try:
                    stored = iter(await send_drafts(node, user, allowed) if allowed else ())
                    now = trio.current_time()
                    answers: list[bytes] = []  # one frame for the batch's answers, when the socket takes it
                    for (_, ref, taken_at), refusal in zip(batch, refusals, strict=True):
                        if refusal is not None:
                            answers.append(self._session.rate_limit_refusal(ref, refusal))
                            continue
                        outcome = next(stored)
                        if isinstance(outcome, tuple) and outcome[1] is not None:  # stored now, not a repeat
                            node.metrics.send_latency.observe(now - taken_at)
                        answers.append(_answer(ref, outcome))
                    self._session.reply_all(answers)
                finally:
                    self._release()
        finally:
            self._running = False
            self._parked = None

    def _release(self) -> None:
        """The batch is answered (or its task ends): what its rooms' events waited for is written."""
        self._holding = _NO_ROOMS
        if self._held_count:
            self._write_held([])


def _answer(ref: str | None, outcome: SendOutcome) -> bytes:
    if isinstance(outcome, ApiError):
        return api_error_event(ref, outcome)
    if isinstance(outcome, Exception):  # a bug or a value the database refused: this send only
        log.error("a send failed", exc_info=outcome)
        return error_event(ref, "internal_error", "the message could not be stored")
    return send_ack(ref, *outcome)
