"""A short-lived per-node cache of users, so that a valid token costs no database read.

Each entry holds a user's snapshot and what admits its tokens (`UserAccess`), for at most
`user_cache_ttl_s`, at most `user_cache_size` of them (least recently used go first).
Whatever changes a user is told to `invalidate` at once: the admin tools do it on their node,
and every node does it on the `access_changed` notice they publish (`notice_seen`), so a
disable or a revocation is refused everywhere as soon as the notices stream carries it.
With the notices stream down, the TTL bounds how long another node may still admit a token
(and a notices gap, `notices_missed`, empties the cache). A ttl of 0 turns the cache off.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Awaitable, Callable, Mapping

import trio

from ..storage.users import UserAccess

# The control notice that names a changed user (published by services.admin_users).
ACCESS_CHANGED = "access_changed"


class UserCache:
    """Users by id, each for at most `ttl_s` seconds (trio's clock), at most `size` of them."""

    def __init__(self, ttl_s: float, size: int) -> None:
        self.ttl_s = ttl_s
        self.size = size
        self._entries: OrderedDict[int, tuple[UserAccess, float]] = OrderedDict()  # id -> (access, expires at)
        # A read that an invalidation overtook must not store what it read. Per user (counted
        # only while a read of theirs is in flight), so one user's change spoils no one else's
        # read; `clear` bumps the epoch, which spoils every read in flight.
        self._loading: dict[int, int] = {}  # user id -> reads in flight
        self._invalidated: dict[int, int] = {}  # user id -> invalidations since its reads began
        self._epoch = 0
        self.hits = 0
        self.misses = 0

    def __len__(self) -> int:
        return len(self._entries)

    async def get(self, user_id: int, load: Callable[[int], Awaitable[UserAccess | None]]) -> UserAccess | None:
        """The user's cached access, or `load(user_id)` (kept for next time); None for no such user."""
        if self.ttl_s > 0:
            found = self._entries.get(user_id)
            if found is not None:
                access, expires_at = found
                if trio.current_time() < expires_at:
                    self.hits += 1
                    self._entries.move_to_end(user_id)
                    return access
                del self._entries[user_id]
        self.misses += 1
        epoch, invalidated = self._epoch, self._invalidated.get(user_id, 0)
        self._loading[user_id] = self._loading.get(user_id, 0) + 1
        try:
            loaded = await load(user_id)
        finally:
            fresh = epoch == self._epoch and invalidated == self._invalidated.get(user_id, 0)
            if self._loading[user_id] == 1:
                del self._loading[user_id]
                self._invalidated.pop(user_id, None)
            else:
                self._loading[user_id] -= 1
        if loaded is not None and self.ttl_s > 0 and fresh:
            self._entries[user_id] = (loaded, trio.current_time() + self.ttl_s)
            self._entries.move_to_end(user_id)
            while len(self._entries) > self.size:
                self._entries.popitem(last=False)
        return loaded

    def peek(self, user_id: int) -> UserAccess | None:
        """The user's cached access if it is fresh, else None; never loads (a read that can wait does)."""
        found = self._entries.get(user_id)
        if found is None or trio.current_time() >= found[1]:
            return None
        return found[0]

    def invalidate(self, user_id: int) -> None:
        """Forget the user: its next request reads the database (and a read in flight keeps nothing)."""
        if user_id in self._loading:
            self._invalidated[user_id] = self._invalidated.get(user_id, 0) + 1
        self._entries.pop(user_id, None)

    def clear(self) -> None:
        self._epoch += 1
        self._entries.clear()

    # ------------------------------------------------------------------ the notices hub's side

    def notice_seen(self, event: Mapping[str, object]) -> None:
        """A notice read from the stream (every node reads every one): forget the user it says changed."""
        user_id = event.get("user")
        if event.get("type") == ACCESS_CHANGED and type(user_id) is int:
            self.invalidate(user_id)

    def notices_missed(self) -> None:
        """The notices reader may have missed some: any entry may be stale."""
        self.clear()
