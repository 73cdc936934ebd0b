"""Attachment metadata: uploads under way and stored, linking them to messages, orphans.

The bytes are not here: they live in a BlobStore (storage.blobs), by attachment id.
An attachment is *stored* once `stored_at` is set (its bytes complete, its size and sha256
known); until then no message may carry it and nobody may download it.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Collection, Sequence
from datetime import datetime

from sqlalchemy import delete, insert, select, update
from sqlalchemy.orm import Session

from ..timestamps import utcnow
from .models import Attachment, Message


def unlinked_uploads(session: Session, room_id: int, uploader_id: int, ids: Collection[int]) -> list[Attachment]:
    """Those of `ids` that `uploader_id` uploaded to `room_id`, stored, and no message carries yet.

    Their rows stay locked until commit (PostgreSQL; SQLite's writer lock covers it), so the
    orphan sweep cannot remove one between this check and the message that links it.
    """
    if not ids:
        return []
    return list(session.scalars(
        select(Attachment).where(Attachment.id.in_(sorted(ids)), Attachment.room_id == room_id,
                                 Attachment.uploader_id == uploader_id, Attachment.message_id.is_(None),
                                 Attachment.stored_at.is_not(None))
        .order_by(Attachment.id).with_for_update()
    ))


def attachments_of(session: Session, message_ids: Sequence[int]) -> dict[int, list[Attachment]]:
    """Each message's attachments, for all `message_ids` in one query (the bytes are not loaded)."""
    found: dict[int, list[Attachment]] = defaultdict(list)
    if not message_ids:
        return found
    query = select(Attachment).where(Attachment.message_id.in_(sorted(set(message_ids)))).order_by(Attachment.id)
    for attachment in session.scalars(query):
        assert attachment.message_id is not None
        found[attachment.message_id].append(attachment)
    return found


def begin_upload(session: Session, *, tenant: str, room_id: int, uploader_id: int, filename: str,
                 content_type: str) -> int:
    """A new attachment row for an upload under way (not stored yet); its id."""
    result = session.execute(insert(Attachment).values(
        tenant=tenant, room_id=room_id, uploader_id=uploader_id, filename=filename, content_type=content_type,
        size=0, created_at=utcnow()).returning(Attachment.id))
    return int(result.scalar_one())


def finish_upload(session: Session, attachment_id: int, size: int, sha256: str) -> Attachment | None:
    """Mark the upload stored; None if its row is gone meanwhile (its room was deleted, say)."""
    result = session.execute(update(Attachment).where(Attachment.id == attachment_id, Attachment.stored_at.is_(None))
                             .values(size=size, sha256=sha256, stored_at=utcnow()))
    if result.rowcount != 1:  # type: ignore[attr-defined]
        return None
    return session.get(Attachment, attachment_id)


def drop_upload(session: Session, attachment_id: int) -> None:
    """Delete an upload and its bytes (ON DELETE CASCADE)."""
    session.execute(delete(Attachment).where(Attachment.id == attachment_id))


def stored_attachment(session: Session, tenant: str, attachment_id: int) -> Attachment | None:
    """The stored attachment with this id in `tenant`, or None (absent, elsewhere, still uploading,
    or carried by a message since deleted)."""
    return session.scalars(
        select(Attachment).outerjoin(Message, Message.id == Attachment.message_id)
        .where(Attachment.id == attachment_id, Attachment.tenant == tenant, Attachment.stored_at.is_not(None),
               Message.deleted_at.is_(None))
    ).first()


def delete_orphans(session: Session, created_before: datetime, limit: int) -> list[int]:
    """Delete up to `limit` attachments that no message carries and that were created before
    `created_before` (uploads under way included); their ids.

    Safe with several nodes sweeping at once: on PostgreSQL each takes rows the others have
    not locked (SKIP LOCKED), and a row a send has locked to link it is left alone.
    """
    ids = list(session.scalars(
        select(Attachment.id).where(Attachment.message_id.is_(None), Attachment.created_at < created_before)
        .order_by(Attachment.id).limit(limit).with_for_update(skip_locked=True)
    ))
    if ids:
        session.execute(delete(Attachment).where(Attachment.id.in_(ids), Attachment.message_id.is_(None)))
    return ids
