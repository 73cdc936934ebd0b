"""Telling users about rooms they were added to or removed from, on whichever node they are.

Services note membership changes on the database session while they make them
(`note_membership`); `write_and_announce` runs such work and, once it has
committed, hands the changes to the announcer actor, which publishes
`room_added` (with the room as that user sees it) and `room_removed` on the
node's notices hub, which reaches the user's sessions on every node. The announcer
starts on the first change to announce (`ActorSystem.ensure`).

Announcers of different nodes (and changes that commit at once on one node) publish in no
particular order, so each change carries its place among the room's changes (`version`: the
seq its transaction took, with the room's row locked) and the hub drops one that arrives
after a later change of the same user and room (`NoticesHub`): a user removed just after
being added never ends up with room_removed, then room_added.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from functools import partial
from typing import Any, TypeVar

import trio
from sqlalchemy.orm import Session

from ..actors.actor import Actor, ActorContext
from ..actors.backoff import Backoff, until_available
from ..logs import log_event
from ..node import Node
from ..storage.rooms import room_row
from ..storage.users import get_user
from ..wire import MAX_ID

log = logging.getLogger("roomcast.announcements")
T = TypeVar("T")

_NOTES = "roomcast_membership"

# The versions of a room's creation (its seq is then 0) and of its deletion, which comes after everything.
CREATED = 0
DELETED = MAX_ID


@dataclass(frozen=True)
class MembershipChange:
    room_id: int
    added: tuple[int, ...]
    removed: tuple[int, ...]
    version: int | None = None  # the room's seq taken by the change; None: not ordered against others


def note_membership(session: Session, room_id: int, *, version: int, added: Iterable[int] = (),
                    removed: Iterable[int] = ()) -> None:
    """Record, inside the transaction, that these users joined or left the room with the change
    that took seq `version` (`CREATED`, `DELETED`)."""
    change = MembershipChange(room_id, tuple(added), tuple(removed), version)
    if change.added or change.removed:
        session.info.setdefault(_NOTES, []).append(change)


async def write_and_announce(node: Node, work: Callable[[Session], T]) -> T:
    """`node.database.write(work)`, then announce the membership changes it noted."""

    def run(session: Session) -> tuple[T, list[MembershipChange]]:
        return work(session), session.info.pop(_NOTES, [])

    result, changes = await node.database.write(run)
    for change in changes:
        announce(node, change)
    return result


def announce(node: Node, change: MembershipChange) -> None:
    """Queue a committed change for the announcer without blocking; dropped (and logged) if it is full."""
    actor = node.actors.ensure("announcer", lambda: Announcer(node).actor)
    try:
        actor.tell(change)
    except (trio.WouldBlock, trio.BrokenResourceError):
        log_event(log, "announcer.dropped", logging.WARNING, room=change.room_id)


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

    async def run(self, ctx: ActorContext) -> None:
        async for change in ctx.mailbox:
            await self._announce(change)

    async def _announce(self, change: MembershipChange) -> None:
        from .rooms import room_views  # rooms imports this module

        def views(session: Session) -> dict[int, dict[str, Any]]:
            found = {}
            for user_id in change.added:
                user = get_user(session, user_id)
                # No row: the room was deleted since the change committed. Its deletion announces
                # room_removed to whoever was still in it; the rest of this change is still announced.
                row = None if user is None else room_row(session, user.tenant, user.id, change.room_id)
                if row is not None:
                    found[user_id] = room_views(session, [row])[0]
            return found

        events = [(uid, {"type": "room_removed", "room": change.room_id}) for uid in change.removed]
        if change.added:
            rooms = await until_available(lambda: self.node.database.read(views), self.retry, log,
                                          "announcer.waiting", room=change.room_id)
            events += [(uid, {"type": "room_added", "room": view}) for uid, view in rooms.items()]
        for user_id, event in events:
            order = None if change.version is None else (change.room_id, change.version)
            publish = partial(self.node.notices.publish, [user_id], event, membership=order)
            await until_available(publish, self.retry, log, "announcer.waiting", room=change.room_id)
