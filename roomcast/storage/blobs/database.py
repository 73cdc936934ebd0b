"""Attachment bytes in the database: rows of `attachment_chunks`, (attachment_id, n), 256 KiB each.

SQLite and PostgreSQL alike. Every chunk is its own short transaction through the Database
gateway (a worker thread), so an upload never holds a transaction (SQLite: the write lock)
while it waits for the network, and a download reads one chunk per step as the client takes
them. The rows go with their attachment (ON DELETE CASCADE), a room's deletion included.
"""

from __future__ import annotations

from collections.abc import AsyncGenerator, Collection

from sqlalchemy import insert, select
from sqlalchemy.orm import Session

from ..database import Database
from ..models import AttachmentChunk

CHUNK_BYTES = 256 << 10


def _insert_chunk(session: Session, attachment_id: int, n: int, data: bytes) -> None:
    session.execute(insert(AttachmentChunk).values(attachment_id=attachment_id, n=n, data=data))


def _chunk(session: Session, attachment_id: int, n: int) -> bytes | None:
    query = select(AttachmentChunk.data).where(AttachmentChunk.attachment_id == attachment_id,
                                               AttachmentChunk.n == n)
    data = session.execute(query).scalar_one_or_none()
    return None if data is None else bytes(data)


class DatabaseBlobWriter:
    """Fills one chunk at a time and stores it as soon as it is full."""

    def __init__(self, database: Database, attachment_id: int, chunk_bytes: int) -> None:
        self.database = database
        self.attachment_id = attachment_id
        self.chunk_bytes = chunk_bytes
        self.pending = bytearray()
        self.stored = 0  # chunks stored so far

    async def write(self, data: bytes) -> None:
        self.pending += data
        while len(self.pending) >= self.chunk_bytes:
            chunk = bytes(self.pending[:self.chunk_bytes])
            del self.pending[:self.chunk_bytes]
            await self._store(chunk)

    async def close(self) -> None:
        if self.pending:
            chunk = bytes(self.pending)
            self.pending.clear()
            await self._store(chunk)

    async def _store(self, chunk: bytes) -> None:
        await self.database.write(_insert_chunk, self.attachment_id, self.stored, chunk)
        self.stored += 1


class DatabaseBlobs:
    """The BlobStore of the database."""

    def __init__(self, database: Database, chunk_bytes: int = CHUNK_BYTES) -> None:
        self.database = database
        self.chunk_bytes = chunk_bytes

    def writer(self, attachment_id: int) -> DatabaseBlobWriter:
        return DatabaseBlobWriter(self.database, attachment_id, self.chunk_bytes)

    async def read(self, attachment_id: int) -> AsyncGenerator[bytes, None]:
        n = 0
        while (chunk := await self.database.read(_chunk, attachment_id, n)) is not None:
            yield chunk
            n += 1

    async def delete(self, attachment_ids: Collection[int]) -> None:
        """Nothing to do: the chunks went with their attachment rows (ON DELETE CASCADE)."""
