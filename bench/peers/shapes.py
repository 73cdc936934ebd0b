"""The few /ws events the fan-out load generator needs, shaped as roomcast sends them (PROTOCOL §5).

Shared by the Python peer servers. A peer keeps nothing but who is subscribed where and a
counter per room: the events carry the same fields as roomcast's, so every server moves
about the same bytes per delivery.
"""

from __future__ import annotations

import base64
import binascii
import json
from datetime import UTC, datetime

HEARTBEAT_S = 30
_encode = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False).encode  # compact, as roomcast's


def user_id(token: str) -> int:
    """The token's `sub`, read without checking the signature: peers accept any token."""
    try:
        payload = token.split(".")[1]
        return int(json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))["sub"])
    except (IndexError, KeyError, ValueError, TypeError, binascii.Error):
        return 0


def now() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def welcome(user: int, session_id: str) -> str:
    return _encode({"type": "welcome", "user": _user(user) | {"role": "member", "tenant": "default",
                                                                   "online": True},
                       "session_id": session_id, "server_time": now(), "heartbeat_s": HEARTBEAT_S})


def _user(user: int) -> dict[str, object]:
    return {"id": user, "username": f"u{user}", "display_name": f"User {user}"}


class Room:
    """A room's sequence counter: the only state a peer keeps per room besides its subscribers."""

    def __init__(self) -> None:
        self.seq = 0

    def message(self, room: int, sender: int, body: str) -> dict[str, object]:
        self.seq += 1
        return {"id": self.seq, "room_id": room, "seq": self.seq, "sender": _user(sender), "body": body,
                "reply_to": None, "attachments": [], "client_id": None, "created_at": now(), "edited_at": None}


def message_event(room: int, message: dict[str, object]) -> str:
    return _encode({"type": "message", "room": room, "seq": message["seq"], "message": message})


def reply(kind: str, ref: object, **fields: object) -> str:
    event = {"type": kind, **fields}
    if ref is not None:
        event["ref"] = ref
    return _encode(event)


def error(ref: object, code: str, message: str) -> str:
    return reply("error", ref, code=code, message=message)
