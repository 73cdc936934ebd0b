"""A connected client's life in rooms: connect, join and leave with presence, typing, disconnect.

The rules of being live, whatever carries the connection: the `/ws` session keeps its
socket, its outbound queue and its read loop, and calls these for everything else.
Membership is checked as REST checks it (`services.access`).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime
from typing import Protocol, TypeVar

import trio
from sqlalchemy.orm import Session

from ..actors.notices import Recipient
from ..actors.room import Subscriber
from ..errors import DependencyUnavailable, Forbidden
from ..identity import user_cache
from ..identity.authenticate import access_refusal
from ..logs import log_event
from ..node import Node
from ..storage.models import User
from ..storage.users import UserSnapshot, access_states
from ..wire import JsonObject, sender_to_wire
from .access import not_a_member, open_room
from .joins import JoinRequest, prepare_join
from .presence_announcer import announce
from .presence_keeper import ensure_presence_keeper

log = logging.getLogger("roomcast.live")

# A control notice (services.admin_users publishes it): the sessions of its user act on it, closing
# with 1008 if it no longer admits them, and every node's user cache forgets the user; it is never
# forwarded to the client.
ACCESS_CHANGED = user_cache.ACCESS_CHANGED

# How long a disconnect may spend announcing its leaves: a dead Redis must not hold it.
_DETACH_TIMEOUT_S = 5.0


S = TypeVar("S", bound="LiveSession")


class LiveSession(Subscriber, Recipient, Protocol):
    """A connected client as the rules see it: who it is, and which rooms it follows."""

    user: UserSnapshot
    session_id: str
    subscriptions: set[int]
    token_issued_at: datetime | None  # when its token was issued: checked against revocations

    def drop_held_events(self, room_id: int) -> None:
        """Forget the room's stored events held back (behind the session's own sends in flight)."""
        ...


async def require_member(node: Node, user: UserSnapshot, room_id: int) -> None:
    """404 for absent or other tenants' rooms, not_a_member for rooms the user is not in."""

    def check(db: Session) -> None:
        open_room(db, user, room_id).require_member()

    await node.database.read(check)


async def connect(node: Node, session: LiveSession) -> None:
    """The session is online: in presence (raises DependencyUnavailable with Redis down) and for notices."""
    ensure_presence_keeper(node)
    await node.presence.connect(session.user.id, session.session_id)
    node.notices.add(session.user.id, session, tenant=session.user.tenant, role=session.user.role)


async def join_room(node: Node, session: LiveSession, room_id: int, since: int | None,
                    on_attached: Callable[[int, bytes | None], None], presence_diff: bool = False) -> None:
    """Follow a room the user is a member of, and announce the session's presence in it.

    The membership check, the presence write and the online snapshot are made together with
    the other joins waiting on the node (`services.joins`). Presence goes before the room
    actor: with the stream backend down it raises DependencyUnavailable (an `unavailable`
    error for the frame) before anything is subscribed, and nothing of the join is left.
    `on_attached(last_seq, snapshot)`: with `presence_diff`, `snapshot` holds who is online
    (`online`, `online_count`) for the `subscribed` reply, encoded as object members
    (`wire.encode_with_members`), and later changes come as diffs.
    """
    subscriptions = session.subscriptions
    fresh = room_id not in subscriptions
    if fresh:
        subscriptions.add(room_id)  # from here on, leaving (or disconnecting, or room_removed) undoes the entry
    request = JoinRequest(session.user, session.session_id, room_id, fresh=fresh, diff=presence_diff)
    try:
        joined = await prepare_join(node, request)
    except Exception:
        if fresh:
            if request.wrote:
                await leave_room(node, session, room_id)  # whatever part of the join went through
            else:
                subscriptions.discard(room_id)
        raise
    except BaseException:  # cancelled: the session ends, and its disconnect undoes what was written
        if fresh and not request.wrote:
            subscriptions.discard(room_id)
        raise
    if fresh and room_id not in subscriptions:
        # Removed from the room while joining (room_removed left it already): the entry just
        # written may have come after that leave's.
        await _undo_presence(node, session, room_id)
        raise not_a_member()
    try:
        await _subscribe(node, session, room_id, since, on_attached,
                         joined.snapshot_members if presence_diff else None, presence_diff)
    except Forbidden:
        if fresh and room_id not in subscriptions:  # removed while the room actor took it: nothing attached
            await _undo_presence(node, session, room_id)
        raise
    if room_id not in subscriptions:  # removed while the room actor took the subscription: its events stop
        node.rooms.unsubscribe(room_id, session)
        if fresh:
            await _undo_presence(node, session, room_id)
        return
    if fresh:
        await announce(node, room_id, session.user, "joined", joined.online, snapshot=joined.snapshot, at=joined.at)


async def _undo_presence(node: Node, session: LiveSession, room_id: int) -> None:
    try:
        await node.presence.leave(room_id, session.user.id, session.session_id)
    except DependencyUnavailable:  # not kept alive by this node any more: it expires
        pass


async def _subscribe(node: Node, session: LiveSession, room_id: int, since: int | None,
                     on_attached: Callable[[int, bytes | None], None], snapshot: bytes | None,
                     presence_diff: bool) -> None:
    def attached(last_seq: int) -> None:
        # Removed from the room (room_removed already sent) while the room actor took the
        # subscription: it is refused there, so no `subscribed` and no event follows the removal.
        if room_id not in session.subscriptions:
            raise not_a_member()
        # A subscription this one replaces may have had events held behind a send in flight:
        # they are its, at or below `last_seq`, and must not follow the new `subscribed`.
        session.drop_held_events(room_id)
        on_attached(last_seq, snapshot)

    await node.rooms.subscribe(room_id, session, since, on_attached=attached, presence_diff=presence_diff)


def forget_room(node: Node, session: LiveSession, room_id: int) -> bool:
    """Stop following a room at once (no waiting); True if it was followed, and its leave is to be announced
    (`announce_leave`)."""
    node.rooms.unsubscribe(room_id, session)
    session.drop_held_events(room_id)  # nothing of the room after `unsubscribed` / `room_removed`
    if room_id not in session.subscriptions:
        return False
    session.subscriptions.discard(room_id)
    return True


async def announce_leave(node: Node, session: LiveSession, room_id: int) -> None:
    """Remove the session's presence entry in a room it no longer follows, and announce the leave."""
    try:
        online = await node.presence.leave(room_id, session.user.id, session.session_id)
    except DependencyUnavailable:  # the leave stands; the entry in Redis ages out
        return
    await announce(node, room_id, session.user, "left", online)


async def leave_room(node: Node, session: LiveSession, room_id: int) -> None:
    """Stop following a room and announce the leave; a no-op for rooms not followed."""
    if forget_room(node, session, room_id):
        await announce_leave(node, session, room_id)


async def typing(node: Node, session: LiveSession, room_id: int, state: bool) -> None:
    """Tell the room's other sessions (the user's own other connections too) that the user types."""
    await node.typing_limiter.acquire(session.user.id)
    if room_id not in session.subscriptions:
        await require_member(node, session.user, room_id)
    event = {"type": "typing", "room": room_id, "user": sender_to_wire(session.user), "state": state}
    await node.rooms.publish_transient(room_id, event, origin=session.session_id)


async def disconnect(node: Node, session: LiveSession) -> None:
    """Leave every room and go offline; bounded, so a dead Redis cannot hold a closing socket."""
    node.notices.remove(session.user.id, session)
    for room_id in session.subscriptions:
        node.rooms.unsubscribe(room_id, session)
    try:
        with trio.move_on_after(_DETACH_TIMEOUT_S, shield=True):
            for room_id in list(session.subscriptions):
                await leave_room(node, session, room_id)
            await node.presence.disconnect(session.user.id, session.session_id)
    except DependencyUnavailable as exc:  # an outage, logged once by its gateway
        log_event(log, "session.detach_failed", logging.DEBUG, session=session.session_id, error=str(exc))
    except Exception as exc:  # the socket is gone either way
        log_event(log, "session.detach_failed", logging.WARNING, session=session.session_id, error=repr(exc))
    finally:
        # Whatever the orderly leave did not get to (timed out, failed) is given up here, so
        # nothing of this session is kept alive: on other nodes it expires within the ttl.
        node.presence.forget(session.user.id, session.session_id, session.subscriptions)
        session.subscriptions.clear()


async def refused_sessions(node: Node, sessions: Sequence[S]) -> list[tuple[S, str]]:
    """The sessions whose user was disabled, or whose token was revoked, since they connected; with why."""
    states = await node.database.read(access_states, {session.user.id for session in sessions})
    refused = []
    for session in sessions:
        is_active, valid_after = states.get(session.user.id, (False, None))
        refusal = access_refusal(is_active, valid_after, session.token_issued_at)
        if refusal is not None:
            refused.append((session, refusal))
    return refused


def access_changed_event(user: User) -> JsonObject:
    """The control notice telling every session of `user`, on every node, what admits it now."""
    valid_after = user.tokens_valid_after
    if valid_after is not None and valid_after.tzinfo is None:
        valid_after = valid_after.replace(tzinfo=UTC)  # SQLite hands naive datetimes back
    return {"type": ACCESS_CHANGED, "user": user.id, "is_active": user.is_active,
            "tokens_valid_after": valid_after.isoformat() if valid_after is not None else None}


def notice_refusal(event: Mapping[str, object], token_issued_at: datetime | None) -> str | None:
    """Why an ACCESS_CHANGED notice ends a session whose token was issued at `token_issued_at`, or None."""
    raw = event.get("tokens_valid_after")
    try:
        valid_after = datetime.fromisoformat(raw) if isinstance(raw, str) else None
    except ValueError:
        valid_after = None
    return access_refusal(event.get("is_active") is not False, valid_after, token_issued_at)
