"""Attachment bytes: the store interface and its database implementation."""

from __future__ import annotations

from .base import BlobStore, BlobWriter
from .database import CHUNK_BYTES, DatabaseBlobs

__all__ = ["CHUNK_BYTES", "BlobStore", "BlobWriter", "DatabaseBlobs"]
