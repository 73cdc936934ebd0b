"""Joins in batches: what a burst of subscribes asks of the database and of presence, asked once.

Joining a room takes, besides the room actor's subscription, three round trips: is the user
a member (a database read), the session's presence entry and who is online now (Redis, or the
in-process presence), and the badges of the first online users for a `subscribed` with
`"presence": "diff"` and for the `joined` announcement (a database read). One join at a time,
a storm of n joins is 3n round trips that hold the database's threads and Redis's connections
while the sends wait for them. So the node's `joins` actor (started on the first subscribe)
takes every join waiting in its bounded mailbox, up to `_BATCH_MAX`, and makes each step once
for all of them: one membership query, one presence call for every room (one Redis pipeline),
one badges read. While a batch runs the next piles up: an idle node answers a join at once, a
busy one hundreds per round trip. Each step refuses or fails only the joins it concerns.

A batch costs about the same whatever its size (a database transaction in a worker thread, the
room's online snapshot read, encoded and announced, each room actor folding the announcement):
some 3 ms of CPU on a 2-core VM. Clients reconnecting after a deploy do not come all at once but
trickle in over a second or more, and answered as they come each would pay that alone: a
thousand joins spread over four seconds cost 2.9 s of CPU, a node saturated by joins while the
rooms' messages wait. So during a burst batches start at most every `join_batch_interval_s`
(0.05 s): the joins of that interval share one. A burst is joins of several sessions
(`_BURST_SESSIONS`) within one interval: a client subscribing to its rooms one after another
never waits, nor does a join after a quiet spell.

The session then subscribes with the room actor and announces itself (`services.live`). A
join whose session went away before its batch wrote anything is left out; one that went away
while its entry was being written has it taken out again, so nothing of it stays.
"""

from __future__ import annotations

import logging
import math
import time
import weakref
from collections import deque
from dataclasses import dataclass

import trio

from ..actors.actor import Actor, ActorContext
from ..errors import DependencyUnavailable, Unavailable
from ..logs import log_event
from ..node import Node
from ..storage.rooms import room_access_rows
from ..storage.users import UserSnapshot
from ..wire import JsonObject, encode_members
from .access import pair_refusal
from .presence import online_snapshots

log = logging.getLogger("roomcast.joins")

ACTOR_NAME = "joins"
# Joins per batch at most (each is a bound parameter of the membership query).
_BATCH_MAX = 500
_MAILBOX = 1024
# Sessions whose joins, within one `join_batch_interval_s`, make a burst (batches then wait for the
# interval): several clients arriving at once, not one client's rooms one after another.
_BURST_SESSIONS = 4


@dataclass(frozen=True, slots=True)
class Joined:
    """What a join gets from its batch: the room's online user ids after it, and their snapshot
    (`online`, `online_count`; None where none was asked for or it could not be read)."""

    online: list[int]
    snapshot: JsonObject | None
    at: float  # when the presence entry was written (wall time): orders the announcement
    # `snapshot` encoded as object members (wire.encode_members), once for every join of the room in the batch
    snapshot_members: bytes | None = None


class JoinRequest:
    """One session's join of one room, answered by its batch."""

    __slots__ = ("abandoned", "diff", "done", "error", "fresh", "joined", "room_id", "session_id", "user",
                 "wrote")

    def __init__(self, user: UserSnapshot, session_id: str, room_id: int, *, fresh: bool, diff: bool) -> None:
        self.user = user
        self.session_id = session_id
        self.room_id = room_id
        self.fresh = fresh  # a first join: its presence entry is written (else it is only read, if `diff`)
        self.diff = diff  # the `subscribed` reply carries the online snapshot
        self.done = trio.Event()
        self.joined: Joined | None = None
        self.error: BaseException | None = None
        self.abandoned = False  # its session stopped waiting: write nothing for it
        self.wrote = False  # its presence entry was (or was being) written: a failure must undo it

    def answer(self, joined: Joined) -> None:
        if not self.done.is_set():
            self.joined = joined
            self.done.set()

    def fail(self, error: BaseException) -> None:
        if not self.done.is_set():
            self.error = error
            self.done.set()


# Each batcher by its actor: what `ensure_joins` finds behind `ActorSystem.ensure`.
# Weak both ways, as the committers' (send_committer._BY_ACTOR).
_BY_ACTOR: weakref.WeakKeyDictionary[Actor, weakref.ref[JoinBatcher]] = weakref.WeakKeyDictionary()


def ensure_joins(node: Node) -> JoinBatcher:
    """The node's join batcher, started on first use."""
    actor = node.actors.ensure(ACTOR_NAME, lambda: JoinBatcher(node).actor)
    batcher = _BY_ACTOR[actor]()
    assert batcher is not None  # the actor's run holds it
    return batcher


async def prepare_join(node: Node, request: JoinRequest) -> Joined:
    """Have `request` checked, written and read with the others waiting; its outcome.

    Raises what refused it (`not_found`, `not_a_member`), DependencyUnavailable, or
    Unavailable when the node is stopping. Cancelled: the request is abandoned.
    """
    return await ensure_joins(node).submit(request)


class JoinBatcher:
    """The node's one `joins` actor: a bounded mailbox of JoinRequests, answered a batch at a time."""

    def __init__(self, node: Node) -> None:
        self.node = node
        self.batches = 0
        self.joins = 0
        self._held: deque[JoinRequest] = deque()  # taken from the mailbox, left for the next batch
        self._interval = node.settings.join_batch_interval_s
        self._last_batch_at = -math.inf  # when the last batch started (trio time)
        self._recent: deque[tuple[float, str]] = deque(maxlen=64)  # (when taken, session) of the last joins
        self.actor = Actor(ACTOR_NAME, self.run, mailbox_size=_MAILBOX, describe_extra=self.describe)
        _BY_ACTOR[self.actor] = weakref.ref(self)

    async def submit(self, request: JoinRequest) -> Joined:
        try:
            try:
                await self.actor.send(request)
            except trio.BrokenResourceError:
                raise Unavailable("the node is stopping; try again") from None
            await self.actor.wait_unless_terminated(
                request.done, lambda: request.fail(Unavailable("the node is stopping; try again")))
        except BaseException:
            request.abandoned = True
            raise
        if request.error is not None:
            raise request.error
        assert request.joined is not None  # answered, or failed with an error
        return request.joined

    async def run(self, ctx: ActorContext) -> None:
        try:
            while True:
                batch = await self._take(ctx.mailbox)
                try:
                    await self._prepare(batch)
                except Exception as exc:  # a bug: this batch's joins fail, the batcher goes on
                    log.error("a batch of joins failed", exc_info=exc)
                    for request in batch:
                        request.fail(exc)
                finally:
                    for request in batch:  # cancelled mid-batch: try again
                        request.fail(Unavailable("the node is stopping; try again"))
        finally:
            stopping = Unavailable("the node is stopping; try again")
            while self._held:
                self._held.popleft().fail(stopping)
            while True:
                try:
                    ctx.mailbox.receive_nowait().fail(stopping)
                except (trio.WouldBlock, trio.ClosedResourceError, trio.EndOfChannel):
                    break

    async def _take(self, mailbox: trio.MemoryReceiveChannel[JoinRequest]) -> list[JoinRequest]:
        """What waits, oldest first, up to `_BATCH_MAX` joins (at least one); during a burst, not
        before `join_batch_interval_s` has passed since the last batch started."""
        first = self._held.popleft() if self._held else await mailbox.receive()
        try:
            await trio.lowlevel.checkpoint()  # joiners already woken in this round queue theirs first
            # A burst: gather what comes until the interval is up (a full batch does not wait).
            due = self._last_batch_at + self._interval
            if trio.current_time() < due and len(self._held) + 1 < _BATCH_MAX and self._in_burst():
                with trio.move_on_at(due):
                    while len(self._held) + 1 < _BATCH_MAX:
                        self._held.append(await mailbox.receive())
        except BaseException:
            self._held.appendleft(first)
            raise
        self._last_batch_at = now = trio.current_time()
        batch = [first]
        while len(batch) < _BATCH_MAX:
            if self._held:
                batch.append(self._held.popleft())
                continue
            try:
                batch.append(mailbox.receive_nowait())
            except trio.WouldBlock:
                break
        self._recent.extend((now, request.session_id) for request in batch)
        return batch

    def _in_burst(self) -> bool:
        """Whether the joins taken within the last interval came from `_BURST_SESSIONS` sessions or more."""
        since = trio.current_time() - self._interval
        return len({session for at, session in self._recent if at >= since}) >= _BURST_SESSIONS

    async def _prepare(self, batch: list[JoinRequest]) -> None:
        node = self.node
        waiting = [request for request in batch if not request.abandoned]
        if not waiting:
            return
        self.batches += 1
        self.joins += len(waiting)
        try:
            rows = await node.database.read(room_access_rows, {(r.room_id, r.user.id) for r in waiting})
        except DependencyUnavailable as exc:
            for request in waiting:
                request.fail(exc)
            return
        admitted = []
        for request in waiting:
            refusal = pair_refusal(rows, request.user, request.room_id)
            if refusal is not None:
                request.fail(refusal)
            else:
                admitted.append(request)

        # Presence: every first join's entry, and the online list of each room someone joins (or
        # rejoins with a diff), in one call. What was abandoned meanwhile is not written.
        for request in admitted:
            if request.abandoned:  # its session went away during the membership read: nobody waits
                request.fail(Unavailable("the join was abandoned"))
        writes = [request for request in admitted if request.fresh and not request.done.is_set()]
        reads = {request.room_id for request in admitted if not request.fresh and request.diff
                 and not request.done.is_set()}
        for request in writes:
            request.wrote = True
        try:
            online = await node.presence.join_many(
                [(request.room_id, request.user.id, request.session_id) for request in writes], reads)
        except DependencyUnavailable as exc:
            for request in admitted:
                if request.fresh or request.diff:
                    request.fail(exc)
                else:  # a rejoin without a diff asks nothing of presence
                    request.answer(Joined([], None, 0.0))
            return
        at = time.time()
        await self._undo_abandoned(writes)

        # Snapshots: for `subscribed` replies with a diff, and for every first join's announcement.
        rooms = {request.room_id: rows.tenants[request.room_id] for request in admitted
                 if not request.done.is_set() and (request.fresh or request.diff) and request.room_id in online}
        try:
            snapshots = await online_snapshots(node, {room_id: (tenant, online[room_id])
                                                      for room_id, tenant in rooms.items()})
        except DependencyUnavailable as exc:
            snapshots = {}
            for request in admitted:
                if request.diff:  # its reply needs the snapshot; a first join is undone by its session
                    request.fail(exc)
        encoded = {room_id: encode_members(snapshot) for room_id, snapshot in snapshots.items()}
        for request in admitted:
            room_id = request.room_id
            request.answer(Joined(online.get(room_id, []), snapshots.get(room_id), at, encoded.get(room_id)))

    async def _undo_abandoned(self, writes: list[JoinRequest]) -> None:
        """Take out the entries of joins whose session went away while they were being written."""
        for request in writes:
            if request.abandoned:
                request.fail(Unavailable("the join was abandoned"))
                try:
                    await self.node.presence.leave(request.room_id, request.user.id, request.session_id)
                except DependencyUnavailable as exc:  # not refreshed by this node any more: it expires
                    log_event(log, "joins.undo_failed", logging.DEBUG, room=request.room_id, error=str(exc))

    def describe(self) -> JsonObject:
        return {"batches": self.batches, "joins": self.joins, "held": len(self._held)}
