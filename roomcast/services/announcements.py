"""Telling users about rooms they were added to or removed from, on whichever node they are.

Services note membership changes on the database session while they make them
(`note_membership`); `write_and_announce` runs such work and, once it has
committed, hands the changes to the announcer actor, which publishes
`room_added` (with the room as that user sees it) and `room_removed` on the
notices channel of the room hub, which every node follows for its sessions.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from functools import partial
from typing import TYPE_CHECKING, Any, TypeVar

import trio
from sqlalchemy.orm import Session

from ..actors.actor import Actor, ActorContext
from ..actors.backoff import Backoff, until_available
from ..logs import log_event
from ..storage.users import get_user

if TYPE_CHECKING:
    from ..actors.registry import RoomHub, Subscriber
    from ..node import Node

log = logging.getLogger("roomcast.announcements")
T = TypeVar("T")

_NOTES = "roomcast_membership"


@dataclass(frozen=True)
class MembershipChange:
    room_id: int
    added: tuple[int, ...]
    removed: tuple[int, ...]


def note_membership(session: Session, room_id: int, *, added: Iterable[int] = (), removed: Iterable[int] = ()) -> None:
    """Record, inside the transaction, that these users joined or left the room."""
    change = MembershipChange(room_id, tuple(added), tuple(removed))
    if change.added or change.removed:
        session.info.setdefault(_NOTES, []).append(change)


async def write_and_announce(node: Node, work: Callable[[Session], T]) -> T:
    """`node.database.write(work)`, then announce the membership changes it noted."""

    def run(session: Session) -> tuple[T, list[MembershipChange]]:
        return work(session), session.info.pop(_NOTES, [])

    result, changes = await node.database.write(run)
    for change in changes:
        node.announcer.tell(change)
    return result


NOTICES_CHANNEL = 0  # room ids start at 1


class UserNotices:
    """This node's end of the notices channel: each notice goes to its user's sessions here.

    Notices for every user travel on one hub channel, which each node follows once,
    rather than on a channel (and a room actor, and a stream) per connected user: a
    notice names its user, and there are few of them (membership changes).
    """

    def __init__(self, rooms: RoomHub) -> None:
        self.rooms = rooms
        self._sessions: dict[int, set[Subscriber]] = {}
        self._following = False
        self._follow_lock = trio.Lock()

    async def add(self, user_id: int, session: Subscriber) -> None:
        """Deliver `user_id`'s notices to `session` (a WebSocket session) from now on."""
        self._sessions.setdefault(user_id, set()).add(session)
        if not self._following:
            async with self._follow_lock:
                if not self._following:
                    await self.rooms.subscribe(NOTICES_CHANNEL, self)
                    self._following = True

    def remove(self, user_id: int, session: Subscriber) -> None:
        sessions = self._sessions.get(user_id)
        if sessions is not None:
            sessions.discard(session)
            if not sessions:
                del self._sessions[user_id]

    def sessions_of(self, user_id: int) -> int:
        return len(self._sessions.get(user_id, ()))

    session_id = None  # follows the notices channel for every session of the node

    def push(self, data: bytes) -> bool:
        """The hub's delivery of one notice: hand its event to the user's sessions on this node."""
        notice = json.loads(data)
        sessions = self._sessions.get(notice["to"])
        if sessions:
            event = json.dumps(notice["event"], ensure_ascii=False, separators=(",", ":")).encode()
            for session in list(sessions):
                session.push(event)  # a session that cannot take it closes itself (1013)
        return True

    def push_many(self, data: list[bytes]) -> bool:
        for item in data:
            self.push(item)
        return True

    def overflowed(self, room_id: int) -> None:
        # `push` never refuses, so the hub should never drop us; if it did, re-follow on next add.
        self._following = False

    def free_slots(self) -> int:
        return 1 << 30  # never replays (it follows without `since`), and takes whatever comes

    async def wait_for_room(self, n: int) -> bool:
        await trio.lowlevel.checkpoint()
        return True


class Announcer:
    """The actor that publishes room_added / room_removed; its mailbox is bounded.

    While the database or the stream backend is down it waits, with backoff, and
    announces late rather than not at all (DESIGN.md §11); changes noted meanwhile
    wait in the mailbox.
    """

    def __init__(self, node: Node, mailbox_size: int = 1024, retry: Backoff | None = None) -> None:
        self.node = node
        self.retry = retry or Backoff(node.settings.stream_retry_base_s, node.settings.stream_retry_max_s)
        self.actor = Actor("announcer", self.run, mailbox_size=mailbox_size)

    def tell(self, change: MembershipChange) -> None:
        """Queue a change without blocking; dropped (and logged) if the mailbox is full."""
        try:
            self.actor.tell(change)
        except (trio.WouldBlock, trio.BrokenResourceError):
            log_event(log, "announcer.dropped", logging.WARNING, room=change.room_id)

    async def run(self, ctx: ActorContext) -> None:
        async for change in ctx.mailbox:
            await self._announce(change)

    async def _announce(self, change: MembershipChange) -> None:
        from .rooms import room_view  # rooms imports this module

        def views(session: Session) -> dict[int, dict[str, Any]]:
            found = {}
            for user_id in change.added:
                user = get_user(session, user_id)
                if user is not None:
                    found[user_id] = room_view(session, user, change.room_id)
            return found

        events = [(uid, {"type": "room_removed", "room": change.room_id}) for uid in change.removed]
        if change.added:
            rooms = await until_available(lambda: self.node.database.read(views), self.retry, log,
                                          "announcer.waiting", room=change.room_id)
            events += [(uid, {"type": "room_added", "room": view}) for uid, view in rooms.items()]
        for user_id, event in events:
            publish = partial(self.node.rooms.publish_transient, NOTICES_CHANNEL, {"to": user_id, "event": event})
            await until_available(publish, self.retry, log, "announcer.waiting", room=change.room_id)
