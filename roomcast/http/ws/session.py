"""One WebSocket session: a reader, and a writer while anything waits, in one nursery.

The session owns its socket, its outbound queue and its read loop; what being live
means (presence, joining and leaving rooms, typing, going offline) is the services'
(`services/live.py`). It is cancelled as a unit when the client goes away, the server
drains, or the client falls behind; on the way out it leaves every room it followed,
so nothing it started outlives it.
"""

from __future__ import annotations

import logging
import secrets
from collections.abc import Awaitable, Callable
from datetime import datetime
from typing import Any

import trio

from ...errors import ApiError, DependencyUnavailable, RateLimited
from ...node import Node
from ...services import live
from ...services.messaging import Draft
from ...services.users import UserSnapshot
from ...timestamps import to_wire, utcnow
from ...wire import encode, user_to_wire
from ..front_door import Draining
from . import frames
from .connection import ConnectionClosed, WebSocket
from .outbound import OutboundQueue, Overflowed, Stopped
from .protocol import ClientError, api_error_event, error_event, parse_frame
from .sends import SendPipeline

log = logging.getLogger("roomcast.ws")

# Close codes of PROTOCOL §5.
POLICY_VIOLATION = 1008
SERVER_ERROR = 1011
SERVICE_RESTART = 1012
TRY_AGAIN_LATER = 1013

_MAX_BATCH_BYTES = 1 << 20
# More bad frames than this within one window closes the connection with 1008.
_ABUSE_LIMIT = 30
_ABUSE_WINDOW_S = 10.0

# Each takes the frame type it is registered for (protocol.py): checked before it is called.
Handler = Callable[["Session", Any], Awaitable[None]]


class Session:
    """What one connected client has: its user, socket, outbound queue and subscriptions.

    The session is itself the room actors' subscriber (`push`, `push_many`,
    `overflowed`) and the notices hub's recipient (`notice`). Slotted, and holding nothing it
    could share: `user` is the node's snapshot of its user (`UserSnapshot`, one per user, not per
    connection); what only some sessions need (abuse counts, a send pipeline, a writer task) is
    made when first needed.
    """

    __slots__ = ("_abuse", "_nursery", "_ping_due", "_sends", "_writing", "handlers", "heartbeat_slice", "node",
                 "outbound", "session_id", "socket", "subscriptions", "token_issued_at", "user")

    def __init__(self, node: Node, socket: WebSocket, user: UserSnapshot, handlers: dict[str, Handler],
                 token_issued_at: datetime | None = None) -> None:
        self.node = node
        self.handlers = handlers
        self.socket = socket
        self.user = user
        self.token_issued_at = token_issued_at  # checked again while connected (disable, revocation)
        self.session_id = secrets.token_hex(8)
        self.outbound = OutboundQueue(node.settings.ws_outbound_queue, on_closing=self._closing_started)
        self.subscriptions: set[int] = set()
        self._abuse: list[float] | None = None  # when the last bad frames came; made at the first
        self._nursery: trio.Nursery | None = None
        self._sends: SendPipeline | None = None  # made on the first send: most sessions mostly listen
        self._writing = False
        self._ping_due = False
        self.heartbeat_slice = 0  # set by the node's Heartbeat

    # ------------------------------------------------------------------ the room actors' side

    def push(self, data: bytes) -> bool:
        """Take one encoded room event (shared bytes) without blocking; False when full."""
        return self._deliver(data)

    def notice(self, event: dict[str, Any], data: bytes) -> None:
        """Take one notice to this session's user (the notices hub's side)."""
        if event.get("type") == live.ACCESS_CHANGED:  # a control notice: acted on, never forwarded
            refusal = live.notice_refusal(event, self.token_issued_at)
            if refusal is not None:
                self.revoke(refusal)
            return
        if event.get("type") == "room_removed":
            self._forget_room(event["room"])
        self._deliver(data)

    def push_many(self, room_id: int, data: list[bytes]) -> bool:
        """Take a run of stored room events (a list shared by every subscriber); False when full."""
        sends = self._sends
        if sends is not None and sends.holds(room_id):
            return sends.hold(room_id, data)  # a send of ours to that room awaits its answer: they follow it
        return self.deliver_stored(data)

    def drop_held_events(self, room_id: int) -> None:
        """No longer following the room, or following it anew (a new `subscribed`): what its events waited
        for (an ack) no longer matters."""
        if self._sends is not None:
            self._sends.drop_held(room_id)

    def deliver_stored(self, data: list[bytes]) -> bool:
        """Write or queue a run of stored room events; False (and the session closing) when full."""
        # Straight to the socket when nothing is queued ahead of it; otherwise through the
        # queue and a writer task, which keeps the order and coalesces what piles up.
        if self._can_write_now() and self._write_now(frames.shared_batch_frame(data)):
            return True
        return self._queued(self.outbound.extend(data))

    def _deliver(self, data: bytes) -> bool:
        if self._can_write_now() and self._write_now(frames.shared_text_frame(data)):
            return True
        return self._queued(self.outbound.push(data))

    def _queued(self, accepted: bool) -> bool:
        """After handing the queue something: a writer to drain it, if it was taken."""
        if accepted:
            self._start_writer()
        return accepted

    def _can_write_now(self) -> bool:
        return not self.outbound and not self.outbound.is_closing

    def _write_now(self, frame: bytes) -> bool:
        if not self.socket.try_write_now(frame):
            return False
        if self.socket.has_tail:
            self._start_writer()
        return True

    def _start_writer(self) -> None:
        # The writer exists only while something waits: an idle session has no task for it.
        if not self._writing and self._spawn(self._write_pending):
            self._writing = True

    def _spawn(self, task: Callable[..., Awaitable[None]], *args: Any) -> bool:
        """Start `task` inside the session; False (and nothing started) once the session is ending.

        Room actors, the heartbeat and the send pipeline call in from other tasks at any
        moment. Once the session's nursery is cancelled (the client left, a task failed,
        the node drains) it takes no new work: between that and the nursery's close lie
        scheduling points where a `start_soon` would raise into the caller's task.
        """
        nursery = self._nursery
        if nursery is None or nursery.cancel_scope.cancel_called:
            return False
        nursery.start_soon(task, *args)
        return True

    def overflowed(self, room_id: int) -> None:
        """A room dropped us for falling behind: the whole session closes with 1013."""
        self.outbound.mark_overflowed()

    def free_slots(self) -> int:
        """How many events a room's replay may push now: none while a frame's tail waits for the socket."""
        if self.socket.has_tail:
            return 0
        free = self.outbound.free_slots()
        return free if self._sends is None else max(0, free - self._sends.held)

    async def wait_for_room(self, n: int) -> bool:
        """Until a replay may push min(n, half its share) events; False once the session is closing.

        Woken by the writer, once per frame it takes; a session that ends otherwise is
        unsubscribed from its rooms, which cancels the wait.
        """
        wanted = min(n, (self.outbound.catch_up_limit + 1) // 2)
        while self.free_slots() < wanted:
            if self.outbound.is_closing:
                return False
            if self.socket.has_tail:
                self._start_writer()  # whoever left the tail may not have: it must be flushed for us to wake
            await self.outbound.room_changed()
        return not self.outbound.is_closing

    def _forget_room(self, room_id: int) -> None:
        # Removed from the room: stop its events and drop it from the session's rooms at once (a
        # join of the room still under way sees that and is refused), announce the leave in the
        # background; a session already ending gives its entry up (it expires elsewhere).
        if live.forget_room(self.node, self, room_id) and not self._spawn(live.announce_leave, self.node, self,
                                                                            room_id):
            self.node.presence.forget(self.user.id, self.session_id, [room_id])

    # ------------------------------------------------------------------ the client's side

    def reply(self, event: dict[str, Any]) -> None:
        """Send an event to this client (a direct reply, not a room event)."""
        self._deliver(encode(event))

    def reply_all(self, data: list[bytes]) -> None:
        """Send several encoded replies, in order: in one frame when the socket takes it at once."""
        if len(data) == 1:
            self._deliver(data[0])
        elif data and not (self._can_write_now() and self._write_now(frames.batch_frame(data))):
            self._queued(self.outbound.extend(data))

    def error(self, ref: str | None, code: str, message: str, **extra: Any) -> None:
        """Answer a frame with an `error` event; the connection stays open."""
        self._deliver(error_event(ref, code, message, **extra))

    def rate_limit_refusal(self, ref: str | None, refusal: RateLimited) -> bytes:
        """The `error` answering a frame refused for the sender's rate, to send; too many such
        refusals close the connection."""
        self._count_abuse()
        return error_event(ref, refusal.code, refusal.message, retry_after=refusal.retry_after_s)

    async def submit_send(self, draft: Draft, ref: str | None) -> None:
        """Queue a checked send: committed in order with the others pending, then acked."""
        if self._sends is None:
            self._sends = SendPipeline(self)
        await self._sends.submit(draft, ref)

    def _start_sends(self) -> None:
        # Every frame read so far is handled: the sends among them go to the committer as one batch.
        if self._sends is not None:
            self._sends.start()

    async def unless_client_gone(self, work: Awaitable[None]) -> None:
        """Await `work`, or end the session (ConnectionClosed) as soon as the client is gone.

        The reader waits for a frame's work before it reads the next, so without this a client
        that leaves while its join is held in a batch would be noticed only at its next ping.
        """
        watch = trio.CancelScope()
        with trio.CancelScope() as work_scope:
            self._spawn(self._cancel_when_gone, work_scope, watch)
            try:
                await work
            finally:
                watch.cancel()
        if work_scope.cancelled_caught:
            raise self.socket.closed or ConnectionClosed(1006, "connection lost")

    async def _cancel_when_gone(self, work_scope: trio.CancelScope, watch: trio.CancelScope) -> None:
        with watch:
            await self.socket.wait_gone()
            work_scope.cancel()

    def start_soon(self, task: Callable[[], Awaitable[None]]) -> None:
        """Run `task` inside the session (cancelled with it); a no-op once the session is ending."""
        self._spawn(task)

    async def run(self, draining: Draining) -> int:
        """Serve the client until it leaves or must go; returns the close code used."""
        close_code = 1000
        reason: str | None = None
        try:
            async with trio.open_nursery() as nursery:
                self._nursery = nursery
                # Before the welcome: with Redis down the session ends here, closed with 1013.
                await live.connect(self.node, self)
                self.reply({
                    "type": "welcome",
                    "user": user_to_wire(self.user, online=True),
                    "session_id": self.session_id,
                    "server_time": to_wire(utcnow()),
                    "heartbeat_s": self.node.settings.heartbeat_s,
                })
                if self.outbound or self.socket.has_tail:
                    self._start_writer()  # what could not be written before the nursery existed
                if draining.is_set:  # else the endpoint stops it when draining starts, with every session
                    self.outbound.stop()
                await self._read_forever()
                nursery.cancel_scope.cancel()
        except* Overflowed:
            close_code = TRY_AGAIN_LATER
        except* Stopped:
            close_code = SERVICE_RESTART
        except* _Abusive:
            close_code = POLICY_VIOLATION
        except* AccessRevoked as group:
            close_code, reason = POLICY_VIOLATION, str(group.exceptions[0])
        except* ConnectionClosed:
            close_code = self.socket.closed.code if self.socket.closed else 1006
        except* DependencyUnavailable as group:  # at connect time (PROTOCOL §5): try again later
            close_code, reason = TRY_AGAIN_LATER, unavailable_reason(group.exceptions[0])
        except* Exception as group:
            log.error("session crashed", exc_info=group)
            close_code = SERVER_ERROR
        finally:
            self._nursery = None
            await live.disconnect(self.node, self)
        await self.socket.close(close_code, reason if reason is not None else _REASONS.get(close_code, ""))
        return close_code

    async def _read_forever(self) -> None:
        while True:
            text = await self.socket.receive(self._start_sends)
            ref: str | None = None
            try:
                frame = parse_frame(text)  # the one gate: handlers get checked values only
                ref = frame.ref
                if frame.type != "send":  # the sends before it go now: its handler may wait (a join)
                    self._start_sends()
                await self.handlers[frame.type](self, frame)
            except RateLimited as exc:
                self._deliver(self.rate_limit_refusal(ref, exc))
            except ClientError as exc:
                self._count_abuse()
                self._deliver(api_error_event(ref if ref is not None else exc.ref, exc))
            except ApiError as exc:
                self._deliver(api_error_event(ref, exc))

    def _count_abuse(self) -> None:
        now = trio.current_time()
        self._abuse = [t for t in self._abuse or () if now - t < _ABUSE_WINDOW_S] + [now]
        if len(self._abuse) > _ABUSE_LIMIT:
            raise _Abusive

    async def _write_pending(self) -> None:
        """Write what is queued (and a pending tail or ping), batch by batch, until none is left."""
        try:
            while True:
                frame = frames.batch_frame(self.outbound.take(_MAX_BATCH_BYTES))
                if self._ping_due:
                    self._ping_due = False
                    frame = frames.PING + frame
                if not frame and not self.socket.has_tail:
                    return
                await self.socket.send_frame(frame)  # b"" just flushes a tail
        finally:
            self._writing = False

    def heartbeat(self, now: float, interval: float) -> None:
        """Called every `interval` by the node's Heartbeat: ping the client, or drop it if it went quiet."""
        if now - self.socket.last_heard > 2 * interval:
            self._end(ConnectionClosed(1006, "heartbeat timeout"))
        elif not self.socket.try_write_now(frames.PING):
            self._ping_due = True
            self._start_writer()

    def _closing_started(self) -> None:
        # On drain or overflow the writer stops at its next frame boundary, ending the session
        # with a clean close. A client that reads nothing never lets it get there: after
        # `ws_close_timeout_s` the socket is cut.
        if self._spawn(self._cut_after_grace):
            self._start_writer()  # an idle session's writer starts only to stop at once

    async def _cut_after_grace(self) -> None:
        await trio.sleep(self.node.settings.ws_close_timeout_s)
        raise Overflowed if self.outbound.overflowed else Stopped

    @property
    def ending(self) -> bool:
        """Whether the session is ending (or over): it takes no new work and writes nothing more of its own."""
        nursery = self._nursery
        return nursery is None or nursery.cancel_scope.cancel_called

    def fail(self, error: Exception) -> None:
        """End the session with `error`, as if one of its tasks had raised it (from another task: a callback)."""
        self._end(error)

    def revoke(self, reason: str) -> None:
        """The user was disabled or the token revoked since it connected: close with 1008."""
        self._end(AccessRevoked(reason))

    def _end(self, reason: Exception) -> None:
        self._spawn(_raise, reason)


async def _raise(reason: Exception) -> None:
    raise reason


class _Abusive(Exception):
    pass


class AccessRevoked(Exception):
    """The session's user may no longer be served; the message is the close reason."""


def unavailable_reason(error: BaseException) -> str:
    """The close reason for a dependency that is down: it names the dependency."""
    while isinstance(error, BaseExceptionGroup):
        error = error.exceptions[0]
    dependency = error.dependency if isinstance(error, DependencyUnavailable) else "a dependency"
    return f"{dependency} unavailable; try again later"


_REASONS = {
    SERVICE_RESTART: "server restarting; reconnect with since",
    TRY_AGAIN_LATER: "too slow to keep up; reconnect with since",
    POLICY_VIOLATION: "repeated protocol abuse",
}

