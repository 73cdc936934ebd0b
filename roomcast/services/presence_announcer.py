"""Presence changes announced at the same moment go out as one record per room.

Every first join and every leave is announced to the room on every node: a `presence`
record on the room's stream, which each node's room actor folds into one event per
subscriber per window (actors/presence_fold.py). A record carries the room's online
snapshot (up to `presence_online_limit` badges, some 3 KB), so one record per change made
a storm of n joins n encodes of it here and n decodes by every node's room actor, the
largest share of a storm's CPU after the socket writes. The node's `presence_announcer`
actor takes every announcement waiting in its bounded mailbox, oldest first, and
publishes one record per room:

    {"type": "presence", "room", "user", "status", "online", "online_count",   (PROTOCOL §5, the newest change)
     "present", "at",                                                           (of the newest change)
     "changes": [[badge, present, at], ...]}                                    (every change, when more than one)

The newest change (by `at`, the time of its presence write) gives the snapshot: a join's
batch read it already (services/joins.py); leaves get theirs in one database read for
every room of the batch. A node of an earlier version folds the newest change only.
Announcing is best effort, like the rest of presence: an outage drops the batch's records
(logged once by its gateway) and the subscriptions stand.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence

import trio

from ..actors.actor import Actor, ActorContext, take_waiting
from ..errors import DependencyUnavailable
from ..logs import log_event
from ..node import Node
from ..storage.models import User
from ..storage.users import UserSnapshot
from ..wire import JsonObject, sender_to_wire
from .presence import online_snapshots

log = logging.getLogger("roomcast.presence")

ACTOR_NAME = "presence_announcer"
_BATCH_MAX = 500
_MAILBOX = 1024


class Announcement:
    """One user's change of presence in one room, waiting for its batch."""

    __slots__ = ("at", "done", "online", "room_id", "snapshot", "status", "user")

    def __init__(self, room_id: int, user: User | UserSnapshot, status: str, online: list[int],
                 snapshot: JsonObject | None, at: float) -> None:
        self.room_id = room_id
        self.user = user
        self.status = status
        self.online = online  # the room's online user ids right after the change
        self.snapshot = snapshot  # their `online`/`online_count`, when the caller has it
        self.at = at
        self.done = trio.Event()


async def announce(node: Node, room_id: int, user: User | UserSnapshot, status: str, online: list[int], *,
                   snapshot: JsonObject | None = None, at: float | None = None) -> None:
    """Publish `user` `joined` or `left` to the room with whatever else is announced now (best effort).

    Returns once the record is appended (or dropped): what the session does next comes after it.
    """
    announcement = Announcement(room_id, user, status, online, snapshot, time.time() if at is None else at)
    actor = node.actors.ensure(ACTOR_NAME, lambda: PresenceAnnouncer(node).actor)
    try:
        await actor.send(announcement)
    except trio.BrokenResourceError:  # the node is stopping: the entry ages out on the other nodes
        return
    await actor.wait_unless_terminated(announcement.done, announcement.done.set)


def presence_record(room_id: int, changes: Sequence[Announcement], snapshot: JsonObject) -> JsonObject:
    """The record announcing `changes` (one room's, oldest first) with the newest one's `snapshot`."""
    newest = max(changes, key=lambda change: change.at)
    record: JsonObject = {"type": "presence", "room": room_id, "user": sender_to_wire(newest.user),
                          "status": newest.status, **snapshot, "present": newest.user.id in newest.online,
                          "at": newest.at}
    if len(changes) > 1:
        record["changes"] = [[sender_to_wire(change.user), change.user.id in change.online, change.at]
                             for change in changes]
    return record


class PresenceAnnouncer:
    """The node's `presence_announcer` actor: one record per room per batch of announcements."""

    def __init__(self, node: Node) -> None:
        self.node = node
        self.records = 0
        self.changes = 0
        self.actor = Actor(ACTOR_NAME, self.run, mailbox_size=_MAILBOX, describe_extra=self.describe)

    async def run(self, ctx: ActorContext) -> None:
        mailbox = ctx.mailbox
        try:
            while True:
                batch: list[Announcement] = [await mailbox.receive()]
                try:
                    await trio.lowlevel.checkpoint()  # announcers already woken in this round queue theirs first
                    take_waiting(mailbox, batch, _BATCH_MAX)
                    await self._publish(batch)
                finally:
                    for announcement in batch:
                        announcement.done.set()
        finally:
            while True:
                try:
                    mailbox.receive_nowait().done.set()
                except (trio.WouldBlock, trio.ClosedResourceError, trio.EndOfChannel):
                    break

    async def _publish(self, batch: list[Announcement]) -> None:
        by_room: dict[int, list[Announcement]] = {}
        for announcement in batch:
            by_room.setdefault(announcement.room_id, []).append(announcement)
        newest = {room_id: max(changes, key=lambda change: change.at) for room_id, changes in by_room.items()}
        try:
            snapshots = await online_snapshots(self.node, {
                room_id: (change.user.tenant, change.online) for room_id, change in newest.items()
                if change.snapshot is None})
        except DependencyUnavailable as exc:
            log_event(log, "presence.announce_failed", logging.DEBUG, error=str(exc))
            snapshots = {}
        records = []
        for room_id, changes in by_room.items():
            snapshot = newest[room_id].snapshot or snapshots.get(room_id)
            if snapshot is not None:
                records.append((room_id, presence_record(room_id, changes, snapshot)))
        try:
            await self.node.rooms.publish_transients(records)
        except DependencyUnavailable as exc:  # best effort; subscriptions stand; the outage is logged once
            log_event(log, "presence.announce_failed", logging.DEBUG, error=str(exc))
            return
        self.records += len(records)
        self.changes += len(batch)

    def describe(self) -> JsonObject:
        return {"records": self.records, "changes": self.changes}
