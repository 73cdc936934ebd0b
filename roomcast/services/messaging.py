"""Messages: send, edit, delete, history and read pointers (PROTOCOL §4), for REST and /ws alike.

Every stored event (message, edit, deletion) is written in a transaction that locks
the room, takes its next seq and writes the outbox row (DESIGN.md §1); the caller is
answered only after that commit, and the outbox relay is woken right after it. Sends
share their transactions with whatever else the node is sending (`send_committer`).
"""

from __future__ import annotations

import logging
import weakref
from collections.abc import Sequence
from typing import Any

import trio
from sqlalchemy.orm import Session

from ..actors.system import ActorSystem
from ..errors import BadRequest, Forbidden, NotFound, RateLimited
from ..logs import log_event
from ..node import Node
from ..storage.attachments import attachments_of
from ..storage.events import append_event, take_next_seq
from ..storage.messages import get_room_message, history_page, latest_visible_message_id, message_with_sender
from ..storage.models import Room
from ..storage.replica import require_replayed
from ..storage.rooms import advance_read_pointer
from ..storage.streams import StreamUnavailable
from ..storage.users import UserSnapshot
from ..timestamps import utcnow
from ..wire import message_deleted_event, message_edited_event, message_to_wire, sender_to_wire
from .access import open_room
from .send_committer import SendCommitter, SendOutcome, SendRequest, ensure_committer
from .send_store import Draft, require_not_deleted, room_inactive, store_draft, store_drafts
from .text import check_attachment_ids, check_body, check_client_id
from .webhook_events import enqueue

__all__ = ["Draft", "committer", "draft_message", "mark_read", "send_drafts", "send_message", "take_send_token",
           "take_send_tokens", "take_send_tokens_if_ready"]

log = logging.getLogger("roomcast.messaging")

HISTORY_MAX_LIMIT = 200

# Per node (its actor system), a lock per (room, reader) while a read of theirs is under way (`mark_read`).
_READS: weakref.WeakKeyDictionary[ActorSystem, dict[tuple[int, int], trio.Lock]] = weakref.WeakKeyDictionary()


def _require_active(room: Room) -> None:
    if not room.is_active:
        raise room_inactive()


async def take_send_token(node: Node, sender: UserSnapshot) -> None:
    """One send off the sender's budget (shared by every node with Redis); RateLimited when spent."""
    started = trio.current_time()
    try:
        await node.send_limiter.acquire(sender.id)
    finally:
        node.metrics.send_rate_limit.observe(trio.current_time() - started)


async def take_send_tokens(node: Node, sender: UserSnapshot, count: int) -> list[RateLimited | None]:
    """`count` sends off the sender's budget, in order (one call to Redis for all): for each,
    None when it may go, or the RateLimited that refuses it."""
    started = trio.current_time()
    waits = await node.send_limiter.take(sender.id, count)
    node.metrics.send_rate_limit.observe(trio.current_time() - started)
    return _refusals(waits)


def take_send_tokens_if_ready(node: Node, sender: UserSnapshot, count: int) -> list[RateLimited | None] | None:
    """As `take_send_tokens` when the limiter can answer at once (no round trip to Redis); else
    None, with nothing taken."""
    waits = node.send_limiter.take_if_ready(sender.id, count)
    if waits is None:
        return None
    node.metrics.send_rate_limit.observe(0.0)
    return _refusals(waits)


def _refusals(waits: list[float]) -> list[RateLimited | None]:
    """For each token asked for: None when it was taken, else the RateLimited that refuses its send."""
    return [RateLimited(round(wait, 3)) if wait > 0 else None for wait in waits]


def draft_message(node: Node, sender: UserSnapshot, room_id: int, body: str, *, reply_to: int | None = None,
                  client_id: str | None = None, attachments: Sequence[int] = ()) -> Draft:
    """Check what needs no database (body, client_id, attachment ids); the sender's rate is taken
    before, with `take_send_token`."""
    check_client_id(client_id)
    attachment_ids = check_attachment_ids(list(attachments))
    check_body(body, node.settings.max_body_chars, has_attachments=bool(attachment_ids))
    return Draft(room_id, body, reply_to, client_id, tuple(attachment_ids))


async def send_message(node: Node, sender: UserSnapshot, room_id: int, body: str, *, reply_to: int | None = None,
                       client_id: str | None = None,
                       attachments: Sequence[int] = ()) -> tuple[dict[str, Any], bool]:
    """Store a message from `sender`; returns it and True, once committed.

    With a `client_id` the sender already used in this room, nothing is stored and
    the original message comes back with False. Over the sender's rate → RateLimited.
    It commits with whatever else the node is sending (`send_drafts`).
    """
    taken_at = trio.current_time()
    await take_send_token(node, sender)
    draft = draft_message(node, sender, room_id, body, reply_to=reply_to, client_id=client_id,
                          attachments=attachments)
    outcome = (await send_drafts(node, sender, [draft]))[0]
    if isinstance(outcome, Exception):
        raise outcome
    message, stored_event = outcome
    if stored_event is not None:
        node.metrics.send_latency.observe(trio.current_time() - taken_at)
    return message, stored_event is not None


async def send_drafts(node: Node, sender: UserSnapshot, drafts: Sequence[Draft]) -> list[SendOutcome]:
    """Store drafts of one sender, in order, through the node's committer (group commit).

    They are committed in one transaction with the sends waiting on the node at that
    moment, from every session and REST request, and answered only after that commit.
    Each outcome is what `send_message` would have returned for that draft, or the
    ApiError it would have raised; a refused draft leaves the others be, and so does
    one that fails otherwise (a bug, a value the database rejects): its outcome is the
    exception it raised. Drafts to one room are stored in the order given. When the
    database is down, every outcome is DatabaseUnavailable. Waits while the committer's
    queue is full.
    """
    return await committer(node).submit(SendRequest(sender, drafts))


def committer(node: Node) -> SendCommitter:
    """The node's send committer, started on first use."""
    return ensure_committer(node, store_draft, store_drafts)


async def edit_message(node: Node, editor: UserSnapshot, room_id: int, message_id: int, body: str) -> dict[str, Any]:
    """Replace the body of the editor's own message; stores a `message_edited` event if it changed."""

    def work(session: Session) -> tuple[dict[str, Any], bool]:
        access = open_room(session, editor, room_id, lock=True)
        access.require_member()
        found = message_with_sender(session, room_id, message_id)
        if found is None:
            raise NotFound("no such message")
        message, sender = found
        if message.sender_id != editor.id:
            raise Forbidden("only the sender may edit a message")
        require_not_deleted(message)
        _require_active(access.room)
        attachments = attachments_of(session, [message.id]).get(message.id, [])
        check_body(body, node.settings.max_body_chars, has_attachments=bool(attachments))
        if body == message.body:
            return message_to_wire(message, sender, attachments), False
        message.body = body
        message.edited_at = utcnow()
        seq = take_next_seq(session, room_id)
        view = message_to_wire(message, sender, attachments)
        append_event(session, message_edited_event(room_id, seq, view))
        enqueue(node, session, editor.tenant, "message.edited", room_id, seq, message=view)
        return view, True

    view, changed = await node.database.write(work)
    if changed:
        node.notify_committed(room_id)
    return view


async def delete_message(node: Node, caller: UserSnapshot, room_id: int, message_id: int) -> None:
    """Soft-delete a message (its sender, the room's owners and moderators, admins).

    Deleting a deleted message changes nothing and succeeds, so retries are safe.
    """

    def work(session: Session) -> bool:
        access = open_room(session, caller, room_id, lock=True)
        message = get_room_message(session, room_id, message_id)
        if message is None:
            raise NotFound("no such message")
        if message.sender_id != caller.id and not access.can_manage:
            raise Forbidden("only the sender, the room's owners and moderators, or an admin may delete it")
        if message.deleted_at is not None:
            return False
        message.deleted_at = utcnow()
        seq = take_next_seq(session, room_id)
        room = access.room
        if room.last_message_id == message.id:
            room.last_message_id = latest_visible_message_id(session, room_id)
        append_event(session, message_deleted_event(room_id, seq, message.id))
        enqueue(node, session, caller.tenant, "message.deleted", room_id, seq, message_id=message.id)
        return True

    if await node.database.write(work):
        node.notify_committed(room_id)


async def list_messages(node: Node, caller: UserSnapshot, room_id: int, *, limit: int = 50, before: int | None = None,
                        after: int | None = None) -> tuple[list[dict[str, Any]], bool]:
    """A page of the room's visible messages, oldest first, and whether there are more beyond it."""
    if before is not None and after is not None:
        raise BadRequest("give either before or after, not both", details={"fields": ["before", "after"]})
    if not 1 <= limit <= HISTORY_MAX_LIMIT:
        raise BadRequest(f"limit must be 1 to {HISTORY_MAX_LIMIT}", details={"field": "limit"})

    def work(session: Session) -> tuple[list[dict[str, Any]], bool]:
        room = open_room(session, caller, room_id).room
        seen = after if after is not None else before
        if seen is not None:  # the client has seen that message: a replica must have reached it
            require_replayed(session, lambda: room.last_seq >= seen)
        rows, has_more = history_page(session, room_id, limit=limit, before=before, after=after)
        attachments = attachments_of(session, [message.id for message, _ in rows])
        return [message_to_wire(m, sender, attachments.get(m.id, ())) for m, sender in rows], has_more

    return await node.database.replica_read(work)


async def mark_read(node: Node, reader: UserSnapshot, room_id: int, seq: int) -> int:
    """Move the reader's read pointer up to `seq` (clamped to the room's last seq, never backwards).

    Returns the pointer as it now stands. When it moved, the room's subscribers get a
    `read` event (live only: the pointer itself is what is stored).
    """
    if seq < 0:
        raise BadRequest("seq must not be negative", details={"field": "seq"})

    def work(session: Session) -> tuple[int, bool]:
        access = open_room(session, reader, room_id)
        access.require_member()
        return advance_read_pointer(session, room_id, reader.id, min(seq, access.room.last_seq))

    # A reader's reads on this node move the pointer and announce it one at a time: two reads
    # committed one after the other could otherwise announce out of order (2 after 4), leaving
    # subscribers with a pointer below the stored one.
    locks = _READS.setdefault(node.actors, {})
    key = (room_id, reader.id)
    lock = locks.setdefault(key, trio.Lock())
    try:
        async with lock:
            pointer, moved = await node.database.write(work)
            if moved:
                event = {"type": "read", "room": room_id, "user": sender_to_wire(reader), "seq": pointer}
                try:
                    await node.rooms.publish_transient(room_id, event)
                except StreamUnavailable as exc:  # the pointer is stored; only the live notice is lost
                    log_event(log, "read.announce_failed", logging.DEBUG, room=room_id, error=str(exc))
    finally:
        if not lock.locked() and locks.get(key) is lock:
            del locks[key]
    return pointer
