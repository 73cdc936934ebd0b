"""What each client frame type does (PROTOCOL §5): subscribe, unsubscribe, send, typing, read, ping.

Each handler validates its frame, applies the same rules as REST (the services
package), and answers through the session's outbound queue.
"""

from __future__ import annotations

from typing import Any

from ...services.access import open_room
from ...services.messaging import draft_message, mark_read
from ...storage.models import User
from ...wire import sender_to_wire
from .session import ClientError, Session

# One session may follow this many rooms at once; more is almost surely a bug in the client.
MAX_SUBSCRIPTIONS = 1000


def _int_field(frame: dict[str, Any], name: str, *, optional: bool = False, minimum: int = 0) -> int | None:
    value = frame.get(name)
    if value is None and optional:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ClientError(f"'{name}' must be an integer ≥ {minimum}", details={"field": name})
    return value


def _str_field(frame: dict[str, Any], name: str, *, optional: bool = False) -> str | None:
    value = frame.get(name)
    if value is None and optional:
        return None
    if not isinstance(value, str):
        raise ClientError(f"'{name}' must be a string", details={"field": name})
    return value


def _with_ref(frame: dict[str, Any], event: dict[str, Any]) -> dict[str, Any]:
    if "ref" in frame:
        return {"type": event["type"], "ref": frame["ref"], **{k: v for k, v in event.items() if k != "type"}}
    return event


async def _require_member(session: Session, room_id: int) -> None:
    """Membership as REST checks it: 404 for absent or other tenants' rooms, not_a_member otherwise."""

    def check(db: Any) -> None:
        open_room(db, session.user, room_id).require_member()

    await session.node.database.read(check)


def user_badge(user: User) -> dict[str, Any]:
    """How typing, read and presence events name a user."""
    return sender_to_wire(user)


async def subscribe(session: Session, frame: dict[str, Any]) -> None:
    room_id = _int_field(frame, "room", minimum=1)
    since = _int_field(frame, "since", optional=True)
    assert room_id is not None
    subscriptions = session.subscriptions
    if room_id not in subscriptions and len(subscriptions) >= MAX_SUBSCRIPTIONS:
        raise ClientError(f"at most {MAX_SUBSCRIPTIONS} subscriptions per connection", code="too_many_subscriptions")
    await _require_member(session, room_id)

    def attached(last_seq: int) -> None:
        session.reply(_with_ref(frame, {"type": "subscribed", "room": room_id, "last_seq": last_seq}))

    await session.join_room(room_id, since, attached)


async def unsubscribe(session: Session, frame: dict[str, Any]) -> None:
    room_id = _int_field(frame, "room", minimum=1)
    assert room_id is not None
    await session.leave_room(room_id)
    session.reply(_with_ref(frame, {"type": "unsubscribed", "room": room_id}))


async def send(session: Session, frame: dict[str, Any]) -> None:
    room_id = _int_field(frame, "room", minimum=1)
    body = _str_field(frame, "body", optional=True) or ""
    reply_to = _int_field(frame, "reply_to", optional=True, minimum=1)
    client_id = _str_field(frame, "client_id", optional=True)
    attachments = frame.get("attachments") or []
    if not isinstance(attachments, list) or not all(
        isinstance(item, int) and not isinstance(item, bool) for item in attachments
    ):
        raise ClientError("'attachments' must be a list of attachment ids", details={"field": "attachments"})
    assert room_id is not None
    draft = draft_message(session.node, session.user, room_id, body, reply_to=reply_to, client_id=client_id,
                          attachments=attachments)
    await session.submit_send(draft, frame.get("ref"))  # acked once committed; reading goes on meanwhile


async def typing(session: Session, frame: dict[str, Any]) -> None:
    room_id = _int_field(frame, "room", minimum=1)
    state = frame.get("state")
    if not isinstance(state, bool):
        raise ClientError("'state' must be true or false", details={"field": "state"})
    assert room_id is not None
    session.node.typing_limiter.check(session.user.id)
    if room_id not in session.subscriptions:
        await _require_member(session, room_id)
    await session.node.rooms.publish_transient(
        room_id, {"type": "typing", "room": room_id, "user": user_badge(session.user), "state": state},
        origin=session.session_id)


async def read(session: Session, frame: dict[str, Any]) -> None:
    room_id = _int_field(frame, "room", minimum=1)
    seq = _int_field(frame, "seq")
    assert room_id is not None and seq is not None
    await mark_read(session.node, session.user, room_id, seq)


async def ping(session: Session, frame: dict[str, Any]) -> None:
    session.reply(_with_ref(frame, {"type": "pong"}))


HANDLERS = {
    "subscribe": subscribe,
    "unsubscribe": unsubscribe,
    "send": send,
    "typing": typing,
    "read": read,
    "ping": ping,
}
