"""Telling users about rooms they were added to or removed from, on whichever node they are.

Services note membership changes on the database session while they make them
(`note_membership`); `write_and_announce` runs such work and, once it has
committed, hands the changes to the announcer actor, which publishes
`room_added` (with the room as that user sees it) and `room_removed` on each
user's own channel of the room hub.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TypeVar

import trio
from sqlalchemy.orm import Session

from ..actors.actor import Actor, ActorContext
from ..logs import log_event
from ..storage.streams import StreamUnavailable
from ..storage.users import get_user

if TYPE_CHECKING:
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


def user_channel(user_id: int) -> int:
    """The hub channel that carries one user's own notices (room_added, room_removed).

    Rooms have positive ids; a user's channel is the negated user id, so it rides
    the same room actors and stream backend (and so crosses nodes) with no seq.
    """
    return -user_id


class Announcer:
    """The actor that publishes room_added / room_removed; its mailbox is bounded."""

    def __init__(self, node: Node, mailbox_size: int = 1024) -> None:
        self.node = node
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
            rooms = await self.node.database.read(views)
            events += [(uid, {"type": "room_added", "room": view}) for uid, view in rooms.items()]
        for user_id, event in events:
            try:
                await self.node.rooms.publish_transient(user_channel(user_id), event)
            except StreamUnavailable as exc:
                log_event(log, "announcer.failed", logging.WARNING, user=user_id, error=str(exc))
