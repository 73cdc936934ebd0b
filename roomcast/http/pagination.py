"""Opaque list cursors: clients pass back what they were given, nothing more."""

from __future__ import annotations

import base64
import binascii

from ..errors import BadRequest
from ..wire import MAX_ID


def _number(text: str) -> int | None:
    """A decimal integer in 0..MAX_ID (ASCII digits only), or None."""
    if not (text.isascii() and text.isdigit()) or int(text) > MAX_ID:
        return None
    return int(text)


def encode_cursor(position: int) -> str:
    return base64.urlsafe_b64encode(f"p{position}".encode()).decode().rstrip("=")


def decode_cursor(cursor: str | None) -> int:
    """The position a cursor stands for; 0 for none; 400 for anything not made by encode_cursor."""
    if not cursor:
        return 0
    try:
        text = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
    except (binascii.Error, UnicodeDecodeError, ValueError):
        text = ""
    position = _number(text[1:]) if text.startswith("p") else None
    if position is None:
        raise BadRequest("invalid cursor", details={"field": "cursor"})
    return position


def encode_keyset(*parts: int) -> str:
    """A cursor for a position given by several integers (e.g. a timestamp and an id)."""
    return base64.urlsafe_b64encode(("k" + ".".join(str(part) for part in parts)).encode()).decode().rstrip("=")


def decode_keyset(cursor: str | None, size: int) -> tuple[int, ...] | None:
    """The `size` integers a keyset cursor stands for; None for none; 400 for anything else."""
    if not cursor:
        return None
    try:
        text = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
    except (binascii.Error, UnicodeDecodeError, ValueError):
        text = ""
    parts = [_number(part) for part in text[1:].split(".")] if text.startswith("k") else []
    if len(parts) != size or None in parts:
        raise BadRequest("invalid cursor", details={"field": "cursor"})
    return tuple(part for part in parts if part is not None)
