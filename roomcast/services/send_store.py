"""Storing sends in the committer's open transaction: a whole batch at once, or one draft at a time.

`store_drafts` is the hot path of every send (DESIGN.md §1): whatever the number of
drafts and rooms, a fixed few statements. One locks the batch's rooms (in id order)
and reads the senders' memberships and the client_ids already used (on SQLite, one
statement each); one inserts the messages, moves each room's last_seq on and writes the
outbox rows (on SQLite, three); one reads the webhooks and bots the messages may go to. Each
message's event is encoded before its id is drawn, around it (`wire.message_event_around_id`),
so that PostgreSQL joins the outbox payloads itself. Seqs are handed out in Python under the
room locks. Every refusal (no such room, not a member, a repeated client_id, the room
inactive, a bad reply_to or attachment) is decided before the first write and is an outcome
of its own.

`store_draft` stores one draft the same way it always did, statement by statement:
the committer's slow path, taken with a savepoint per draft after `store_drafts` failed
unexpectedly, so that the draft to blame fails alone.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass

from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from ..errors import ApiError, BadRequest, NotFound
from ..node import Node
from ..storage.attachments import attachments_of, unlinked_uploads
from ..storage.events import append_event
from ..storage.messages import (
    NewMessage,
    find_by_client_id,
    find_by_client_ids,
    get_room_message,
    insert_message,
)
from ..storage.models import Attachment, Message
from ..storage.rooms import (
    LockedRoom,
    insert_messages_with_events,
    lock_room_for_send,
    record_room_message,
)
from ..storage.send_reads import read_for_sends
from ..storage.streams import Append
from ..storage.users import UserSnapshot
from ..timestamps import to_wire, utcnow
from ..wire import (
    JsonObject,
    attachment_to_wire,
    message_event,
    message_event_around_id,
    message_to_wire,
    new_message_to_wire,
    sender_to_wire,
)
from .access import not_a_member
from .send_committer import Stored
from .webhook_events import enqueue, keep_targets


@dataclass(frozen=True, slots=True)
class Draft:
    """A message to send, its shape checked (`messaging.draft_message`) but not yet stored."""

    room_id: int
    body: str
    reply_to: int | None = None
    client_id: str | None = None
    attachments: tuple[int, ...] = ()


def message_view(session: Session, message: Message, sender: UserSnapshot) -> JsonObject:
    return message_to_wire(message, sender, attachments_of(session, [message.id]).get(message.id, ()))


def room_inactive() -> BadRequest:
    return BadRequest("the room is inactive", code="room_inactive")


def require_not_deleted(message: Message, what: str = "the message") -> None:
    if message.deleted_at is not None:
        raise BadRequest(f"{what} has been deleted", code="message_deleted")


def _check_reply_and_uploads(session: Session, room_id: int, sender: UserSnapshot, draft: Draft) -> list[Attachment]:
    """The checks that only some drafts need (a reply, attachments): the uploads to link."""
    if draft.reply_to is not None:
        replied_to = get_room_message(session, room_id, draft.reply_to)
        if replied_to is None:
            raise BadRequest("reply_to must be a message of this room", details={"field": "reply_to"})
        require_not_deleted(replied_to, "the message replied to")
    if not draft.attachments:
        return []
    uploads = unlinked_uploads(session, room_id, sender.id, list(draft.attachments))
    if len(uploads) != len(draft.attachments):
        raise _unusable_uploads(set(draft.attachments) - {upload.id for upload in uploads})
    return uploads


def _unusable_uploads(ids: set[int]) -> BadRequest:
    return BadRequest("attachments must be your own uploads to this room, not yet sent",
                      details={"field": "attachments", "ids": sorted(ids)})


def _claim_uploads(uploads: list[Attachment], claimed: set[int]) -> None:
    """Take the uploads for a draft of a batch, unless a draft planned before in it carries one:
    uploads are linked only once the batch is written, so each draft still finds them unlinked."""
    if taken := {upload.id for upload in uploads} & claimed:
        raise _unusable_uploads(taken)
    claimed.update(upload.id for upload in uploads)


@dataclass(slots=True)
class _Planned:
    """A draft that passed every check, with the seq it takes."""

    index: int
    sender: UserSnapshot
    draft: Draft
    seq: int
    uploads: list[Attachment]


def store_drafts(node: Node, session: Session,
                 entries: Sequence[tuple[UserSnapshot, Draft]]) -> list[Stored | ApiError]:
    """Store every draft of a batch in the open transaction, in the order given (per room: the seq order).

    Each outcome is what `store_draft` gives for that draft, or the ApiError it raises.
    Anything else raised means the batch as a whole failed, and the transaction with it.
    """
    # Every sending tenant: the rooms whose bots the batch may wake (read with the locks; drafts
    # then refused only make the read a little wider).
    bot_rooms: defaultdict[str, set[int]] = defaultdict(set)
    for sender, draft in entries:
        rooms_of_tenant = bot_rooms[sender.tenant]
        if sender.role != "bot":
            rooms_of_tenant.add(draft.room_id)
    locked, targets = read_for_sends(session, {(draft.room_id, sender.id) for sender, draft in entries},
                                     {(draft.room_id, sender.id, draft.client_id) for sender, draft in entries
                                      if draft.client_id is not None}, bot_rooms)
    for tenant, found in targets.items():
        keep_targets(session, node.settings, tenant, found)
    rooms, members = locked.rooms, locked.members
    # The originals of repeated client_ids (a client's retry: rare) are read whole only when there are some.
    originals = find_by_client_ids(session, {key for key in locked.used_client_ids if key[:2] in members})
    outcomes: list[Stored | ApiError | None] = [None] * len(entries)
    last_seqs = {room_id: room.last_seq for room_id, room in rooms.items()}
    planned: list[_Planned] = []
    repeats: list[tuple[int, int]] = []  # (draft index, index of the planned draft with its client_id)
    new_keys: dict[tuple[int, int, str], int] = {}  # client_id keys taken in this batch -> planned index
    claimed: set[int] = set()  # uploads carried by the drafts planned so far
    for index, (sender, draft) in enumerate(entries):
        room_id = draft.room_id
        room = rooms.get(room_id)
        if room is None or room.tenant != sender.tenant:
            outcomes[index] = NotFound("no such room")
            continue
        if (room_id, sender.id) not in members:
            outcomes[index] = not_a_member()
            continue
        key = None if draft.client_id is None else (room_id, sender.id, draft.client_id)
        if key is not None:
            original = originals.get(key)
            if original is not None:
                outcomes[index] = (message_view(session, original, sender), None)
                continue
            if key in new_keys:  # sent twice in this batch: the second gets the first back
                repeats.append((index, new_keys[key]))
                continue
        if not room.is_active:
            outcomes[index] = room_inactive()
            continue
        uploads: list[Attachment] = []
        if draft.reply_to is not None or draft.attachments:  # most drafts are neither: nothing to read
            try:
                uploads = _check_reply_and_uploads(session, room_id, sender, draft)
                _claim_uploads(uploads, claimed)
            except ApiError as exc:
                outcomes[index] = exc
                continue
        last_seqs[room_id] = seq = last_seqs[room_id] + 1
        if key is not None:
            new_keys[key] = len(planned)
        planned.append(_Planned(index, sender, draft, seq, uploads))
    if planned:
        views = _write(node, session, planned, rooms)
        for plan, (view, row) in zip(planned, views, strict=True):
            outcomes[plan.index] = (view, row)
        for index, first in repeats:
            outcomes[index] = (views[first][0], None)
    assert all(outcome is not None for outcome in outcomes)
    return [outcome for outcome in outcomes if outcome is not None]


def _write(node: Node, session: Session, planned: list[_Planned],
           rooms: dict[int, LockedRoom]) -> list[tuple[JsonObject, Append]]:
    """The writes of a checked batch: its messages, rooms, webhook deliveries and outbox rows."""
    now = utcnow()
    created_at = to_wire(now)
    last_seqs = {plan.draft.room_id: plan.seq for plan in planned}  # each room's new last seq (planned in order)
    senders: dict[int, JsonObject] = {}  # each sender as the wire shows it, made once per batch
    for plan in planned:
        if plan.sender.id not in senders:
            senders[plan.sender.id] = sender_to_wire(plan.sender)
    # Each message's event is encoded once, before its id is drawn: around the id (see wire).
    views = [new_message_to_wire(0, plan.draft.room_id, plan.seq, senders[plan.sender.id], plan.draft.body,
                                 plan.draft.reply_to,
                                 [attachment_to_wire(upload) for upload in plan.uploads] if plan.uploads else [],
                                 plan.draft.client_id, created_at) for plan in planned]
    events = [message_event_around_id(plan.draft.room_id, plan.seq, view)
              for plan, view in zip(planned, views, strict=True)]
    ids, rows = insert_messages_with_events(session, [
        {"room_id": plan.draft.room_id, "seq": plan.seq, "sender_id": plan.sender.id, "body": plan.draft.body,
         "reply_to_id": plan.draft.reply_to, "client_id": plan.draft.client_id, "created_at": now}
        for plan in planned], [(room_id, rooms[room_id].last_seq, seq) for room_id, seq in last_seqs.items()],
        events, now)
    for plan, view, message_id in zip(planned, views, ids, strict=True):
        view["id"] = message_id
        for upload in plan.uploads:
            upload.message_id = message_id
    for plan, view in zip(planned, views, strict=True):  # their targets were read with the locks (store_drafts)
        enqueue(node, session, plan.sender.tenant, "message.created", plan.draft.room_id, plan.seq, message=view,
                to_bots=plan.sender.role != "bot")  # a bot's messages never trigger bots
    return list(zip(views, rows, strict=True))


def store_draft(node: Node, session: Session, sender: UserSnapshot, draft: Draft) -> Stored:
    """Store one draft in the open transaction: (the message, its outbox row as the relay takes it),
    or (the original, None) for a client_id the sender already used in the room.

    Every check comes before the first write, so a refusal (ApiError) leaves the
    transaction as it found it.
    """
    target = lock_room_for_send(session, sender.tenant, draft.room_id, sender.id)
    if target is None:
        raise NotFound("no such room")
    if not target.is_member:
        raise not_a_member()
    room_id = target.room_id
    client_id = draft.client_id
    if client_id is not None and (original := find_by_client_id(session, room_id, sender.id, client_id)):
        return message_view(session, original, sender), None
    if not target.is_active:
        raise room_inactive()
    uploads = _check_reply_and_uploads(session, room_id, sender, draft)

    def store() -> tuple[JsonObject, Append]:
        # The room's row lock (SQLite: the writer lock) is held, so last_seq + 1 is ours.
        now = utcnow()
        seq = target.last_seq + 1
        message_id = insert_message(session, room_id=room_id, seq=seq, sender_id=sender.id, body=draft.body,
                                    reply_to_id=draft.reply_to, client_id=client_id, created_at=now)
        record_room_message(session, room_id, seq, message_id, now)
        for upload in uploads:
            upload.message_id = message_id
        message = NewMessage(message_id, room_id, seq, sender.id, draft.body, draft.reply_to, client_id, now)
        view = message_to_wire(message, sender, uploads)
        enqueue(node, session, sender.tenant, "message.created", room_id, seq, message=view,
                to_bots=sender.role != "bot")  # a bot's messages never trigger bots
        return view, append_event(session, message_event(room_id, seq, view))

    if client_id is None:
        return store()
    # The room lock already orders sends, so two with one client_id cannot both get
    # here; the unique constraint has the final word all the same, and the savepoint
    # undoes the seq this attempt took.
    try:
        with session.begin_nested():
            return store()
    except IntegrityError:
        original = find_by_client_id(session, room_id, sender.id, client_id)
        if original is None:
            raise
        return message_view(session, original, sender), None
