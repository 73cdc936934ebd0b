"""The notices hub: events addressed to users rather than rooms, on whichever node they are connected.

Notices (`room_added`, `room_removed`; later broadcasts and server events to users) travel on one
named stream, `NOTICES_STREAM`, that every node reads once through its stream reader, as it reads a
room's. Each node's hub keeps an index from user id to the node's sessions of that user (as
centrifuge's hub does) and hands each notice only to those. A notice is few bytes and rare
(membership changes), so one stream for all users costs less than a stream, a reader slot and an
actor per connected user. Notices are not stored: a node that was away misses them, as a session
that was not connected would.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Collection, Iterable
from typing import Protocol

from ..logs import log_event
from ..storage.streams import NOTICES_STREAM, Append, StreamBackend
from ..wire import JsonObject, encode
from .actor import Actor, ActorContext
from .stream_reader import StreamBatch, StreamReader

log = logging.getLogger("roomcast.actors.notices")


class Recipient(Protocol):
    """A connected session, as the hub sees it."""

    def notice(self, event: JsonObject, data: bytes) -> None:
        """Take one notice addressed to this session's user: `event`, and `data` its encoding (shared)."""
        ...


class NoticesHub:
    """This node's end of the notices stream, and the per-user index of its sessions."""

    def __init__(self, backend: StreamBackend, reader: StreamReader, mailbox_size: int = 256) -> None:
        self.backend = backend
        self.reader = reader
        self._sessions: dict[int, set[Recipient]] = {}
        self.position: str | None = None  # kept across restarts; None: start at the stream's end
        self.delivered = 0
        self._epoch = 0
        self.actor = Actor("notices", self.run, mailbox_size=mailbox_size, describe_extra=self.describe)

    def add(self, user_id: int, session: Recipient) -> None:
        """Deliver `user_id`'s notices to `session` from now on."""
        self._sessions.setdefault(user_id, set()).add(session)

    def remove(self, user_id: int, session: Recipient) -> None:
        sessions = self._sessions.get(user_id)
        if sessions is not None:
            sessions.discard(session)
            if not sessions:
                del self._sessions[user_id]

    @property
    def users(self) -> Collection[int]:
        """The users with a session on this node."""
        return self._sessions.keys()

    @property
    def session_count(self) -> int:
        """This node's sessions."""
        return sum(map(len, self._sessions.values()))

    def sessions_of(self, user_id: int) -> int:
        return len(self._sessions.get(user_id, ()))

    async def publish(self, user_ids: Iterable[int], event: JsonObject) -> None:
        """Send `event` to every session of these users, on every node.

        Raises StreamUnavailable when the stream backend is down (nothing was sent).
        """
        await self.backend.append([Append(NOTICES_STREAM, encode({"to": list(user_ids), "event": event}))])

    async def run(self, ctx: ActorContext) -> None:
        self._epoch += 1
        epoch = self._epoch
        self.reader.attach(NOTICES_STREAM, self.actor, self.position, epoch)
        try:
            async for message in ctx.mailbox:
                # A Resync asks to fetch what may have been missed: notices are not stored, so there is none.
                if isinstance(message, StreamBatch) and message.epoch == epoch:
                    for entry in message.entries:
                        self._deliver(entry.data)
                        self.position = entry.id
        finally:
            self.reader.detach(NOTICES_STREAM, epoch)

    def _deliver(self, data: bytes) -> None:
        try:
            notice = json.loads(data)
            user_ids, event = notice["to"], notice["event"]
        except (ValueError, KeyError, TypeError) as exc:  # written by a node of another version, say
            log_event(log, "notices.unreadable", logging.WARNING, error=repr(exc))
            return
        payload = encode(event)
        for user_id in user_ids:
            for session in list(self._sessions.get(user_id, ())):
                self.delivered += 1
                session.notice(event, payload)  # a session that cannot take it closes itself (1013)

    def describe(self) -> JsonObject:
        return {"users": len(self._sessions), "sessions": sum(map(len, self._sessions.values())),
                "delivered": self.delivered, "stream_position": self.position}
