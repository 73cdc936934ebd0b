"""Attachment metadata queries: linking uploads to the message that carries them."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Collection, Sequence

from sqlalchemy import select
from sqlalchemy.orm import Session

from .models import Attachment


def unlinked_uploads(session: Session, room_id: int, uploader_id: int, ids: Collection[int]) -> list[Attachment]:
    """Those of `ids` that `uploader_id` uploaded to `room_id` and no message carries yet."""
    if not ids:
        return []
    return list(session.scalars(
        select(Attachment).where(Attachment.id.in_(sorted(ids)), Attachment.room_id == room_id,
                                 Attachment.uploader_id == uploader_id, Attachment.message_id.is_(None))
        .order_by(Attachment.id)
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
