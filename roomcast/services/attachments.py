"""Attachments (PROTOCOL §4): upload to a room, download, and the sweep of uploads never sent.

An upload streams: its bytes are sniffed (filetypes.py), counted against
`attachment_max_bytes`, hashed and handed to the node's BlobStore a chunk at a time, so
at no point is the whole file in memory. Its row exists from the moment its type is
known, and counts as stored only once the last byte is (`stored_at`); an upload that
fails on the way is deleted with what it had stored.
"""

from __future__ import annotations

import hashlib
import logging
import re
import unicodedata
from collections.abc import AsyncGenerator, AsyncIterable
from dataclasses import dataclass
from datetime import timedelta

import trio
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from ..actors.actor import Actor, ActorContext
from ..actors.backoff import Backoff, until_available
from ..errors import BadRequest, NotFound, TooLarge
from ..logs import log_event
from ..node import Node
from ..storage.attachments import begin_upload, delete_orphans, drop_upload, finish_upload, stored_attachment
from ..storage.blobs import BlobWriter
from ..storage.models import Attachment
from ..storage.rooms import load_room
from ..storage.users import UserSnapshot
from ..timestamps import utcnow
from ..wire import JsonObject, attachment_to_wire
from .access import not_a_member
from .filetypes import HEAD_BYTES, TypeSniffer

log = logging.getLogger("roomcast.attachments")

MAX_FILENAME_CHARS = 255
DEFAULT_FILENAME = "file"
SWEEP_BATCH = 50
DISCARD_TIMEOUT_S = 10.0
# The sweep runs this often at most (and at least twice per ttl).
SWEEP_INTERVAL_MAX_S = 600.0
# Characters never kept in a file name: path separators and quotes (header and shell trouble).
_DROPPED = frozenset('/\\"')
# Leading dots and spaces, however interleaved: no name is ".", ".." or hidden.
_LEADING_DOTS_AND_SPACES = re.compile(r"^[\s.]+")


def safe_filename(raw: str) -> str:
    """The name a client gave, as stored and shown: its last path part, without control or
    format characters (CR, LF, NUL, bidi overrides), quotes or backslashes, at most 255 characters."""
    name = raw.replace("\\", "/").rsplit("/", 1)[-1]
    name = "".join(c for c in name if c not in _DROPPED and unicodedata.category(c) not in ("Cc", "Cf", "Cs"))
    name = _LEADING_DOTS_AND_SPACES.sub("", name)
    return name[:MAX_FILENAME_CHARS].rstrip() or DEFAULT_FILENAME


def _room_for_upload(session: Session, uploader: UserSnapshot, room_id: int) -> None:
    room, membership = load_room(session, uploader.tenant, room_id, uploader.id)
    if room is None:
        raise NotFound("no such room")
    if membership is None:
        raise not_a_member()
    if not room.is_active:
        raise BadRequest("the room is inactive", code="room_inactive")


async def check_upload(node: Node, uploader: UserSnapshot, room_id: int) -> None:
    """Refuse (404, 403 `not_a_member`, 400 `room_inactive`) before a byte of the upload is read."""
    await node.database.read(_room_for_upload, uploader, room_id)
    ensure_orphan_sweeper(node)


@dataclass
class _Upload:
    """One upload under way: what it has seen, and where its bytes go once its type is known."""

    node: Node
    uploader: UserSnapshot
    room_id: int
    filename: str
    sniffer: TypeSniffer
    max_bytes: int
    size: int = 0
    attachment_id: int | None = None
    writer: BlobWriter | None = None

    def __post_init__(self) -> None:
        self.sha256 = hashlib.sha256()

    async def begin(self, head: bytes) -> None:
        content_type = self.sniffer.decide(head)

        def create(session: Session) -> int:
            _room_for_upload(session, self.uploader, self.room_id)  # it may have gone while the head came in
            return begin_upload(session, tenant=self.uploader.tenant, room_id=self.room_id,
                                uploader_id=self.uploader.id, filename=self.filename, content_type=content_type)

        self.attachment_id = await self.node.database.write(create)
        self.writer = self.node.blobs.writer(self.attachment_id)
        await self.feed(head)

    async def feed(self, data: bytes) -> None:
        assert self.writer is not None
        self.sniffer.feed(data)
        self.sha256.update(data)
        await self.writer.write(data)

    def count(self, data: bytes) -> None:
        self.size += len(data)
        if self.size > self.max_bytes:
            raise TooLarge(f"the file is larger than {self.max_bytes} bytes", details={"max_bytes": self.max_bytes})


async def store_upload(node: Node, uploader: UserSnapshot, room_id: int, filename: str,
                       data: AsyncIterable[bytes]) -> JsonObject:
    """Store the file whose bytes `data` yields as an attachment of the room; its wire object.

    415 `unsupported_type` as soon as the bytes show a type not allowed, 413 `too_large` as soon
    as there are more than `attachment_max_bytes` of them (the rest is never read); any error
    raised by `data` itself (a malformed body) leaves nothing stored either.
    """
    settings = node.settings
    upload = _Upload(node, uploader, room_id, safe_filename(filename), TypeSniffer(settings.attachment_types),
                     settings.attachment_max_bytes)
    try:
        head = bytearray()
        async for piece in data:
            upload.count(piece)
            if upload.writer is not None:
                await upload.feed(piece)
                continue
            head += piece
            if len(head) >= HEAD_BYTES:
                await upload.begin(bytes(head))
                head.clear()
        if upload.writer is None:
            await upload.begin(bytes(head))
        assert upload.writer is not None and upload.attachment_id is not None
        upload.sniffer.finish()
        await upload.writer.close()
        attachment_id = upload.attachment_id
        stored = await node.database.write(finish_upload, attachment_id, upload.size, upload.sha256.hexdigest())
    except IntegrityError:  # a chunk whose attachment was deleted meanwhile (its room, say)
        await _discard(node, upload)
        raise NotFound("no such room") from None
    except BaseException:
        # Shielded so that a cancelled upload (the client went away) still cleans up; bounded so
        # that an unreachable database cannot hold it: the sweep removes what is left.
        with trio.CancelScope(shield=True, deadline=trio.current_time() + DISCARD_TIMEOUT_S):
            await _discard(node, upload)
        raise
    if stored is None:
        raise NotFound("no such room")
    log_event(log, "attachment.stored", logging.DEBUG, attachment=attachment_id, room=room_id, size=upload.size,
              content_type=stored.content_type)
    return attachment_to_wire(stored)


async def _discard(node: Node, upload: _Upload) -> None:
    """Delete a failed upload's row and bytes (best effort: the orphan sweep catches what this misses)."""
    if upload.attachment_id is None:
        return
    try:
        await node.database.write(drop_upload, upload.attachment_id)
        await node.blobs.delete([upload.attachment_id])
    except Exception as exc:  # the database is down, say: the sweep removes it later
        log_event(log, "attachment.discard_failed", logging.WARNING, attachment=upload.attachment_id,
                  error=repr(exc))


@dataclass(frozen=True)
class Download:
    """A stored attachment a member may read: its metadata and its bytes, a chunk at a time."""

    id: int
    filename: str
    content_type: str
    size: int
    sha256: str
    chunks: AsyncGenerator[bytes, None]


async def open_download(node: Node, reader: UserSnapshot, attachment_id: int) -> Download:
    """The attachment for a member of its room: 404 if absent or another tenant's, 403 `not_a_member`."""

    def work(session: Session) -> Attachment:
        attachment = stored_attachment(session, reader.tenant, attachment_id)
        if attachment is None:
            raise NotFound("no such attachment")
        _, membership = load_room(session, reader.tenant, attachment.room_id, reader.id)
        if membership is None:
            raise not_a_member()
        return attachment

    found = await node.database.read(work)
    return Download(found.id, found.filename, found.content_type, found.size, found.sha256 or "",
                    node.blobs.read(found.id))


# --------------------------------------------------------------------------- the orphan sweep


async def sweep_orphans(node: Node) -> int:
    """Remove every upload no message carries that began more than `attachment_orphan_ttl_s` ago; how many."""
    cutoff = utcnow() - timedelta(seconds=node.settings.attachment_orphan_ttl_s)
    removed = 0
    while True:
        ids = await node.database.write(delete_orphans, cutoff, SWEEP_BATCH)
        await node.blobs.delete(ids)
        removed += len(ids)
        if len(ids) < SWEEP_BATCH:
            return removed


class OrphanSweeper:
    """The `attachment_sweeper` actor: sweeps at start and then every interval, on every node.

    Nodes sharing the database sweep it each (the deletes are conditional and skip rows
    another node holds). While the database is down it waits, with backoff, and carries on.
    """

    def __init__(self, node: Node) -> None:
        self.node = node
        settings = node.settings
        self.interval_s = min(SWEEP_INTERVAL_MAX_S, settings.attachment_orphan_ttl_s / 2)
        self.retry = Backoff(settings.stream_retry_base_s, settings.stream_retry_max_s)
        self.removed = 0
        self.sweeps = 0

    async def run(self, ctx: ActorContext) -> None:
        while True:
            removed = await until_available(lambda: sweep_orphans(self.node), self.retry, log,
                                            "attachments.sweep_waiting")
            self.removed += removed
            self.sweeps += 1
            if removed:
                log_event(log, "attachments.orphans_removed", removed=removed)
            await trio.sleep(self.interval_s)

    def describe(self) -> JsonObject:
        return {"sweeps": self.sweeps, "removed": self.removed, "interval_s": self.interval_s}


def ensure_orphan_sweeper(node: Node) -> None:
    """Start the node's `attachment_sweeper` actor if it is not running yet (the first upload)."""
    node.actors.ensure("attachment_sweeper", lambda: _sweeper_actor(node))


def _sweeper_actor(node: Node) -> Actor:
    sweeper = OrphanSweeper(node)
    return Actor("attachment_sweeper", sweeper.run, describe_extra=sweeper.describe)

