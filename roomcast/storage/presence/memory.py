"""In-process presence: the embedded default when no Redis is configured.

One process's view, which with in-process streams is the whole truth: the session
ids per room and user, and per connected user. Like the Redis entries, a session
counts once however often it joins, and leaving for a session that never joined
changes nothing. Nothing expires; a session's entries go with it.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Sequence

import trio

from ... import members
from .base import Departure


class MemoryPresence:
    """Presence held in this process; a real component, not a test double.

    Only `refresh` checkpoints: the other calls complete without yielding,
    so a cancelled session never leaves one half done.
    """

    refresh_interval_s = 60.0

    def __init__(self) -> None:
        # room -> user -> session ids, and user -> session ids (members.py: one bare, more in a set);
        # users without a session and rooms without a user are removed.
        self._rooms: dict[int, dict[int, str | set[str]]] = {}
        self._users: dict[int, str | set[str]] = {}

    async def join(self, room_id: int, user_id: int, session_id: str) -> list[int]:
        members.add(self._rooms.setdefault(room_id, {}), user_id, session_id)
        return await self.online_in(room_id)

    async def join_many(self, joins: Sequence[tuple[int, int, str]],
                        read: Collection[int] = ()) -> dict[int, list[int]]:
        for room_id, user_id, session_id in joins:
            members.add(self._rooms.setdefault(room_id, {}), user_id, session_id)
        return {room_id: await self.online_in(room_id) for room_id in {room_id for room_id, _, _ in joins} | set(read)}

    async def leave(self, room_id: int, user_id: int, session_id: str) -> list[int]:
        self._leave(room_id, user_id, session_id)
        return await self.online_in(room_id)

    def _leave(self, room_id: int, user_id: int, session_id: str) -> None:
        room = self._rooms.get(room_id)
        if room is not None and members.discard(room, user_id, session_id) and not room:
            del self._rooms[room_id]

    async def online_in(self, room_id: int) -> list[int]:
        return sorted(self._rooms.get(room_id, ()))

    async def connect(self, user_id: int, session_id: str) -> None:
        members.add(self._users, user_id, session_id)

    async def disconnect(self, user_id: int, session_id: str) -> None:
        members.discard(self._users, user_id, session_id)

    def forget(self, user_id: int, session_id: str, room_ids: Iterable[int]) -> None:
        for room_id in room_ids:
            self._leave(room_id, user_id, session_id)
        members.discard(self._users, user_id, session_id)

    async def online_users(self, user_ids: Iterable[int]) -> set[int]:
        return {user_id for user_id in user_ids if user_id in self._users}

    async def refresh(self) -> list[Departure]:
        await trio.lowlevel.checkpoint()
        return []  # one process: its entries go with its sessions

