"""Client frames (PROTOCOL §5): one text frame in, one typed and checked frame out.

Every frame a client sends goes through `parse_frame` before anything acts on it, so
no client input reaches code that raises on odd values: ids must fit the database's
BIGINT, numbers too long and JSON too deep for Python's parser are refused, `ref`
(echoed in the reply) must be short valid Unicode. Handlers receive only checked
values. What text must be to be *stored* (body, client_id) stays with the rules REST
shares (`services.text`), applied by the handlers.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, ClassVar

from ...errors import ApiError
from ...wire import MAX_ID, decode, encode

MAX_REF_CHARS = 256
_SHOWN_TYPE_CHARS = 40


class ClientError(ApiError):
    """A bad frame: answered with an `error` event, the connection stays open.

    `ref` is the frame's own `ref` when the frame had a usable one, for the reply to echo.
    """

    def __init__(self, message: str, *, code: str | None = None, details: dict[str, Any] | None = None,
                 ref: str | None = None) -> None:
        super().__init__(message, code=code, details=details)
        self.ref = ref


@dataclass(frozen=True, slots=True)
class Subscribe:
    type: ClassVar[str] = "subscribe"
    ref: str | None
    room: int
    since: int | None
    presence: str = "legacy"  # "diff": presence as `presence_diff` events, the online list with `subscribed`


@dataclass(frozen=True, slots=True)
class Unsubscribe:
    type: ClassVar[str] = "unsubscribe"
    ref: str | None
    room: int


@dataclass(frozen=True, slots=True)
class Send:
    type: ClassVar[str] = "send"
    ref: str | None
    room: int
    body: str
    reply_to: int | None
    client_id: str | None
    attachments: tuple[int, ...]


@dataclass(frozen=True, slots=True)
class Typing:
    type: ClassVar[str] = "typing"
    ref: str | None
    room: int
    state: bool


@dataclass(frozen=True, slots=True)
class Read:
    type: ClassVar[str] = "read"
    ref: str | None
    room: int
    seq: int


@dataclass(frozen=True, slots=True)
class Ping:
    type: ClassVar[str] = "ping"
    ref: str | None


Frame = Subscribe | Unsubscribe | Send | Typing | Read | Ping


def parse_frame(text: str) -> Frame:
    """The frame `text` holds, checked; raises ClientError (`ref` set when usable) if it is bad."""
    try:
        data = decode(text)
    except json.JSONDecodeError as exc:
        raise ClientError(f"malformed JSON: {exc.msg}", code="malformed_json") from None
    except ValueError:  # an integer past Python's int-from-string limit (4300 digits)
        raise ClientError("a number in the frame is too long") from None
    except RecursionError:  # the parser recurses per level; it gives up long before the stack does
        raise ClientError("the frame is nested too deeply") from None
    if not isinstance(data, dict):
        raise ClientError("a frame must be a JSON object")
    ref = _ref(data)
    kind = data.get("type")
    if not isinstance(kind, str):
        raise ClientError("a frame needs a string field 'type'", ref=ref)
    reader = _READERS.get(kind)
    if reader is None:
        shown = repr(kind[:_SHOWN_TYPE_CHARS]) + ("…" if len(kind) > _SHOWN_TYPE_CHARS else "")
        raise ClientError(f"unknown frame type {shown}", code="unknown_type", ref=ref)
    try:
        return reader(data, ref)
    except ClientError as exc:
        exc.ref = ref
        raise


def _ref(data: dict[str, Any]) -> str | None:
    if "ref" not in data:
        return None
    ref = data["ref"]
    if not isinstance(ref, str) or len(ref) > MAX_REF_CHARS or not _is_unicode(ref):
        raise ClientError(f"'ref' must be a string of valid Unicode, at most {MAX_REF_CHARS} characters",
                          details={"field": "ref"})
    return ref


def _is_unicode(text: str) -> bool:
    """False for text with an unpaired surrogate (a JSON \\ud800 escape), which has no UTF-8 form."""
    if text.isascii():
        return True
    try:
        text.encode()
    except UnicodeEncodeError:
        return False
    return True


# ----------------------------------------------------------------------------- fields


def _int(data: dict[str, Any], name: str, low: int) -> int:
    value = data.get(name)
    # `type(...) is int` also refuses bools, which JSON's true/false become.
    if type(value) is not int or not low <= value <= MAX_ID:
        raise ClientError(f"'{name}' must be an integer from {low} to 2^63-1", details={"field": name})
    return value


def _optional_int(data: dict[str, Any], name: str, low: int) -> int | None:
    return None if data.get(name) is None else _int(data, name, low)


def _optional_str(data: dict[str, Any], name: str) -> str | None:
    value = data.get(name)
    if value is not None and not isinstance(value, str):
        raise ClientError(f"'{name}' must be a string", details={"field": name})
    return value


def _ids(data: dict[str, Any], name: str) -> tuple[int, ...]:
    value = data.get(name)
    if value is None:
        return ()
    if not isinstance(value, list) or not all(type(item) is int and 1 <= item <= MAX_ID for item in value):
        raise ClientError(f"'{name}' must be a list of ids", details={"field": name})
    return tuple(value)


# ----------------------------------------------------------------------------- frame types


def _subscribe(data: dict[str, Any], ref: str | None) -> Subscribe:
    presence = "legacy" if data.get("presence") is None else data["presence"]
    if presence not in _PRESENCE_MODES:
        raise ClientError("'presence' must be \"diff\" or \"legacy\"", details={"field": "presence"})
    return Subscribe(ref, _int(data, "room", 1), _optional_int(data, "since", 0), presence)


_PRESENCE_MODES = ("diff", "legacy")


def _unsubscribe(data: dict[str, Any], ref: str | None) -> Unsubscribe:
    return Unsubscribe(ref, _int(data, "room", 1))


def _send(data: dict[str, Any], ref: str | None) -> Send:
    return Send(ref, _int(data, "room", 1), _optional_str(data, "body") or "", _optional_int(data, "reply_to", 1),
                _optional_str(data, "client_id"), _ids(data, "attachments"))


def _typing(data: dict[str, Any], ref: str | None) -> Typing:
    room = _int(data, "room", 1)
    state = data.get("state")
    if not isinstance(state, bool):
        raise ClientError("'state' must be true or false", details={"field": "state"})
    return Typing(ref, room, state)


def _read(data: dict[str, Any], ref: str | None) -> Read:
    return Read(ref, _int(data, "room", 1), _int(data, "seq", 0))


def _ping(data: dict[str, Any], ref: str | None) -> Ping:
    return Ping(ref)


_READERS: dict[str, Callable[[dict[str, Any], str | None], Frame]] = {
    Subscribe.type: _subscribe,
    Unsubscribe.type: _unsubscribe,
    Send.type: _send,
    Typing.type: _typing,
    Read.type: _read,
    Ping.type: _ping,
}


def api_error_event(ref: str | None, error: ApiError) -> bytes:
    """The `error` event answering a frame refused with `error`, its `details` (e.g. `field`) included."""
    # REST shows `details` in its envelope; /ws clients need the same to tell which field was wrong.
    return error_event(ref, error.code, error.message, **({"details": error.details} if error.details else {}))


def error_event(ref: str | None, code: str, message: str, **extra: Any) -> bytes:
    """An `error` event answering a frame (with its ref, if it had one), encoded."""
    event: dict[str, Any] = {"type": "error", "code": code, "message": message, **extra}
    if ref is not None:
        event["ref"] = ref
    return encode(event)
