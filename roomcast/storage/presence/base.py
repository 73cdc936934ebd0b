"""The one small interface every presence backend implements, and what it reports.

Presence answers "who is online now": per room (the sessions subscribed to it) and
per user (the sessions connected), across every node. Presence *events*
(`joined`/`left`) travel through the stream backend like any transient room event;
a backend only keeps the entries, and through `refresh()` says whose entries
expired because their node stopped refreshing them (it died).
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Sequence
from dataclasses import dataclass
from typing import Protocol


@dataclass(frozen=True, slots=True)
class Departure:
    """A user whose last entry in a room expired: its node stopped refreshing it (it died)."""

    room_id: int
    user_id: int
    online: list[int]  # the room's online user ids after it


class Presence(Protocol):
    """Sessions per room and per user; a user counts while any of their sessions does."""

    refresh_interval_s: float

    async def join(self, room_id: int, user_id: int, session_id: str) -> list[int]:
        """Mark the session subscribed to the room; the room's online user ids after it."""
        ...

    async def join_many(self, joins: Sequence[tuple[int, int, str]],
                        read: Collection[int] = ()) -> dict[int, list[int]]:
        """`join` for each (room, user, session), all at once (one round trip to Redis); the online
        user ids of each room joined, and of each room in `read`, after them all.

        All or nothing as far as this node knows: if it raises, no entry is kept alive (one that
        reached Redis before the failure expires within the ttl).
        """
        ...

    async def leave(self, room_id: int, user_id: int, session_id: str) -> list[int]:
        """Undo join (harmless for a session that never joined); the room's online user ids after it."""
        ...

    async def online_in(self, room_id: int) -> list[int]:
        """The room's online user ids, sorted, each once."""
        ...

    async def connect(self, user_id: int, session_id: str) -> None:
        """Mark the session connected."""
        ...

    async def disconnect(self, user_id: int, session_id: str) -> None:
        """Undo connect (harmless for a session that never connected)."""
        ...

    async def online_users(self, user_ids: Iterable[int]) -> set[int]:
        """Which of these users have a connected session anywhere."""
        ...

    def forget(self, user_id: int, session_id: str, room_ids: Iterable[int]) -> None:
        """Give up the session's entries (these rooms and its connection) without waiting for anyone.

        For a session whose orderly `leave`s and `disconnect` could not finish (the backend
        was slow or down): nothing of it is kept alive any more, so what another node can
        still see of it expires within the ttl. Harmless for entries already removed.
        """
        ...

    async def refresh(self) -> list[Departure]:
        """Keep this node's entries alive; take expired ones of other nodes and say who left through them.

        Called every `refresh_interval_s` by the node's presence keeper.
        """
        ...
