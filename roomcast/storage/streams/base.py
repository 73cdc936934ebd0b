"""The one small interface every room-stream backend implements (DESIGN.md §2, §7).

A room stream is an append-only log per room: each entry has an id assigned by
the backend (opaque, increasing within a room), an optional `seq` (stored events
have one, transient ones such as typing do not) and `data`, the event exactly as
delivered to clients, already encoded as JSON bytes. Streams are capped; the
database keeps the full history.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Protocol

from ...errors import DependencyUnavailable

# Before every entry: reading from here returns the whole retained stream.
STREAM_START = "0-0"

# Stream 0 is not a room (room ids start at 1): it is the named stream of notices to users,
# which every node reads once (see actors/notices.py). Redis keeps it as `<prefix>notices`.
NOTICES_STREAM = 0


@dataclass(frozen=True, slots=True)
class StreamEntry:
    """One entry of a room stream."""

    id: str
    seq: int | None
    data: bytes
    origin: str | None = None  # transient events: the session they came from (it does not get them back)


@dataclass(frozen=True, slots=True)
class Append:
    """An entry to append: to `room_id`'s stream, stored (`seq`) or transient (`seq` None)."""

    room_id: int
    data: bytes
    seq: int | None = None
    origin: str | None = None


class ReadCursor:
    """What one reader carries from a `read` to its next, for a backend that can use it.

    The caller passes the same cursor to every read it makes and adds to `moved` each room
    whose position it sets, adds or removes. The in-process backend then looks only at the rooms
    appended to since the previous read returned, those moved, and those that read returned
    entries of; one Redis re-encodes only the moved rooms' keys and positions for its XREAD.
    Without a cursor, or with one from a read that did not return or from another backend, a
    read goes over every room named.
    """

    __slots__ = ("moved", "state")

    def __init__(self) -> None:
        self.moved: set[int] = set()
        self.state: object = None  # the backend's own, from the last read that returned


class StreamUnavailable(DependencyUnavailable):
    """The backend cannot be reached; the caller retries later (nothing was lost)."""

    dependency = "streams"


class StreamBackend(Protocol):
    """Per-room append-only logs with ids, bounded length and a multiplexed blocking read."""

    name: str

    async def append(self, items: Sequence[Append]) -> list[str]:
        """Append `items` in order (per room, entries keep this order); return their ids."""
        ...

    async def last_ids(self, room_ids: Sequence[int]) -> dict[int, str]:
        """The id of each room's newest entry (STREAM_START for an empty stream).

        Reading from that id returns only what is appended afterwards.
        """
        ...

    async def read(self, positions: Mapping[int, str], *, count: int, timeout: float,
                   cursor: ReadCursor | None = None) -> dict[int, list[StreamEntry]]:
        """Entries after each room's position, at most `count` per room, oldest first.

        Blocks until at least one room has entries, `timeout` seconds pass, or
        `interrupt()` is called; the last two return an empty dict. A position
        older than what the stream retains reads from its oldest entry. A backend
        may use `cursor` to look at fewer rooms; the outcome is the same.
        """
        ...

    def interrupt(self) -> None:
        """Make a blocked (or the next) `read` return early; never blocks."""
        ...

    async def ping(self) -> None:
        """Raise StreamUnavailable when the backend cannot be reached."""
        ...
