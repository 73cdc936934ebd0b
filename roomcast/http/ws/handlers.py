"""What each client frame type does (PROTOCOL §5): subscribe, unsubscribe, send, typing, read, ping.

Each handler gets its frame already parsed and checked (`protocol.py`), applies the
same rules as REST (the services package), and answers through the session's
outbound queue.
"""

from __future__ import annotations

from typing import Any

from ...services import live
from ...services.messaging import draft_message, mark_read
from ...wire import encode_with_members
from .protocol import ClientError, Ping, Read, Send, Subscribe, Typing, Unsubscribe
from .session import Handler, Session

# One session may follow this many rooms at once; more is almost surely a bug in the client.
MAX_SUBSCRIPTIONS = 1000


def _with_ref(ref: str | None, event: dict[str, Any]) -> dict[str, Any]:
    if ref is not None:
        return {"type": event["type"], "ref": ref, **{k: v for k, v in event.items() if k != "type"}}
    return event


async def subscribe(session: Session, frame: Subscribe) -> None:
    room_id = frame.room
    subscriptions = session.subscriptions
    if room_id not in subscriptions and len(subscriptions) >= MAX_SUBSCRIPTIONS:
        raise ClientError(f"at most {MAX_SUBSCRIPTIONS} subscriptions per connection", code="too_many_subscriptions")

    def attached(last_seq: int, presence: bytes | None) -> None:
        reply = _with_ref(frame.ref, {"type": "subscribed", "room": room_id, "last_seq": last_seq})
        if presence is None:
            session.reply(reply)
        else:  # the room's online snapshot, encoded once for every join of its batch
            session.reply_all([encode_with_members(reply, presence)])

    # A join may wait on a batch held by others: a client gone meanwhile ends its session at once.
    await session.unless_client_gone(live.join_room(session.node, session, room_id, frame.since, attached,
                                                    presence_diff=frame.presence == "diff"))


async def unsubscribe(session: Session, frame: Unsubscribe) -> None:
    await live.leave_room(session.node, session, frame.room)
    session.reply(_with_ref(frame.ref, {"type": "unsubscribed", "room": frame.room}))


async def send(session: Session, frame: Send) -> None:
    # Its rate token is taken with the others pending (SendPipeline), not one round trip per frame here.
    draft = draft_message(session.node, session.user, frame.room, frame.body, reply_to=frame.reply_to,
                          client_id=frame.client_id, attachments=frame.attachments)
    await session.submit_send(draft, frame.ref)  # acked once committed; reading goes on meanwhile


async def typing(session: Session, frame: Typing) -> None:
    await live.typing(session.node, session, frame.room, frame.state)


async def read(session: Session, frame: Read) -> None:
    await mark_read(session.node, session.user, frame.room, frame.seq)


async def ping(session: Session, frame: Ping) -> None:
    session.reply(_with_ref(frame.ref, {"type": "pong"}))


HANDLERS: dict[str, Handler] = {
    Subscribe.type: subscribe,
    Unsubscribe.type: unsubscribe,
    Send.type: send,
    Typing.type: typing,
    Read.type: read,
    Ping.type: ping,
}
