"""A session's sends in flight: committed in the order sent, many per transaction when they pile up.

Answering each `send` frame only after its own commit would let one connection
commit one message per round trip to the database. Instead the reader checks a
send and queues it here, then goes on reading. Whatever has piled up while no batch
of the session is in the committer goes as the next batch: its sender's rate tokens
are taken for all of it at once (a send over the rate is answered `rate_limited` in
its place) and the rest is handed to the node's committer, which commits it
together with the other sessions' and REST requests' sends. The committer calls
back with the outcomes, and each send is answered with its `ack` or `error`, in
order; then the next batch goes. One batch of a session is in the committer at a
time, so its sends to a room are sequenced and acked in the order sent. Still every
`ack` follows the commit of its message (PROTOCOL §5). A send that fails fails
alone: the others of its transaction are committed and acked all the same.

No task of the session waits for the commit: a batch is taken, handed over and
answered from whichever task gets there (the reader, the committer's callback), so a
busy sender costs no trip through the scheduler per batch. Only what must wait gets
a task: rate tokens that need a round trip to Redis, and a committer whose mailbox
is full.

On this connection a send's `ack` comes before its `message` event. The event could
otherwise come first: once committed, the row is visible to the relay (it reads a
room's unpublished rows back when another transaction there asks it to), and its
fan-out may reach the session before the answers are written. So while a batch is
in the committer, the stored events of its rooms that reach the session are held
here, and written right after the batch's answers.
"""

from __future__ import annotations

import logging
from functools import partial
from typing import TYPE_CHECKING

import trio

from ...errors import ApiError, RateLimited
from ...services.messaging import Draft, committer, take_send_tokens, take_send_tokens_if_ready
from ...services.send_committer import SendCommitter, SendOutcome, SendRequest
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

# A send waiting for its batch: its draft, the frame's ref, and when it was taken.
_Pending = tuple[Draft, str | None, float]


class SendPipeline:
    """The pending sends of one session."""

    __slots__ = ("_busy", "_committer", "_held", "_held_count", "_holding", "_pending", "_room_for_more", "_session")

    def __init__(self, session: Session) -> None:
        self._session = session
        self._pending: list[_Pending] = []
        # True from taking a batch to answering it: its tokens are being taken, or it is in the committer.
        self._busy = False
        self._room_for_more: trio.Event | None = None
        self._holding: frozenset[int] = _NO_ROOMS  # the rooms of the batch in the committer
        self._held: list[tuple[int, list[bytes]]] = []  # (room, its stored events) that came meanwhile, in order
        self._held_count = 0
        self._committer: SendCommitter | None = None  # the node's, kept at hand while its actor runs

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
        """Queue a checked send; it goes at the next `start`, and its answer follows its commit.
        Waits while too many are pending."""
        self._pending.append((draft, ref, trio.current_time()))
        if len(self._pending) >= MAX_PENDING_SENDS:
            self.start()
            self._room_for_more = event = trio.Event()
            await event.wait()

    def start(self) -> None:
        """Send what is pending unless a batch is under way (it goes once that one is answered).

        The reader calls it once it has handled every frame received so far, so the sends
        that came together (a client's window of them, in one read) go together.
        """
        if not self._busy and self._pending:
            self._next_batch()

    def _next_batch(self) -> None:
        """Send what is pending, batch by batch, until one is under way (or none is left). A session
        that is ending sends nothing more: what it had not handed over yet is dropped, unanswered."""
        session = self._session
        if session.ending:
            return
        node = session.node
        while self._pending and not self._busy:
            count = min(MAX_BATCH, node.settings.send_batch_max)
            batch, self._pending = self._pending[:count], self._pending[count:]
            if self._room_for_more is not None:
                self._room_for_more.set()
                self._room_for_more = None
            self._busy = True
            refusals = take_send_tokens_if_ready(node, session.user, len(batch))
            if refusals is None:  # a round trip to Redis first
                session.start_soon(partial(self._send_after_tokens, batch))
                return
            self._send(batch, refusals)

    async def _send_after_tokens(self, batch: list[_Pending]) -> None:
        refusals = await take_send_tokens(self._session.node, self._session.user, len(batch))
        self._send(batch, refusals)
        self._next_batch()

    def _send(self, batch: list[_Pending], refusals: list[RateLimited | None]) -> None:
        """Hand the batch's allowed sends to the committer; answered at once if there are none."""
        allowed = [draft for (draft, _, _), refusal in zip(batch, refusals, strict=True) if refusal is None]
        if not allowed:
            self._answer(batch, refusals, [])
            return
        self._holding = frozenset(draft.room_id for draft in allowed)
        request = SendRequest(self._session.user, allowed)
        node_committer = self._committer
        if node_committer is None or node_committer.actor.terminated.is_set():
            node_committer = self._committer = committer(self._session.node)

        def finish(request: SendRequest) -> None:
            self._answer(batch, refusals, request.outcomes)
            self._next_batch()

        def answered(request: SendRequest) -> None:
            # Called from the committer's task: what goes wrong here is the session's, never the committer's.
            try:
                finish(request)
            except Exception as exc:  # too many refusals (1008), or a bug
                self._session.fail(exc)

        if not node_committer.offer(request, answered):  # its mailbox is full: wait for room in a task
            async def submit() -> None:
                await node_committer.submit(request)
                finish(request)  # in the session's task: what it raises ends the session

            self._session.start_soon(submit)

    def _answer(self, batch: list[_Pending], refusals: list[RateLimited | None], outcomes: list[SendOutcome]) -> None:
        """Write the batch's answers (in one frame when the socket takes it), then what its rooms' events
        waited for. A session already ending writes nothing more."""
        session = self._session
        self._busy = False
        try:
            if session.ending:
                return
            node = session.node
            stored = iter(outcomes)
            now = trio.current_time()
            answers: list[bytes] = []
            for (_, ref, taken_at), refusal in zip(batch, refusals, strict=True):
                if refusal is not None:
                    answers.append(session.rate_limit_refusal(ref, refusal))
                    continue
                outcome = next(stored)
                if isinstance(outcome, tuple) and outcome[1] is not None:  # stored now, not a repeat
                    node.metrics.send_latency.observe(now - taken_at)
                answers.append(_answer(ref, outcome))
            session.reply_all(answers)
        finally:
            self._holding = _NO_ROOMS
            if self._held_count and not session.ending:
                self._write_held([])


def _answer(ref: str | None, outcome: SendOutcome) -> bytes:
    if isinstance(outcome, ApiError):
        return api_error_event(ref, outcome)
    if isinstance(outcome, Exception):  # a bug or a value the database refused: this send only
        log.error("a send failed", exc_info=outcome)
        return error_event(ref, "internal_error", "the message could not be stored")
    return send_ack(ref, *outcome)
