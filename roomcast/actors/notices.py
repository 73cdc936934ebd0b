"""The notices hub: events addressed to users rather than rooms, on whichever node they are connected.

Notices (`room_added`, `room_removed`, broadcasts; whatever else is addressed to users) travel on
one named stream, `NOTICES_STREAM`, that every node reads once through its stream reader, as it
reads a room's. Each notice names its audience: a list of users, or a tenant's sessions selected
by role and user (`Audience`). Each node's hub keeps its sessions indexed by user (as centrifuge's
hub does) and by tenant and role, so it finds the sessions a notice is for without scanning the
others: a broadcast to one role of a tenant costs one step per matching session. One stream for
all users costs less than a stream, a reader slot and an actor per connected user. Notices are
not stored: a node that was away misses them, as a session that was not connected would.

A notice may name the room membership change it tells of (`membership`: the room and the change's
version, the seq it took). Changes are published by several nodes' announcers, not in the order
they committed: the hub delivers one to a user only if it is newer than the last of that room it
delivered to them (remembered for the last `MEMBERSHIP_KEPT` (user, room) pairs), so a
`room_removed` is never followed by the `room_added` of an older change.
"""

from __future__ import annotations

import json
import logging
from collections import OrderedDict
from collections.abc import Collection, Iterable, Iterator
from dataclasses import dataclass
from typing import Protocol, TypeVar

from .. import members
from ..logs import log_event
from ..storage.streams import NOTICES_STREAM, Append, StreamBackend
from ..wire import JsonObject, encode
from .actor import Actor, ActorContext
from .stream_reader import StreamBatch, StreamReader

log = logging.getLogger("roomcast.actors.notices")
K = TypeVar("K")


class Recipient(Protocol):
    """A connected session, as the hub sees it."""

    def notice(self, event: JsonObject, data: bytes) -> None:
        """Take one notice addressed to this session's user: `event`, and `data` its encoding (shared).

        Must not block: a session that cannot take it closes itself (1013).
        """
        ...


class Watcher(Protocol):
    """Something of the node that follows every notice read, whatever its audience (the user cache)."""

    def notice_seen(self, event: JsonObject) -> None:
        """One notice's event, on every node, before its sessions get it. Must not block."""
        ...

    def notices_missed(self) -> None:
        """Notices may have been missed (the reader lost its place in the stream)."""
        ...


@dataclass(frozen=True, slots=True)
class Audience:
    """Whom a notice is for.

    Without `tenant`: the sessions of `user_ids`, whatever their tenant. With `tenant`: the
    sessions of that tenant whose user has one of `roles` or is one of `user_ids`; with neither
    given, every session of the tenant.
    """

    user_ids: tuple[int, ...] = ()
    tenant: str | None = None
    roles: tuple[str, ...] = ()

    def to_wire(self) -> JsonObject:
        if self.tenant is None:
            return {"to": list(self.user_ids)}
        return {"tenant": self.tenant, "roles": list(self.roles), "users": list(self.user_ids)}

    @classmethod
    def from_wire(cls, notice: JsonObject) -> Audience:
        """The audience of a notice read from the stream; raises KeyError, TypeError or ValueError if unreadable."""
        if "tenant" in notice:
            tenant = notice["tenant"]
            if not isinstance(tenant, str):
                raise TypeError("tenant is not a string")
            roles = notice["roles"]
            if not isinstance(roles, list) or not all(isinstance(role, str) for role in roles):
                raise TypeError("roles must be a list of strings")
            return cls(_ints(notice["users"]), tenant, tuple(roles))
        return cls(_ints(notice["to"]))


def _ints(values: object) -> tuple[int, ...]:
    if not isinstance(values, list) or not all(type(value) is int for value in values):
        raise TypeError("user ids must be a list of integers")
    return tuple(values)


@dataclass(frozen=True, slots=True)
class _Placement:
    """Where one session is indexed."""

    user_id: int
    tenant: str | None
    role: str | None


class NoticesHub:
    """This node's end of the notices stream, and the index of its sessions by user, tenant and role."""

    # Membership notices come out of order only by an announcer's delay (milliseconds, a database read):
    # the recent pairs are enough, and the memory stays bounded.
    MEMBERSHIP_KEPT = 65_536

    def __init__(self, backend: StreamBackend, reader: StreamReader, mailbox_size: int = 256) -> None:
        self.backend = backend
        self.reader = reader
        self._sessions: dict[int, Recipient | set[Recipient]] = {}  # by user id (members.py: most have one)
        self._tenants: dict[str, dict[str, set[Recipient]]] = {}  # tenant -> role -> sessions
        self._placements: dict[Recipient, _Placement] = {}
        self.position: str | None = None  # kept across restarts; None: start at the stream's end
        self.delivered = 0
        self.failed = 0
        self._epoch = 0
        self._watchers: list[Watcher] = []
        self._membership: OrderedDict[tuple[int, int], int] = OrderedDict()  # (user, room) -> last version delivered
        self.actor = Actor("notices", self.run, mailbox_size=mailbox_size, describe_extra=self.describe)

    def watch(self, watcher: Watcher) -> None:
        """Show `watcher` every notice this node reads from now on."""
        self._watchers.append(watcher)

    def add(self, user_id: int, session: Recipient, *, tenant: str | None = None, role: str | None = None) -> None:
        """Deliver `user_id`'s notices to `session` from now on, and, given its user's tenant and
        role, the notices to that tenant's sessions that select it."""
        self.remove(user_id, session)  # at most one place per session
        members.add(self._sessions, user_id, session)
        self._placements[session] = _Placement(user_id, tenant, role)
        if tenant is not None and role is not None:
            self._tenants.setdefault(tenant, {}).setdefault(role, set()).add(session)

    def remove(self, user_id: int, session: Recipient) -> None:
        placement = self._placements.pop(session, None)
        if placement is not None:
            user_id = placement.user_id
            if placement.tenant is not None and placement.role is not None:
                roles = self._tenants.get(placement.tenant, {})
                _discard(roles, placement.role, session)
                if not roles:
                    self._tenants.pop(placement.tenant, None)
        members.discard(self._sessions, user_id, session)

    @property
    def users(self) -> Collection[int]:
        """The users with a session on this node."""
        return self._sessions.keys()

    @property
    def session_count(self) -> int:
        """This node's sessions."""
        return len(self._placements)

    def sessions_of(self, user_id: int) -> int:
        return members.count(self._sessions, user_id)

    async def publish(self, to: Iterable[int] | Audience, event: JsonObject, *,
                      membership: tuple[int, int] | None = None) -> None:
        """Send `event` to every session of these users (or of this audience), on every node; with
        `membership` (room id, version), only to those not told of a later change of that room.

        Raises StreamUnavailable when the stream backend is down (nothing was sent).
        """
        audience = to if isinstance(to, Audience) else Audience(tuple(to))
        notice = {**audience.to_wire(), "event": event}
        if membership is not None:
            notice["membership"] = list(membership)
        await self.backend.append([Append(NOTICES_STREAM, encode(notice))])

    def recipients(self, audience: Audience) -> Iterator[Recipient]:
        """This node's sessions in `audience`, each once; cost: one step per session found (and per user id)."""
        if audience.tenant is None:
            for user_id in audience.user_ids:
                yield from members.members(self._sessions, user_id)
            return
        by_role = self._tenants.get(audience.tenant)
        if by_role is None:
            return
        if not audience.roles and not audience.user_ids:
            for sessions in list(by_role.values()):
                yield from list(sessions)
            return
        roles = set(audience.roles)
        for role in roles:
            yield from list(by_role.get(role, ()))
        for user_id in set(audience.user_ids):
            for session in members.members(self._sessions, user_id):
                placement = self._placements.get(session)
                # Not again if its role already selected it; never a session of another tenant.
                if placement is not None and placement.tenant == audience.tenant and placement.role not in roles:
                    yield session

    async def run(self, ctx: ActorContext) -> None:
        self._epoch += 1
        epoch = self._epoch
        self.reader.attach(NOTICES_STREAM, self.actor, self.position, epoch)
        try:
            async for message in ctx.mailbox:
                if isinstance(message, StreamBatch):
                    if message.epoch == epoch:
                        for entry in message.entries:
                            self._deliver(entry.data)
                            self.position = entry.id
                else:
                    # A Resync asks to fetch what may have been missed: notices are not stored, so there
                    # is none, but what the watchers keep may be stale.
                    for watcher in self._watchers:
                        watcher.notices_missed()
        finally:
            self.reader.detach(NOTICES_STREAM, epoch)

    def _deliver(self, data: bytes) -> None:
        try:
            notice = json.loads(data)
            audience, event = Audience.from_wire(notice), notice["event"]
            if not isinstance(event, dict):
                raise TypeError("event is not an object")
            membership = notice.get("membership")
            if membership is not None:
                room_id, version = _ints(membership)
                audience = Audience(self._newer(audience.user_ids, room_id, version))
        except (ValueError, KeyError, TypeError, RecursionError) as exc:  # written by a node of another version, say
            log_event(log, "notices.unreadable", logging.WARNING, error=repr(exc))
            return
        for watcher in self._watchers:
            watcher.notice_seen(event)
        payload = encode(event)
        for session in self.recipients(audience):
            self.delivered += 1
            try:
                session.notice(event, payload)  # never blocks; one that cannot take it closes itself (1013)
            except Exception as exc:  # a broken session must not keep the notice from the others
                self.failed += 1
                log_event(log, "notices.recipient_failed", logging.WARNING, error_type=type(exc).__name__,
                          error=str(exc))

    def _newer(self, user_ids: Iterable[int], room_id: int, version: int) -> tuple[int, ...]:
        """Those users not yet told of a change of the room at `version` or later; remembered as told."""
        newer = []
        for user_id in user_ids:
            key = (user_id, room_id)
            if self._membership.get(key, -1) >= version:
                continue
            newer.append(user_id)
            self._membership[key] = version
            self._membership.move_to_end(key)
            if len(self._membership) > self.MEMBERSHIP_KEPT:
                self._membership.popitem(last=False)
        return tuple(newer)

    def describe(self) -> JsonObject:
        return {"users": len(self._sessions), "sessions": len(self._placements),
                "delivered": self.delivered, "failed": self.failed, "stream_position": self.position}


def _discard(index: dict[K, set[Recipient]], key: K, session: Recipient) -> None:
    sessions = index.get(key)
    if sessions is not None:
        sessions.discard(session)
        if not sessions:
            del index[key]
