"""Group commit: the sends waiting anywhere on a node are stored together, several rooms per transaction.

One committer per node (an actor under the root, started on the first send) takes the
sends of every `/ws` session and REST request from one bounded mailbox. While a
transaction runs the next sends pile up, and the next transaction takes them all (up to
`send_batch_max` messages): no added delay when the node is idle, fewer commits the
busier it gets. Each sender waits for its own request's outcomes, which are set only
after the commit.

Within a transaction the drafts are stored in room-id order (stable, so a request's
drafts to one room keep the order sent), so every transaction takes its room locks in
the same order and two of them (on two nodes, say) never deadlock. The batch is stored
whole (`store_many`: a few statements whatever its size, see send_store.py). A draft
refused (not a member, the room inactive, a repeated client_id) is an outcome of its own
and leaves the others be; a batch that fails unexpectedly makes the transaction start
over draft by draft (`store`), each in a savepoint, so that the draft to blame fails alone.
What fails the transaction as a whole (the database is down) is the outcome of every send
in it, and of no other.
"""

from __future__ import annotations

import logging
import weakref
from collections import defaultdict, deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import trio
from sqlalchemy.orm import Session

from ..actors.actor import Actor, ActorContext
from ..errors import ApiError, Unavailable
from ..logs import log_event
from ..node import Node
from ..storage.commit_status import commit_status, transaction_id
from ..storage.database import DatabaseUnavailable, is_unavailable
from ..storage.streams import Append
from ..storage.users import UserSnapshot
from ..wire import JsonObject

if TYPE_CHECKING:
    from .send_store import Draft

log = logging.getLogger("roomcast.messaging")

ACTOR_NAME = "committer"
# How long a batch whose COMMIT went unanswered waits to learn whether it was stored, asking again
# every _SETTLE_RETRY_S (the database may be out of reach all along).
_SETTLE_S = 10.0
_SETTLE_RETRY_S = 0.25

# The message and, if it was stored now, its event as stored (None: a repeated client_id's
# original); or why the draft was refused (ApiError); or, for a draft that failed
# unexpectedly on its own, the exception it raised.
SendOutcome = tuple[JsonObject, bytes | None] | Exception
# What storing one draft in the open transaction gives: the message and its outbox row
# (None for a repeated client_id: the original comes back); or a refusal (ApiError).
Stored = tuple[JsonObject, Append | None]
StoreDraft = Callable[[Node, Session, UserSnapshot, "Draft"], Stored]
# Storing a whole batch (senders and drafts, in room-id order): an outcome per draft, a refusal
# as an ApiError; anything raised fails the transaction (the committer then stores draft by draft).
StoreDrafts = Callable[[Node, Session, Sequence[tuple[UserSnapshot, "Draft"]]], list[Stored | ApiError]]


@dataclass(eq=False, slots=True)
class SendRequest:
    """The drafts of one sender (a /ws session's pending sends, or one REST send), answered together.

    Its sender waits for `done` (`SendCommitter.submit`), or is called back with it answered
    (`SendCommitter.offer`): from whichever task answers it, so the callback must not block or raise.
    """

    sender: UserSnapshot
    drafts: Sequence[Draft]
    outcomes: list[SendOutcome] = field(default_factory=list)
    done: trio.Event = field(default_factory=trio.Event)
    on_answer: Callable[[SendRequest], None] | None = None

    def answer(self, outcomes: list[SendOutcome]) -> None:
        if not self.done.is_set():
            self.outcomes = outcomes
            self.done.set()
            if self.on_answer is not None:
                self.on_answer(self)

    def fail(self, error: Exception) -> None:
        self.answer([error] * len(self.drafts))


# Each committer by its actor: what `ensure_committer` finds behind `ActorSystem.ensure`.
# Weak both ways: the actor keeps its committer alive (its run is the committer's), and an
# entry must not keep the actor alive through it once the node lets the actor go.
_BY_ACTOR: weakref.WeakKeyDictionary[Actor, weakref.ref[SendCommitter]] = weakref.WeakKeyDictionary()


def ensure_committer(node: Node, store: StoreDraft, store_many: StoreDrafts) -> SendCommitter:
    """The node's committer, started on first use: it stores each batch with `store_many`, or
    draft by draft with `store` after a batch failed unexpectedly."""
    actor = node.actors.ensure(ACTOR_NAME, lambda: SendCommitter(node, store, store_many).actor)
    committer = _BY_ACTOR[actor]()
    assert committer is not None  # the actor's run holds it
    return committer


class _DraftFailed(Exception):
    """One draft of a shared transaction failed unexpectedly: that transaction is rolled back."""


class SendCommitter:
    """The node's one committer of sends: a bounded mailbox of SendRequests, one transaction per batch."""

    def __init__(self, node: Node, store: StoreDraft, store_many: StoreDrafts) -> None:
        settings = node.settings
        self.node = node
        self.store = store
        self.store_many = store_many
        self.max_rows = settings.send_batch_max
        # SQLite has one writer: a second transaction would only queue behind the first.
        self.workers = 1 if node.database.is_sqlite else settings.send_committers
        self.transactions = 0  # committed, since the node started
        self.messages = 0  # stored by those transactions
        self._held: deque[SendRequest] = deque()  # taken from the mailbox, left for the next batch
        self._outstanding: set[SendRequest] = set()  # submitted, their senders waiting
        self._open = 0  # transactions under way (PostgreSQL: up to `workers`)
        self._waiting: trio.Event | None = None  # while workers wait for a reason to start a transaction
        self.actor = Actor(ACTOR_NAME, self.run, mailbox_size=settings.send_queue_max,
                           describe_extra=self.describe, on_terminated=self._terminated)
        _BY_ACTOR[self.actor] = weakref.ref(self)

    async def submit(self, request: SendRequest) -> list[SendOutcome]:
        """Queue `request` (waiting while the mailbox is full) and return its outcomes once committed."""
        # Answered by a worker, or by the run's end; and should the actor end for good with this
        # request lost between its mailbox and a batch, by `_terminated`: its sender is not left waiting.
        self._outstanding.add(request)
        try:
            try:
                try:
                    self.actor.tell(request)  # no trip through the scheduler while there is room
                except trio.WouldBlock:
                    await self.actor.send(request)
                self._nudge()
            except trio.BrokenResourceError:
                raise Unavailable("the node is stopping; try again") from None
            if self.actor.terminated.is_set():
                request.fail(Unavailable("the node is stopping; try again"))
            await request.done.wait()
        finally:
            self._outstanding.discard(request)
        return request.outcomes

    def offer(self, request: SendRequest, on_answer: Callable[[SendRequest], None]) -> bool:
        """Queue `request` if the mailbox has room now, and call `on_answer(request)` once it is
        answered (committed, refused, or the node stopping); False, with nothing queued, when the
        mailbox is full: `submit` waits for room. No trip through the scheduler either way."""

        def answered(request: SendRequest) -> None:
            self._outstanding.discard(request)
            on_answer(request)

        request.on_answer = answered
        try:
            self.actor.tell(request)
        except trio.WouldBlock:
            request.on_answer = None
            return False
        except trio.BrokenResourceError:
            request.fail(Unavailable("the node is stopping; try again"))
            return True
        self._outstanding.add(request)
        self._nudge()
        if self.actor.terminated.is_set():
            request.fail(Unavailable("the node is stopping; try again"))
        return True

    def _terminated(self) -> None:
        stopping = Unavailable("the node is stopping; try again")
        for request in list(self._outstanding):
            request.fail(stopping)

    async def run(self, ctx: ActorContext) -> None:
        try:
            async with trio.open_nursery() as nursery:
                for _ in range(self.workers):
                    nursery.start_soon(self._work, ctx.mailbox)
        finally:
            # Stopped (the node is stopping) or crashed: what waits is answered "try again"
            # rather than left waiting for a run that may never come.
            self._refuse_waiting(ctx.mailbox)

    async def _work(self, mailbox: trio.MemoryReceiveChannel[SendRequest]) -> None:
        while True:
            batch = await self._take(mailbox)  # counted in `_open` from here
            counted = True

            def ended() -> None:
                """The batch's transaction is over (its outcome may still be unknown): it no longer counts."""
                nonlocal counted
                if counted:
                    counted = False
                    self._open -= 1
                    self._nudge()

            try:
                await self._commit(batch, ended)
            finally:
                ended()
                # Cancelled or crashed mid-transaction: what is still unanswered has an unknown outcome.
                # (The exception is made only then: one per request per batch shows in a busy profile.)
                for request in batch:
                    if not request.done.is_set():
                        request.fail(Unavailable("the message may not have been stored; try again"))

    async def _take(self, mailbox: trio.MemoryReceiveChannel[SendRequest]) -> list[SendRequest]:
        """The next batch: what waits, oldest first, up to max_rows messages (always at least one request).

        While another transaction is open, a second one starts only for a backlog of half a
        batch or more: a few sends wait for the open one to end and go in the next, whole.
        Under a CPU-bound load two half batches cost more than one whole one (each
        transaction's statements cost about the same whatever their rows), and they would
        wait no less; a backlog that large is what a second transaction is worth opening for.
        """
        while True:
            if not self._held:
                self._held.append(await mailbox.receive())
            # Senders already woken in this scheduling round queue theirs before the batch closes.
            await trio.lowlevel.checkpoint()  # cancelled: what was taken stays held, for the next run
            if not self._held:
                # The other worker took it meanwhile, and its transaction may be over already.
                continue
            if not self._open or self._pull_waiting(mailbox) >= self.max_rows // 2:
                break
            if self._waiting is None:  # one for every worker waiting: set when a transaction ends or a send comes
                self._waiting = trio.Event()
            await self._waiting.wait()
        self._open += 1  # no checkpoint from the decision to here: two workers never both decide alone
        first = self._held.popleft()
        batch, rows = [first], len(first.drafts)
        while rows < self.max_rows:
            if self._held:
                request = self._held.popleft()
            else:
                try:
                    request = mailbox.receive_nowait()
                except trio.WouldBlock:
                    break
            if rows + len(request.drafts) > self.max_rows:
                self._held.appendleft(request)
                break
            batch.append(request)
            rows += len(request.drafts)
        return batch

    def _nudge(self) -> None:
        """Something changed for a worker waiting to start (a transaction ended, a send came)."""
        if self._waiting is not None:
            self._waiting.set()
            self._waiting = None

    def _pull_waiting(self, mailbox: trio.MemoryReceiveChannel[SendRequest]) -> int:
        """Move what waits in the mailbox into `_held`, up to half a batch; the drafts held."""
        drafts = sum(len(request.drafts) for request in self._held)
        while drafts < self.max_rows // 2:
            try:
                request = mailbox.receive_nowait()
            except trio.WouldBlock:
                break
            self._held.append(request)
            drafts += len(request.drafts)
        return drafts

    def _refuse_waiting(self, mailbox: trio.MemoryReceiveChannel[SendRequest]) -> None:
        stopping = Unavailable("the node is stopping; try again")
        while self._held:
            self._held.popleft().fail(stopping)
        while True:
            try:
                mailbox.receive_nowait().fail(stopping)
            except (trio.WouldBlock, trio.ClosedResourceError, trio.EndOfChannel):
                return

    async def _commit(self, batch: list[SendRequest], ended: Callable[[], None]) -> None:
        # In room-id order (a stable sort: each room's drafts keep the order they came in).
        entries = sorted(((request.sender, draft, r, d) for r, request in enumerate(batch)
                          for d, draft in enumerate(request.drafts)), key=lambda entry: entry[1].room_id)
        node, store, store_many = self.node, self.store, self.store_many
        # The work done and about to commit (PostgreSQL: with the transaction's id): should the
        # COMMIT go unanswered, `_settle` finds out whether it was stored after all.
        to_commit: list[tuple[int | None, list[Stored | Exception]]] = []
        txid_of = None if node.database.is_sqlite else transaction_id

        def ready(session: Session, outcomes: list[Stored | Exception]) -> list[Stored | Exception]:
            to_commit.append((txid_of(session) if txid_of is not None else None, outcomes))
            return outcomes

        def together(session: Session) -> list[Stored | Exception]:
            try:
                # A refusal is an outcome (decided before any write): the others stand.
                stored: list[Stored | Exception] = list(
                    store_many(node, session, [(sender, draft) for sender, draft, _, _ in entries]))
            except Exception as exc:  # something broke the transaction: start over, draft by draft
                if is_unavailable(exc):
                    raise  # no draft's fault: the gateway makes it DatabaseUnavailable for all
                raise _DraftFailed from exc
            return ready(session, stored)

        def each_in_a_savepoint(session: Session) -> list[Stored | Exception]:
            # The slow path, taken only after an unexpected failure: a savepoint per draft undoes
            # exactly the draft that fails. Failing to take or undo one (the connection is gone,
            # say) fails the transaction as a whole.
            outcomes: list[Stored | Exception] = []
            for sender, draft, _, _ in entries:
                savepoint = session.begin_nested()
                try:
                    outcome: Stored | Exception = store(node, session, sender, draft)
                except Exception as exc:
                    if is_unavailable(exc):
                        raise
                    savepoint.rollback()
                    outcomes.append(exc)
                else:
                    savepoint.commit()
                    outcomes.append(outcome)
            return ready(session, outcomes)

        started = trio.current_time()
        try:
            try:
                stored = await self.node.database.write(together)
            except _DraftFailed:
                stored = await self.node.database.write(each_in_a_savepoint)
        except ApiError as exc:  # the transaction as a whole was refused, or the database is down
            if isinstance(exc, DatabaseUnavailable) and to_commit:
                # Settling may take `_SETTLE_S` while the database is away: the sends that come
                # meanwhile start a transaction of their own (and are answered `unavailable` at
                # once while it is) rather than wait behind one that holds nothing any more.
                ended()
                if await self._settle(to_commit[-1][0]):
                    self._committed(batch, entries, to_commit[-1][1], trio.current_time() - started)
                    return
            for request in batch:
                request.fail(exc)
            return
        except Exception as exc:  # a bug outside any one draft: this batch's sends fail, the committer goes on
            log.error("a batch of sends failed", exc_info=exc)
            for request in batch:
                request.fail(exc)
            return
        self._committed(batch, entries, stored, trio.current_time() - started)

    async def _settle(self, txid: int | None) -> bool:
        """Whether a transaction whose COMMIT went unanswered was stored (PostgreSQL, by its id), asking
        for up to `_SETTLE_S` while the database is out of reach; False when it was not, or when
        that is still unknown by then (its senders are told to try again: a client_id makes that safe).
        """
        if txid is None:
            return False  # SQLite: a COMMIT that fails has not committed
        deadline = trio.current_time() + _SETTLE_S
        while True:
            try:
                status = await self.node.database.read(commit_status, txid)
            except DatabaseUnavailable:
                status = None
            if status == "committed" or status == "aborted":
                log_event(log, "send.commit_settled", logging.WARNING, txid=txid, status=status)
                return status == "committed"
            if trio.current_time() >= deadline:
                log_event(log, "send.commit_in_doubt", logging.ERROR, txid=txid)
                return False
            await trio.sleep(_SETTLE_RETRY_S)

    def _committed(self, batch: list[SendRequest], entries: list[tuple[UserSnapshot, Draft, int, int]],
                   stored: list[Stored | Exception], took_s: float) -> None:
        # Each filled in below; an exception is made only for one that is not (none, as things are).
        answers: list[list[SendOutcome | None]] = [[None] * len(request.drafts) for request in batch]
        rows: defaultdict[int, list[Append]] = defaultdict(list)  # room -> its new outbox rows, in seq order
        for (_, _, r, d), outcome in zip(entries, stored, strict=True):
            if isinstance(outcome, Exception):
                answers[r][d] = outcome
                continue
            message, row = outcome
            if row is not None:
                rows[row.room_id].append(row)
            answers[r][d] = (message, None if row is None else row.data)
        self.transactions += 1
        self.node.database.wrote_for(request.sender.id for request in batch)
        if rows:
            count = sum(len(room_rows) for room_rows in rows.values())
            self.messages += count
            for room_id, room_rows in rows.items():
                self.node.notify_committed(room_id, room_rows)  # the relay appends them all in one call
            self.node.metrics.committed(count)
            self.node.metrics.send_transaction.observe(took_s)  # as counted: a transaction that stored messages
        for request, answer in zip(batch, answers, strict=True):
            request.answer([Unavailable("not stored") if outcome is None else outcome for outcome in answer])

    def describe(self) -> JsonObject:
        return {"transactions": self.transactions, "messages": self.messages, "held": len(self._held)}
