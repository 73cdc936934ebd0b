"""Where attachment bytes live: the interface, written and read a chunk at a time, never whole.

The database store (database.py) keeps them beside the metadata, so every node reads what any
node wrote. An object store can take its place behind the same interface.
"""

from __future__ import annotations

from collections.abc import AsyncGenerator, Collection
from typing import Protocol


class BlobWriter(Protocol):
    """The bytes of one attachment, appended in order as they arrive."""

    async def write(self, data: bytes) -> None:
        """Append `data`; whole chunks are stored as they fill (at most one chunk is held)."""

    async def close(self) -> None:
        """Store what is left. The blob is complete once this returns."""


class BlobStore(Protocol):
    """Attachment bytes by attachment id."""

    def writer(self, attachment_id: int) -> BlobWriter:
        """A writer for a new blob (its attachment's row exists; nothing is stored under it yet)."""
        ...

    def read(self, attachment_id: int) -> AsyncGenerator[bytes, None]:
        """The blob's bytes in order, a chunk at a time; each chunk is read only when asked for."""
        ...

    async def delete(self, attachment_ids: Collection[int]) -> None:
        """Forget these blobs (the database store's go with their attachment rows anyway)."""
