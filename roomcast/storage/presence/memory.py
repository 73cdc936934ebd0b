"""In-process presence: the embedded default when no Redis is configured.

One process's view, which with in-process streams is the whole truth: counts of
sessions per room and user, and per connected user. Nothing expires; a session's
entries go with it.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Iterable

import trio

from .base import Departure


class MemoryPresence:
    """Presence held in this process; a real component, not a test double."""

    refresh_interval_s = 60.0

    def __init__(self) -> None:
        self._rooms: defaultdict[int, Counter[int]] = defaultdict(Counter)
        self._users: Counter[int] = Counter()

    async def join(self, room_id: int, user_id: int, session_id: str) -> list[int]:
        self._rooms[room_id][user_id] += 1
        return await self.online_in(room_id)

    async def leave(self, room_id: int, user_id: int, session_id: str) -> list[int]:
        room = self._rooms.get(room_id)
        if room is not None:
            room[user_id] -= 1
            if room[user_id] <= 0:
                del room[user_id]
            if not room:
                del self._rooms[room_id]
        return await self.online_in(room_id)

    async def online_in(self, room_id: int) -> list[int]:
        return sorted(self._rooms.get(room_id, ()))

    async def connect(self, user_id: int, session_id: str) -> None:
        self._users[user_id] += 1

    async def disconnect(self, user_id: int, session_id: str) -> None:
        self._users[user_id] -= 1
        if self._users[user_id] <= 0:
            del self._users[user_id]

    async def online_users(self, user_ids: Iterable[int]) -> set[int]:
        return {user_id for user_id in user_ids if self._users.get(user_id)}

    async def refresh(self) -> list[Departure]:
        await trio.lowlevel.checkpoint()
        return []  # one process: its entries go with its sessions
