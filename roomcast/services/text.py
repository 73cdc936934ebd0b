"""What user-supplied text must be to be stored exactly as sent (DESIGN.md §9)."""

from __future__ import annotations

import unicodedata

from ..errors import BadRequest

MAX_CLIENT_ID_CHARS = 64
MAX_ATTACHMENTS = 10
MAX_EXTERNAL_REF_CHARS = 255
MAX_USERNAME_CHARS = 64


def text_problem(text: str) -> str | None:
    """Why `text` cannot be stored and returned byte for byte, or None if it can.

    A NUL cannot be stored in PostgreSQL text, and an unpaired surrogate (which
    JSON's \\ud800 escapes can produce) has no UTF-8 form.
    """
    if "\x00" in text:
        return "must not contain NUL characters"
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return "must be valid Unicode (no unpaired surrogates)"
    return None


def require_storable(text: str, field: str) -> None:
    if (problem := text_problem(text)) is not None:
        raise BadRequest(f"{field} {problem}", details={"field": field})


def check_body(body: str, max_chars: int, *, has_attachments: bool) -> None:
    """A message body: plain text of at most `max_chars` characters, not blank without attachments."""
    require_storable(body, "body")
    if len(body) > max_chars:
        raise BadRequest(f"body is longer than {max_chars} characters",
                         details={"field": "body", "max_chars": max_chars})
    if not body.strip() and not has_attachments:
        raise BadRequest("the message body is empty", code="empty_body")


def new_username_problem(username: str) -> str | None:
    """Why `username` cannot be a new user's name, or None if it can: 1 to 64 characters, none of them
    invisible (Unicode's separators and "other" classes), so that no name can pass for another's.

    The rule of REST's `NewUsername` schema (its pattern `^[^\\p{C}\\p{Z}]+$`), for callers without one.
    """
    if not 1 <= len(username) <= MAX_USERNAME_CHARS:
        return f"must be 1 to {MAX_USERNAME_CHARS} characters"
    for char in username:
        if unicodedata.category(char)[0] in "CZ":
            return f"must not contain U+{ord(char):04X} (spaces, control and other invisible characters)"
    return None


def check_room_name(name: str) -> None:
    """A room's name: storable, and not blank (a room listed as "   " is a client's bug, not a name)."""
    require_storable(name, "name")
    if not name.strip():
        raise BadRequest("name must not be blank", details={"field": "name"})


def check_client_id(client_id: str | None) -> None:
    if client_id is None:
        return
    require_storable(client_id, "client_id")
    if not 1 <= len(client_id) <= MAX_CLIENT_ID_CHARS:
        raise BadRequest(f"client_id must be 1 to {MAX_CLIENT_ID_CHARS} characters", details={"field": "client_id"})


def check_attachment_ids(ids: list[int]) -> list[int]:
    """The distinct attachment ids of a send, in the order given: at most MAX_ATTACHMENTS ids listed."""
    # Counted as listed, repeats included, as REST's schema counts them: /ws refuses what REST refuses.
    if len(ids) > MAX_ATTACHMENTS:
        raise BadRequest(f"at most {MAX_ATTACHMENTS} attachments per message", details={"field": "attachments"})
    return list(dict.fromkeys(ids))


def check_external_ref(external_ref: str) -> None:
    require_storable(external_ref, "external_ref")
    if not 1 <= len(external_ref) <= MAX_EXTERNAL_REF_CHARS:
        raise BadRequest(f"external_ref must be 1 to {MAX_EXTERNAL_REF_CHARS} characters",
                         details={"field": "external_ref"})
