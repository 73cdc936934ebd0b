"""The JSON shapes of PROTOCOL.md, built from the storage models, and the protocol's id bound.

A leaf every layer may import: the storage models are named for type hints only.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING, Any

import orjson

from .timestamps import to_wire

if TYPE_CHECKING:
    from .storage.messages import NewMessage
    from .storage.models import Attachment, Message, Room, User
    from .storage.users import UserSnapshot

# Ids are signed 64-bit (PostgreSQL BIGINT, SQLite INTEGER): nothing outside 1..MAX_ID exists,
# so anything a client names outside it is rejected before it reaches the database.
MAX_ID = 2**63 - 1


def user_to_wire(user: User | UserSnapshot, online: bool = False) -> dict[str, Any]:
    return {
        "id": user.id,
        "username": user.username,
        "display_name": user.display_name,
        "role": user.role,
        "tenant": user.tenant,
        "online": online,
    }


def admin_user_to_wire(user: User, online: bool = False) -> dict[str, Any]:
    """A user as the admin tools show it: the user object and what admits it."""
    return {
        **user_to_wire(user, online),
        "is_active": user.is_active,
        "created_at": to_wire(user.created_at),
        "tokens_valid_after": to_wire(user.tokens_valid_after),
    }


def sender_to_wire(user: User | UserSnapshot) -> dict[str, Any]:
    return {"id": user.id, "username": user.username, "display_name": user.display_name}


def member_to_wire(user: User | UserSnapshot, room_role: str) -> dict[str, Any]:
    return {
        "id": user.id,
        "username": user.username,
        "display_name": user.display_name,
        "role": user.role,
        "room_role": room_role,
    }


def attachment_to_wire(attachment: Attachment) -> dict[str, Any]:
    return {
        "id": attachment.id,
        "filename": attachment.filename,
        "content_type": attachment.content_type,
        "size": attachment.size,
        "url": f"/api/attachments/{attachment.id}",
    }


def message_to_wire(message: Message | NewMessage, sender: User | UserSnapshot,
                    attachments: Iterable[Attachment] = ()) -> dict[str, Any]:
    return {
        "id": message.id,
        "room_id": message.room_id,
        "seq": message.seq,
        "sender": sender_to_wire(sender),
        "body": message.body,
        "reply_to": message.reply_to_id,
        "attachments": [attachment_to_wire(a) for a in attachments],
        "client_id": message.client_id,
        "created_at": to_wire(message.created_at),
        "edited_at": to_wire(message.edited_at),
    }


def new_message_to_wire(message_id: int, room_id: int, seq: int, sender: dict[str, Any], body: str,
                        reply_to: int | None, attachments: list[dict[str, Any]], client_id: str | None,
                        created_at: str | None) -> dict[str, Any]:
    """A message just stored, as `message_to_wire` gives it, from its columns (no ORM object to
    build on the send path); `sender` as `sender_to_wire`, `created_at` as `to_wire`."""
    return {"id": message_id, "room_id": room_id, "seq": seq, "sender": sender, "body": body, "reply_to": reply_to,
            "attachments": attachments, "client_id": client_id, "created_at": created_at, "edited_at": None}


def room_to_wire(room: Room, members: Sequence[dict[str, Any]], last_message: dict[str, Any] | None,
                 unread_count: int) -> dict[str, Any]:
    return {
        "id": room.id,
        "kind": room.kind,
        "name": room.name,
        "topic": room.topic,
        "is_active": room.is_active,
        "external_ref": room.external_ref,
        "members": list(members),
        "last_seq": room.last_seq,
        "last_message": last_message,
        "unread_count": unread_count,
        "created_at": to_wire(room.created_at),
        "updated_at": to_wire(room.updated_at),
    }


# Stored room events, exactly as PROTOCOL §5 delivers them over /ws (and as the outbox keeps them).


def message_event(room_id: int, seq: int, message: dict[str, Any]) -> dict[str, Any]:
    return {"type": "message", "room": room_id, "seq": seq, "message": message}


def message_edited_event(room_id: int, seq: int, message: dict[str, Any]) -> dict[str, Any]:
    return {"type": "message_edited", "room": room_id, "seq": seq, "message": message}


def message_deleted_event(room_id: int, seq: int, message_id: int) -> dict[str, Any]:
    return {"type": "message_deleted", "room": room_id, "seq": seq, "message_id": message_id}


def room_updated_event(room_id: int, seq: int, changes: dict[str, Any]) -> dict[str, Any]:
    return {"type": "room_updated", "room": room_id, "seq": seq, "changes": changes}


# The one encoder: every event goes on the wire (and into the outbox) in this form.

JsonObject = dict[str, Any]  # an event or any other JSON object, as the protocol carries it
JsonValue = JsonObject | list[Any] | str | int | float | bool | None  # any JSON value (a client's `data`)

# orjson writes what the standard library's compact encoder writes, about ten times faster: the
# same escapes, raw UTF-8 characters, keys in order. Whatever it would write differently (a key
# that is not a string, an integer past 64 bits, a str subclass, a datetime or a dataclass) it
# refuses with these options, and the standard library encodes it instead.
_ORJSON_PLAIN_ONLY = (orjson.OPT_PASSTHROUGH_SUBCLASS | orjson.OPT_PASSTHROUGH_DATETIME
                      | orjson.OPT_PASSTHROUGH_DATACLASS)
_encoder = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"))
_strict_encoder = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"), allow_nan=False)


def encode_text(event: dict[str, Any]) -> str:
    """The event as compact JSON, raw UTF-8 characters (what the outbox stores)."""
    return encode(event).decode()


def encode(event: JsonValue) -> bytes:
    """The event as compact UTF-8 JSON bytes: what every subscriber receives, byte for byte."""
    try:
        return orjson.dumps(event, option=_ORJSON_PLAIN_ONLY)
    except orjson.JSONEncodeError:
        return _encoder.encode(event).encode()


def decode(text: str) -> Any:
    """A client's frame as Python values: what `json.loads` gives, in a fraction of its time.

    orjson reads it. What orjson refuses (malformed text, NaN, an unpaired surrogate, nesting past
    1024 levels) goes to `json.loads`, to be read or refused in its words. One difference is left:
    orjson reads an integer beyond 64 bits as a float. Every number a frame carries is an id or a
    seq, checked to be an integer in range, so such a number is refused either way.
    """
    try:
        return orjson.loads(text)
    except orjson.JSONDecodeError:
        return json.loads(text)


def encode_members(fields: dict[str, Any]) -> bytes:
    """`fields` encoded as the members of an object (`"a":1,"b":[2]`), for `encode_with_members`."""
    return encode(fields)[1:-1]


def encode_with_members(event: dict[str, Any], members: bytes) -> bytes:
    """`encode` of `event` with `members` (from `encode_members`) added last.

    What many events share (the room's online snapshot in each `subscribed` of a join storm)
    is encoded once, not once per event.
    """
    head = encode(event)
    return head[:-1] + (b"," if event else b"") + members + b"}"


def send_ack(ref: str | None, message: dict[str, Any], stored_event: bytes | None = None) -> bytes:
    """The `ack` of a send, encoded: `{"type":"ack","ref":…,"message":…}` (no `ref` if the send had none).

    `stored_event` is the send's `message` event as stored (`encode` of `message_event`): its
    message is cut from those bytes rather than encoded a second time, the costliest part of an ack.
    """
    head = b'{"type":"ack",' if ref is None else b'{"type":"ack","ref":' + encode(ref) + b","
    if stored_event is not None:
        prefix = b'{"type":"message","room":%d,"seq":%d,"message":' % (message["room_id"], message["seq"])
        if stored_event.startswith(prefix):
            return head + b'"message":' + stored_event[len(prefix):]
    return head + b'"message":' + encode(message) + b"}"


def message_event_around_id(room_id: int, seq: int, message: dict[str, Any]) -> tuple[str, str]:
    """`encode_text` of the `message` event of a message whose id is not drawn yet (its "id", first,
    is 0): the text before the id and after it. Once the id is known, the event is exactly
    `head + str(id) + tail`, encoded once whatever the id (the database may join them itself)."""
    head = f'{{"type":"message","room":{room_id:d},"seq":{seq:d},"message":{{"id":'
    text = encode_text(message_event(room_id, seq, message))
    if message.get("id") != 0 or not text.startswith(head + "0,"):
        raise ValueError("the message must come with its id first, as 0")
    return head, text[len(head) + 1:]


def encode_json(value: JsonValue) -> bytes:
    """Any JSON value from a client as `encode` puts it on the wire (within an event).

    ValueError for what no client could parse back: NaN or infinities, unpaired surrogates,
    nesting deeper than the encoder can follow.
    """
    try:
        return _strict_encoder.encode(value).encode()
    except RecursionError:
        raise ValueError("nested too deeply") from None
