"""The room registry, `node.rooms`: room actors on demand, and the API the WebSocket layer uses.

A room actor starts on its room's first subscriber or first event and stops
itself after `room_idle_s` with no subscriber and no event. Room actors are the
children of the `rooms` supervisor.

How a WebSocket session (issue 5) uses it::

    last_seq = await node.rooms.subscribe(room_id, session, since=since,
                                          on_attached=lambda last: session.push(subscribed_frame(last)))
    ...
    node.rooms.unsubscribe(room_id, session)          # in a finally: never blocks
    await node.rooms.publish_transient(room_id, {"type": "typing", ...})
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import trio

from ..storage.database import Database
from ..storage.streams import Append, StreamBackend
from ..wire import encode
from .backoff import Backoff
from .room import RoomActor, RoomUnavailable, Subscribe, Subscriber
from .stream_reader import StreamReader
from .supervisor import Supervisor
from .transients import TransientPublisher

__all__ = ["RoomHub", "RoomUnavailable", "Subscriber"]

_SUBSCRIBE_ATTEMPTS = 3


class RoomHub:
    """Starts, finds and forgets room actors; subscribes sessions to rooms."""

    def __init__(self, *, database: Database, backend: StreamBackend, reader: StreamReader,
                 supervisor: Supervisor, idle_s: float, replay_buffer: int, replay_stall_s: float,
                 mailbox_size: int, transients: TransientPublisher, retry: Backoff | None = None,
                 presence_window_s: float = 0.1, presence_diff_limit: int = 20) -> None:
        self.database = database
        self.backend = backend
        self.transients = transients  # the node's publisher of transient events, many per append
        self.reader = reader
        self.supervisor = supervisor
        self.idle_s = idle_s
        self.replay_buffer = replay_buffer
        self.replay_stall_s = replay_stall_s
        self.mailbox_size = mailbox_size
        self.retry = retry  # how room actors wait out a database outage
        self.presence_window_s = presence_window_s  # how long a room actor folds presence changes
        self.presence_diff_limit = presence_diff_limit  # users listed in one `presence_diff` at most
        self._rooms: dict[int, RoomActor] = {}
        self._retired_deliveries = 0  # deliveries of room actors that have ended

    def __len__(self) -> int:
        return len(self._rooms)

    @property
    def subscriptions(self) -> int:
        """Subscriptions to this node's room actors, all rooms together."""
        return sum(len(room.subscriptions) for room in self._rooms.values())

    def positions(self) -> dict[int, int]:
        """The last seq each live room actor has delivered (rooms still loading are left out)."""
        return {room_id: room.last_seq for room_id, room in self._rooms.items() if room.last_seq is not None}

    @property
    def deliveries(self) -> int:
        """Events handed to subscribers by this node's room actors since start (never decreases)."""
        return self._retired_deliveries + sum(room.deliveries for room in self._rooms.values())

    def get(self, room_id: int) -> RoomActor | None:
        """The room's live actor, if it has one."""
        return self._rooms.get(room_id)

    def touch(self, room_id: int) -> RoomActor:
        """Make sure `room_id` has a running actor (an event for it exists); never blocks."""
        room = self._rooms.get(room_id)
        if room is None or room.actor.terminated.is_set():
            if room is not None:
                self._retired_deliveries += room.deliveries
            room = RoomActor(room_id, database=self.database, reader=self.reader, idle_s=self.idle_s,
                             replay_buffer=self.replay_buffer, replay_stall_s=self.replay_stall_s,
                             mailbox_size=self.mailbox_size, on_idle=self._forget, retry=self.retry,
                             presence_window_s=self.presence_window_s, presence_diff_limit=self.presence_diff_limit)
            self._rooms[room_id] = room
            self.supervisor.add(room.actor)
        return room

    async def subscribe(self, room_id: int, subscriber: Subscriber, since: int | None = None,
                        on_attached: Callable[[int], None] | None = None, presence_diff: bool = False) -> int:
        """Deliver `room_id`'s events to `subscriber` until unsubscribed or it overflows.

        Returns the room's last seq at the moment of attaching. `on_attached(last_seq)`
        runs at that moment, before any event reaches the subscriber: push the
        `subscribed` reply from there and it precedes every event. With `since`, the
        subscriber first gets every stored event with seq > since, in order, then the
        live ones, with no gap and no duplicate across the switch. Subscribing the same
        subscriber again replaces its earlier subscription to the room.

        The caller checks membership first; this does not. An exception from
        `on_attached` propagates here and nothing is subscribed. RoomUnavailable if the
        room's actor cannot be reached (the node is shutting down). `presence_diff`: the
        subscriber gets the room's presence as `presence_diff` events, else as `presence`.
        """
        for _ in range(_SUBSCRIBE_ATTEMPTS):
            room = self.touch(room_id)
            request = Subscribe(subscriber, since, on_attached, presence_diff)
            try:
                await room.actor.send(request)
            except (trio.BrokenResourceError, trio.ClosedResourceError):
                continue  # it stopped for idleness just now: the next attempt starts a new one
            try:
                return await request.reply.wait(room.actor)
            except BaseException:
                # The subscriber gave up waiting (its session ended, say): whether the actor
                # has handled the request yet or not, it must not keep the subscription.
                request.reply.abandon()
                room.remove(subscriber)
                raise
        raise RoomUnavailable(f"room {room_id} has no actor to subscribe to")

    def unsubscribe(self, room_id: int, subscriber: Subscriber) -> None:
        """Stop delivering `room_id` to `subscriber`; immediate, never blocks (fine in `finally`)."""
        room = self._rooms.get(room_id)
        if room is not None:
            room.remove(subscriber)

    async def publish_transient(self, room_id: int, event: dict[str, Any], origin: str | None = None, *,
                                start_actor: bool = True) -> None:
        """Send a not-stored event (typing, presence, `event`) to the room's subscribers on every node.

        It goes through the stream backend, carries no seq and is not replayed. `origin`, a
        session id: that session is left out (its client knows what it sent).
        `start_actor=False`: the room gets no actor here if it has none (this node has no
        subscriber of it to deliver to; the other nodes' actors read the stream).
        Raises StreamUnavailable when the backend is down (the event is dropped).
        """
        await self.transients.publish(Append(room_id, encode(event), origin=origin))  # with others published now
        if start_actor:
            self.touch(room_id)

    async def publish_transients(self, events: Sequence[tuple[int, dict[str, Any]]]) -> None:
        """`publish_transient` of several (room id, event) pairs in one go, in order (no origin)."""
        await self.transients.publish_many([Append(room_id, encode(event)) for room_id, event in events])
        for room_id, _ in events:
            self.touch(room_id)

    def _forget(self, room: RoomActor) -> bool:
        """Called by an idle room actor that is about to stop."""
        if self._rooms.get(room.room_id) is room:
            del self._rooms[room.room_id]
            self._retired_deliveries += room.deliveries
        return True
