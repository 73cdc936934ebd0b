"""The room actor: orders and heals one room's events and fans them out (DESIGN.md §2, §3).

It consumes the room's stream from its last position (through the process's one
StreamReader, which hands a batch that needs no waiting straight to the fan-out while the
actor waits idle: `take_now`), delivers stored events in strict `seq` order, fetches any gap
from the database, and hands each event's bytes -- encoded once, the same object
for everyone -- to every subscriber without ever waiting for one. The stored
events of one stream batch go to each subscriber together (`push_many`), so a
busy room costs a socket write per subscriber per batch, not per event. Presence
records are not fanned out one by one: they are folded over `presence_window_s`
(presence_fold.py) and each subscriber gets one event per window. Subscribes wait
behind the room's events: each step hands out what the stream reader delivered, then
attaches a few waiting subscribers, so a join storm never holds a message back.
Replays that need events `recent` could hold share one database read that fills it.

State that must survive a crash (subscribers, last seq delivered, stream
position, recent events) lives on the RoomActor object, not in the task: a
restarted run carries on from there, so subscribers neither lose nor get
duplicate events.

A database outage while loading, healing a gap or replaying is waited out in place,
with backoff (DESIGN.md §11): the actor keeps its position and carries on when the
database answers; meanwhile its mailbox fills and the stream reader holds its
batches back.
"""

from __future__ import annotations

import logging
import math
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from itertools import count, islice
from typing import Any, Protocol, TypeVar

import trio

from ..logs import log_event
from ..storage.database import Database
from ..storage.outbox import events_after, room_last_seq, room_last_seqs
from ..storage.streams import StreamUnavailable
from .actor import Actor, ActorContext, Restart
from .backoff import Backoff, until_available
from .presence_fold import PresenceFold, is_presence_record
from .read_order import ReadOrder
from .stream_reader import Resync, StreamBatch, StreamReader

log = logging.getLogger("roomcast.actors.room")
T = TypeVar("T")

# Rows per database round trip when healing a gap or replaying.
_FETCH_CHUNK = 500
# Subscribes attached per step when several wait: between steps, the room's events go first.
_ATTACH_PER_STEP = 16
# Events read at least when `recent` is extended back for a replay (if it has room for them).
_BACKFILL_MIN = 64
# A room's presence window is stretched past presence_window_s in proportion to its subscribers
# beyond this many, up to this long (Phoenix.Presence broadcasts every 1.5 s).
_PRESENCE_SUBSCRIBERS_PER_WINDOW = 100
_PRESENCE_WINDOW_MAX_S = 1.5
# Each run's attachment to the stream reader, numbered across every room actor of the process: one that
# replaces an ended actor of its room must not share a number with it (its batches, its detach).
_ATTACHMENTS = count(1)
# Mail that only wakes a room actor's wait (`_maybe_idle`).
_WAKE = object()


@dataclass(frozen=True, slots=True)
class _Failed:
    """What failed in `take_now`, raised by the run as if it had failed there."""

    error: Exception


class Subscriber(Protocol):
    """What a room actor delivers to: typically one WebSocket session's outbound queue."""

    @property
    def session_id(self) -> str | None:
        """Transient events that this session sent (typing) are not handed back to it; None: gets all."""
        ...

    def push(self, data: bytes) -> bool:
        """Queue one encoded event without blocking; False when the queue is full.

        `data` is shared by every subscriber of the room: keep it, do not change it.
        """
        ...

    def push_many(self, room_id: int, data: list[bytes]) -> bool:
        """Queue several stored events of room `room_id`, in order, without blocking; False when
        they do not all fit.

        The list is shared by every subscriber it is handed to in one fan-out: do not change it.
        """
        ...

    def overflowed(self, room_id: int) -> None:
        """The room dropped this subscriber: `push` returned False, or a replay to it stalled (close with 1013)."""
        ...

    def free_slots(self) -> int:
        """How many stored events a replay may push to it now (0 when it has no room)."""
        ...

    async def wait_for_room(self, n: int) -> bool:
        """Return once it has room for up to `n` more (it may settle for fewer); False if it takes no more.

        Replays wait here, so it must wake as its socket drains or it closes.
        """
        ...


class RoomUnavailable(Exception):
    """The room's actor ended before it could take the subscription."""


@dataclass(eq=False, slots=True)
class Subscription:
    subscriber: Subscriber
    # Stored events with seq below this are not for this subscriber (it has them already).
    next_seq: int
    # False while it catches up on older events (replay); live events wait for the replay.
    live: bool
    active: bool = True
    # The replay's wait for room, cancelled when the subscription ends.
    waiting: trio.CancelScope | None = None
    # Presence as `presence_diff` events (opted in) rather than PROTOCOL §5 `presence` events.
    presence_diff: bool = False

    def end(self) -> None:
        self.active = False
        if self.waiting is not None:
            self.waiting.cancel()


class _Reply:
    """The answer to one Subscribe message."""

    def __init__(self) -> None:
        self.done = trio.Event()
        self.value = 0
        self.error: BaseException | None = None
        self.abandoned = False  # nobody waits for the answer any more: do not subscribe

    def abandon(self) -> None:
        self.abandoned = True

    def set(self, value: int) -> None:
        self.value = value
        self.done.set()

    def fail(self, error: BaseException) -> None:
        if not self.done.is_set():
            self.error = error
            self.done.set()

    async def wait(self, actor: Actor) -> int:
        """The answer of `actor` (the room's), or RoomUnavailable if it ends for good first."""
        await actor.wait_unless_terminated(self.done, lambda: self.fail(RoomUnavailable("the room actor ended")))
        if self.error is not None:
            raise self.error
        return self.value


@dataclass(slots=True)
class Subscribe:
    subscriber: Subscriber
    since: int | None
    on_attached: Callable[[int], None] | None
    presence_diff: bool = False
    reply: _Reply = field(default_factory=_Reply)


class RoomActor:
    """One room: its subscribers and positions (kept across restarts) and its behaviour, `run`."""

    def __init__(self, room_id: int, *, database: Database, reader: StreamReader, idle_s: float,
                 replay_buffer: int = 1024, replay_stall_s: float = 60.0, mailbox_size: int = 256,
                 on_idle: Callable[[RoomActor], bool] = lambda room: True, retry: Backoff | None = None,
                 presence_window_s: float = 0.1, presence_diff_limit: int = 20) -> None:
        self.room_id = room_id
        self.database = database
        self.retry = retry or Backoff(base=0.1, cap=5.0)
        self.reader = reader
        self.idle_s = idle_s
        self.replay_stall_s = replay_stall_s
        self.on_idle = on_idle
        self.actor = Actor(f"room:{room_id}", self.run, restart=Restart.TRANSIENT, mailbox_size=mailbox_size,
                           describe_extra=self.describe)
        self.subscriptions: dict[int, Subscription] = {}  # by id(subscriber)
        self.last_seq: int | None = None  # the last stored event delivered; None until first loaded
        self.position: str | None = None  # id of the last stream entry handled
        # The newest delivered events, contiguous in seq: replays come from here when they can.
        self.recent: deque[tuple[int, bytes]] = deque(maxlen=replay_buffer)
        # Stored events accepted (last_seq already past them) but not yet fanned out, contiguous in seq.
        # Flushed before every await, so other tasks never see it non-empty.
        self._unsent: list[tuple[int, bytes]] = []
        self.delivered = 0
        self.deliveries = 0  # events handed to subscribers (an event to n of them counts n), for metrics
        self._epoch = 0
        self._idle_scope: trio.CancelScope | None = None
        self._waiting_unscoped = False  # waiting for mail with nothing due (no `_idle_scope`)
        self._replays: trio.Nursery | None = None
        # Presence changes wait here until `_presence_due`, then go out as one event per subscriber.
        self.presence_window_s = presence_window_s
        self._presence = PresenceFold(room_id, presence_diff_limit)
        self._presence_due = math.inf
        self._reads = ReadOrder()  # drops a user's `read` that another node's overtook on the stream
        # Subscribes received, not yet attached: a join storm must not hold the room's events back.
        self._joining: deque[Subscribe] = deque()
        self._backfilling: trio.Event | None = None  # set when the running read into `recent` is done

    # ------------------------------------------------------------------ called by RoomHub

    def remove(self, subscriber: Subscriber) -> None:
        """Stop delivering to `subscriber` (immediately; safe from any task, never blocks)."""
        subscription = self.subscriptions.pop(id(subscriber), None)
        if subscription is not None:
            subscription.end()
            self._maybe_idle()

    def describe(self) -> dict[str, Any]:
        return {
            "room": self.room_id,
            "subscribers": len(self.subscriptions),
            "replaying": sum(1 for s in self.subscriptions.values() if not s.live),
            "joining": len(self._joining),
            "last_seq": self.last_seq,
            "stream_position": self.position,
            "delivered": self.delivered,
        }

    # ------------------------------------------------------------------ the behaviour

    async def run(self, ctx: ActorContext) -> str | None:
        first_run = self.last_seq is None
        if first_run:
            # The stream's end first, then the room's last seq: an event published before
            # that end was committed before the read that follows, so it is history, and one
            # published after it is read from the stream. Transient events (presence, typing,
            # reads) have no history to fetch: with the end known before any subscriber is
            # answered, none of them can fall between a subscribe and the reader's first read.
            self.position = await self._stream_end()
            self.last_seq = await self._read(room_last_seq, self.room_id)
        self._epoch = epoch = next(_ATTACHMENTS)
        # From our last position; on a first run (None) the reader starts at the stream's
        # end and sends Resync, which fetches anything committed in between.
        self.reader.attach(self.room_id, self.actor, self.position, epoch, self.take_now)
        try:
            async with trio.open_nursery() as replays:
                self._replays = replays
                for subscription in self.subscriptions.values():
                    if not subscription.live:
                        replays.start_soon(self._replay, subscription)
                if not first_run:
                    # The run before may have died holding a Resync; whatever it was, catch up.
                    await self._fill_from_database()
                reason = await self._serve(ctx)
                replays.cancel_scope.cancel()
                return reason
        finally:
            self._replays = None
            self.reader.detach(self.room_id, epoch)

    async def _read(self, work: Callable[..., T], *args: Any, replica: bool = False) -> T:
        """`database.read` (or `replica_read`), waiting out an outage (with backoff) instead of crashing."""
        read = self.database.replica_read if replica else self.database.read
        return await until_available(lambda: read(work, *args), self.retry, log,
                                     "room.waiting_for_database", room=self.room_id)

    async def _stream_end(self) -> str | None:
        """The room stream's newest id; None if the backend is down (the reader then finds it)."""
        try:
            return (await self.reader.backend.last_ids([self.room_id]))[self.room_id]
        except StreamUnavailable:
            return None

    async def _serve(self, ctx: ActorContext) -> str:
        mailbox = ctx.mailbox
        while True:
            message: object = None
            if self._joining:
                # Subscribes wait behind events: whatever the stream reader has handed over
                # meanwhile goes out first, then the next few subscribes are attached.
                await trio.lowlevel.checkpoint()
                try:
                    message = mailbox.receive_nowait()
                except trio.WouldBlock:
                    message = None
            elif self.subscriptions and self._presence_due == math.inf:
                # Nothing is due: no cancel scope, the cost of every wait of a busy room. If the
                # last subscriber leaves meanwhile, `_maybe_idle` wakes this wait to start the idle clock.
                self._waiting_unscoped = True
                try:
                    message = await mailbox.receive()
                finally:
                    self._waiting_unscoped = False
            else:
                deadline = trio.current_time() + self.idle_s if not self.subscriptions else math.inf
                with trio.CancelScope(deadline=min(deadline, self._presence_due)) as waiting:
                    self._idle_scope = waiting
                    message = await mailbox.receive()
                self._idle_scope = None
                if waiting.cancelled_caught:
                    if trio.current_time() >= self._presence_due:
                        self._emit_presence()
                        continue
                    # Idle: no subscriber and nothing received for idle_s. Leave the hub and refuse
                    # mail in this same step, so a new subscriber gets a new actor, never a dying one.
                    if not self.subscriptions and self.actor.backlog == 0 and self.on_idle(self):
                        self.actor.close_mailbox()
                        return "idle"
                    continue
            if message is not None:
                try:
                    await self._handle(message)
                    # Whatever else already waits joins this fan-out: under load, one socket write
                    # per subscriber carries many events. The mailbox is bounded, so this ends.
                    while True:
                        try:
                            message = mailbox.receive_nowait()
                        except (trio.WouldBlock, trio.EndOfChannel):
                            break
                        await self._handle(message)
                finally:
                    self._flush()  # what was accepted goes out, even if a later entry crashed the run
            self._attach_waiting()
            if trio.current_time() >= self._presence_due:
                self._emit_presence()  # a busy mailbox does not hold the window open

    def take_now(self, batch: StreamBatch) -> bool:
        """Fan out a stream batch in the caller's task (the stream reader's), if the run could do nothing else.

        A busy room's fast path: no mailbox, no task switch. Only while the run waits for mail
        with nothing due (no subscribe waiting, no presence window open) and no message on its
        way to it, and only for what needs no waiting: stored events that follow on last_seq
        and transient events other than presence. The rest goes through the mailbox (False).
        What fails here is the actor's: its run raises it, and its supervisor restarts it.
        """
        if (not self._waiting_unscoped or not self.actor.waiting_for_mail or batch.epoch != self._epoch
                or self.last_seq is None):
            return False
        expected = self.last_seq + 1
        for entry in batch.entries:
            if entry.seq is None:
                if is_presence_record(entry.data):
                    return False  # folded over a window the waiting run does not time
            elif entry.seq > expected:
                return False  # a gap: filled from the database
            elif entry.seq == expected:
                expected += 1
        try:
            try:
                for entry in batch.entries:
                    if entry.seq is None:
                        self._flush()  # keep stored and transient events in stream order
                        self._fan_out(entry.data, entry.origin)
                    elif entry.seq > self.last_seq:
                        self._accept(entry.seq, entry.data)
                    self.position = entry.id
            finally:
                self._flush()  # what was accepted goes out, even if a later entry failed
        except Exception as exc:
            try:
                self.actor.tell(_Failed(exc))
            except (trio.WouldBlock, trio.BrokenResourceError, trio.ClosedResourceError):  # the run is ending
                log.error("a fan-out of room %s failed", self.room_id, exc_info=exc)
        return True

    async def _handle(self, message: object) -> None:
        if isinstance(message, _Failed):
            raise message.error
        if isinstance(message, StreamBatch):
            if message.epoch != self._epoch:
                return  # read for an earlier run; this run's attachment re-reads it
            for entry in message.entries:
                if entry.seq is None:
                    # A presence change waits for its window; other transient events go now.
                    if not (is_presence_record(entry.data) and self._fold_presence(entry.data)):
                        self._flush()  # keep stored and transient events in stream order
                        self._fan_out(entry.data, entry.origin)
                else:
                    await self._stored(entry.seq, entry.data)
                self.position = entry.id
        elif isinstance(message, Resync):
            await self._fill_from_database()
        elif isinstance(message, Subscribe):
            self._joining.append(message)  # attached after the events that wait with it (`_serve`)
        elif message is _WAKE:
            pass
        else:
            log_event(log, "room.unknown_message", logging.WARNING, room=self.room_id, type=type(message).__name__)

    # ------------------------------------------------------------------ stored events, in order

    async def _stored(self, seq: int, data: bytes) -> None:
        assert self.last_seq is not None
        if seq <= self.last_seq:
            return  # already delivered (a republished or re-read entry)
        if seq > self.last_seq + 1:
            await self._fill_from_database(upto=seq - 1)
        self._accept(seq, data)

    async def _fill_from_database(self, upto: int | None = None) -> None:
        """Deliver stored events after last_seq (up to `upto`) from the outbox table."""
        assert self.last_seq is not None
        self._flush()
        while upto is None or self.last_seq < upto:
            rows = await self._read(events_after, self.room_id, self.last_seq, upto, _FETCH_CHUNK)
            for row in rows:
                if row.seq > self.last_seq:
                    if row.seq != self.last_seq + 1:
                        self._skip_to(row.seq - 1)
                    self._accept(row.seq, row.payload.encode())
            self._flush()
            if len(rows) < _FETCH_CHUNK:
                break
        if upto is not None and self.last_seq < upto:
            self._skip_to(upto, room_deleted=await self._room_deleted())

    def _skip_to(self, seq: int, *, room_deleted: bool = False) -> None:
        """The database lacks events up to `seq`: go on without them, loudly unless the room was deleted."""
        assert self.last_seq is not None
        self._flush()  # a run never spans a gap
        log_event(log, "room.gap_unfilled", logging.INFO if room_deleted else logging.ERROR, room=self.room_id,
                  missing_from=self.last_seq + 1, missing_to=seq, room_deleted=room_deleted)
        self.last_seq = seq
        self.recent.clear()  # keep it contiguous

    async def _room_deleted(self) -> bool:
        """Whether the room is gone, its outbox rows with it (ON DELETE CASCADE): then, and only then, a
        gap in what the database holds is expected (this actor runs on until it idles)."""
        return self.room_id not in await self._read(room_last_seqs, [self.room_id])

    def _accept(self, seq: int, data: bytes) -> None:
        """Take the next stored event (seq == last_seq + 1); `_flush` fans it out."""
        self.last_seq = seq
        self.recent.append((seq, data))
        self.delivered += 1
        self._unsent.append((seq, data))

    def _flush(self) -> None:
        """Hand the accepted events to every live subscriber: one `push_many` each, one shared list."""
        run = self._unsent
        if not run:
            return
        self._unsent = []
        first = run[0][0]
        payloads = [data for _, data in run]
        overflowed: list[Subscription] | None = None
        handed = 0
        for subscription in self.subscriptions.values():
            if not subscription.live:
                continue
            skip = subscription.next_seq - first  # > 0 only for one that subscribed past the run's start
            if skip <= 0:
                ok = self._push_many(subscription, payloads)
                handed += len(payloads)
            elif skip < len(payloads):
                ok = self._push_many(subscription, payloads[skip:])
                handed += len(payloads) - skip
            else:
                continue
            if not ok:
                if overflowed is None:
                    overflowed = []
                overflowed.append(subscription)
        self.deliveries += handed
        if overflowed:  # removed after the loop: the dict must not change while iterated
            for subscription in overflowed:
                self._overflow(subscription)

    # ------------------------------------------------------------------ transient events

    def _fan_out(self, data: bytes, origin: str | None = None) -> None:
        if self._reads.stale(data):
            return
        targets = [s for s in self.subscriptions.values() if origin is None or s.subscriber.session_id != origin]
        self.deliveries += len(targets)
        overflowed = [s for s in targets if not self._push(s, data)]
        for subscription in overflowed:
            self._overflow(subscription)

    # ------------------------------------------------------------------ presence, folded per window

    def _fold_presence(self, data: bytes) -> bool:
        if not self._presence.add(data):
            return False
        if self._presence_due == math.inf:
            self._presence_due = trio.current_time() + self._presence_window()
            if self._idle_scope is not None:
                self._idle_scope.deadline = min(self._idle_scope.deadline, self._presence_due)
        return True

    def _presence_window(self) -> float:
        """`presence_window_s`, stretched in a room with many subscribers on this node.

        A window's event costs one write per subscriber: a room of n folds over n/100 windows (at
        most `_PRESENCE_WINDOW_MAX_S`), so its presence costs this node about 100 writes per
        window's length whatever its size, and a join storm no longer holds the room's messages
        behind one long fan-out of presence after another.
        """
        base = self.presence_window_s
        stretched = base * len(self.subscriptions) / _PRESENCE_SUBSCRIBERS_PER_WINDOW
        return max(base, min(stretched, _PRESENCE_WINDOW_MAX_S))

    def _emit_presence(self) -> None:
        """The window closes: one event to each subscriber, in the shape it asked for."""
        self._presence_due = math.inf
        subscriptions = list(self.subscriptions.values())
        diffs = sum(1 for s in subscriptions if s.presence_diff)
        legacy_event, diff_event = self._presence.take(legacy=diffs < len(subscriptions), diff=diffs > 0)
        self._flush()
        overflowed = []
        for subscription in subscriptions:
            data = diff_event if subscription.presence_diff else legacy_event
            if data is None:
                continue
            self.deliveries += 1
            if not self._push(subscription, data):
                overflowed.append(subscription)
        for subscription in overflowed:
            self._overflow(subscription)

    # ------------------------------------------------------------------ subscribers

    def _push(self, subscription: Subscription, data: bytes) -> bool:
        try:
            return subscription.subscriber.push(data)
        except Exception as exc:  # a broken subscriber must not break the room
            self._subscriber_failed(exc)
            return False

    def _push_many(self, subscription: Subscription, data: list[bytes]) -> bool:
        try:
            return subscription.subscriber.push_many(self.room_id, data)
        except Exception as exc:
            self._subscriber_failed(exc)
            return False

    def _subscriber_failed(self, exc: Exception) -> None:
        log_event(log, "room.subscriber_failed", logging.WARNING, room=self.room_id,
                  error_type=type(exc).__name__, error=str(exc))

    def _overflow(self, subscription: Subscription) -> None:
        if self.subscriptions.get(id(subscription.subscriber)) is not subscription:
            return
        del self.subscriptions[id(subscription.subscriber)]
        subscription.end()
        log_event(log, "room.subscriber_overflowed", room=self.room_id)
        try:
            subscription.subscriber.overflowed(self.room_id)
        except Exception as exc:
            self._subscriber_failed(exc)
        self._maybe_idle()

    def _maybe_idle(self) -> None:
        if self.subscriptions:
            return
        if self._idle_scope is not None:
            self._idle_scope.deadline = min(trio.current_time() + self.idle_s, self._presence_due)
        elif self._waiting_unscoped:
            try:
                self.actor.tell(_WAKE)  # the wait starts again, with the idle clock running
            except (trio.WouldBlock, trio.BrokenResourceError, trio.ClosedResourceError):
                pass  # a full mailbox wakes it anyway; a closed one has no wait to wake

    def _attach_waiting(self) -> None:
        """Attach the next few waiting subscribes (each writes its `subscribed` reply)."""
        joining = self._joining
        for _ in range(min(len(joining), _ATTACH_PER_STEP)):
            self._subscribe(joining.popleft())

    def _subscribe(self, request: Subscribe) -> None:
        assert self.last_seq is not None
        if request.reply.abandoned:
            return  # the subscriber left before its turn came
        last = self.last_seq
        previous = self.subscriptions.pop(id(request.subscriber), None)
        if previous is not None:
            previous.end()
        if request.since is None or request.since >= last:
            subscription = Subscription(request.subscriber, next_seq=max(last, request.since or 0) + 1, live=True,
                                        presence_diff=request.presence_diff)
        else:
            subscription = Subscription(request.subscriber, next_seq=max(request.since, 0) + 1, live=False,
                                        presence_diff=request.presence_diff)
        if request.on_attached is not None:
            try:
                request.on_attached(last)  # before any event for it: the caller's "subscribed" goes first
            except Exception as exc:
                request.reply.fail(exc)
                self._maybe_idle()
                return
        self.subscriptions[id(request.subscriber)] = subscription
        if self._idle_scope is not None:
            self._idle_scope.deadline = self._presence_due
        request.reply.set(last)
        if not subscription.live:
            assert self._replays is not None
            self._replays.start_soon(self._replay, subscription)

    async def _replay(self, subscription: Subscription) -> None:
        """Bring one subscriber from `next_seq` up to the room's last seq, then make it live.

        From `recent` when it holds the range, else from the database. Paced by the
        subscriber: never more than it has room for, then a wait until its socket
        drains (a subscriber that makes no room for `replay_stall_s` is dropped). Live
        events go on meanwhile; each pass re-reads last_seq, and the switch to live
        happens in the same step as the last push, so there is no gap and no duplicate.
        """
        fetched: list[tuple[int, bytes]] = []  # read ahead from the database, from next_seq on
        shared_failed = False  # `recent` could not be extended back to it: this replay reads alone
        stall_at = trio.current_time() + self.replay_stall_s  # moved on by every push or database read
        while subscription.active:
            assert self.last_seq is not None
            target = self.last_seq
            if subscription.next_seq > target:
                subscription.live = True
                return
            room = self._free_slots(subscription)
            if room <= 0:
                if not subscription.active or not await self._wait_for_room(
                        subscription, target - subscription.next_seq + 1, stall_at):
                    return
                continue
            if fetched:
                run, fetched = fetched[:room], fetched[room:]
                if not self._push_many(subscription, [data for _, data in run]):
                    self._overflow(subscription)
                    return
                subscription.next_seq = run[-1][0] + 1
            elif self.recent and self.recent[0][0] <= subscription.next_seq:
                start = subscription.next_seq - self.recent[0][0]
                payloads = [data for _, data in islice(self.recent, start, start + room)]
                if not self._push_many(subscription, payloads):
                    self._overflow(subscription)
                    return
                subscription.next_seq += len(payloads)
            elif not shared_failed:
                # Within what `recent` may hold: one read for every replay that needs it now.
                shared_failed = not await self._backfill(subscription.next_seq)
            else:
                fetched = await self._fetch(subscription, target)
            stall_at = trio.current_time() + self.replay_stall_s

    async def _backfill(self, seq: int) -> bool:
        """Extend `recent` back to `seq` from the database; whether it now holds `seq`.

        After a restart or a deploy every client resumes with `since` at once, and the new
        actor's `recent` is empty: one read per replay would be a storm of reads of the same
        rows. So the replays that need events `recent` could hold share one read (a replay
        that comes while one runs waits for it), which fills `recent` backwards; what is
        older than `recent` can ever hold is read by each replay alone (`_fetch`).
        """
        while not (self.recent and self.recent[0][0] <= seq):
            running = self._backfilling
            if running is None:
                break
            await running.wait()  # another replay's read: it may hold ours
        else:
            return True
        assert self.last_seq is not None
        maxlen = self.recent.maxlen or 0
        end = self.recent[0][0] - 1 if self.recent else self.last_seq  # the newest event to read
        oldest = end - (maxlen - len(self.recent)) + 1  # the oldest `recent` has room for
        if seq < oldest:
            return False
        # A little more than asked, for the replays with a slightly older `since` that follow.
        start = max(oldest, 1, min(seq, end + 1 - _BACKFILL_MIN))
        done = self._backfilling = trio.Event()
        try:
            rows = await self._read(events_after, self.room_id, start - 1, end, end - start + 1, replica=True)
        finally:
            self._backfilling = None
            done.set()
        self._prepend([(row.seq, row.payload.encode()) for row in rows])
        return bool(self.recent) and self.recent[0][0] <= seq

    def _prepend(self, events: list[tuple[int, bytes]]) -> None:
        """Put events read from the database before `recent`, if they still end where it begins."""
        assert self.last_seq is not None
        begins = self.recent[0][0] if self.recent else self.last_seq + 1  # it may have moved during the read
        if not events or events[-1][0] != begins - 1 or events[-1][0] - events[0][0] != len(events) - 1:
            return  # not contiguous with it (a gap in the database, or `recent` moved on): replays read alone
        room = (self.recent.maxlen or 0) - len(self.recent)
        if room > 0:
            self.recent.extendleft(reversed(events[-room:]))

    async def _fetch(self, subscription: Subscription, target: int) -> list[tuple[int, bytes]]:
        """The next stored events for a replay from the database (up to `target`), encoded.

        A replay is a client's read, and the bulk of a reconnect storm's: the replica serves it when
        it has the events up to `target`, what this actor has seen (`events_after` checks).
        """
        rows = await self._read(events_after, self.room_id, subscription.next_seq - 1, target, _FETCH_CHUNK,
                                replica=True)
        if not rows and subscription.active:
            # The database lacks them (expected only of a deleted room): resume where we still can.
            resume = self.recent[0][0] if self.recent else target + 1
            room_deleted = await self._room_deleted()
            if not subscription.active:
                return []
            log_event(log, "room.replay_gap", logging.INFO if room_deleted else logging.ERROR, room=self.room_id,
                      missing_from=subscription.next_seq, missing_to=resume - 1, room_deleted=room_deleted)
            subscription.next_seq = resume
        return [(row.seq, row.payload.encode()) for row in rows if row.seq >= subscription.next_seq]

    def _free_slots(self, subscription: Subscription) -> int:
        try:
            return subscription.subscriber.free_slots()
        except Exception as exc:
            self._subscriber_failed(exc)
            self._overflow(subscription)
            return 0

    async def _wait_for_room(self, subscription: Subscription, n: int, stall_at: float) -> bool:
        """Wait until the replaying subscriber has room; False when its replay must end.

        That is when it was removed meanwhile (which cancels the wait), takes no more
        (it is closing), or took nothing until `stall_at` (it is dropped: 1013).
        """
        more = False
        with trio.CancelScope() as removed:
            subscription.waiting = removed
            try:
                with trio.move_on_at(stall_at) as stall:
                    more = await subscription.subscriber.wait_for_room(n)
            except Exception as exc:
                self._subscriber_failed(exc)
                self._overflow(subscription)
            finally:
                subscription.waiting = None
        if not subscription.active:
            return False
        if stall.cancelled_caught:
            log_event(log, "room.replay_stalled", logging.WARNING, room=self.room_id,
                      next_seq=subscription.next_seq, stall_s=self.replay_stall_s)
            self._overflow(subscription)
            return False
        if not more:
            self._drop(subscription)
            return False
        return True

    def _drop(self, subscription: Subscription) -> None:
        """Forget a subscriber that takes no more events (it is closing anyway)."""
        if self.subscriptions.get(id(subscription.subscriber)) is subscription:
            del self.subscriptions[id(subscription.subscriber)]
            subscription.end()
            self._maybe_idle()
