"""The per-node user cache on its own: TTL on trio's clock, its bound, and what makes it forget."""

from __future__ import annotations

import trio
import trio.testing

from roomcast.identity.user_cache import ACCESS_CHANGED, UserCache
from roomcast.storage.users import UserAccess, UserSnapshot


def access(user_id: int, *, active: bool = True) -> UserAccess:
    return UserAccess(UserSnapshot(user_id, "default", f"u{user_id}", f"U {user_id}", "member"), active, None)


class Loader:
    """Stands in for the database read, counting its calls."""

    def __init__(self) -> None:
        self.calls: list[int] = []
        self.active = True

    async def __call__(self, user_id: int) -> UserAccess | None:
        self.calls.append(user_id)
        await trio.sleep(0)
        return access(user_id, active=self.active) if user_id < 1000 else None


def run(test: object) -> None:
    trio.run(test, clock=trio.testing.MockClock(autojump_threshold=0))  # type: ignore[arg-type]


def test_an_entry_is_served_until_its_ttl_then_read_again() -> None:
    async def main() -> None:
        cache, load = UserCache(ttl_s=30, size=10), Loader()
        first = await cache.get(1, load)
        await trio.sleep(29.9)
        assert await cache.get(1, load) is first and load.calls == [1]
        await trio.sleep(0.2)
        load.active = False
        again = await cache.get(1, load)
        assert again is not None and again.is_active is False and load.calls == [1, 1]
        assert (cache.hits, cache.misses) == (1, 2)

    run(main)


def test_unknown_users_are_not_kept() -> None:
    async def main() -> None:
        cache, load = UserCache(ttl_s=30, size=10), Loader()
        assert await cache.get(5000, load) is None
        assert await cache.get(5000, load) is None
        assert load.calls == [5000, 5000] and len(cache) == 0

    run(main)


def test_the_least_recently_used_go_first_past_the_bound() -> None:
    async def main() -> None:
        cache, load = UserCache(ttl_s=30, size=2), Loader()
        for user_id in (1, 2, 1, 3):  # 1 was used after 2: 2 goes
            await cache.get(user_id, load)
        assert len(cache) == 2
        load.calls.clear()
        await cache.get(1, load)
        await cache.get(3, load)
        assert load.calls == []
        await cache.get(2, load)
        assert load.calls == [2]

    run(main)


def test_an_access_changed_notice_forgets_its_user_and_others_are_kept() -> None:
    async def main() -> None:
        cache, load = UserCache(ttl_s=30, size=10), Loader()
        await cache.get(1, load)
        await cache.get(2, load)
        cache.notice_seen({"type": "room_added", "user": 1})  # not about access: kept
        cache.notice_seen({"type": ACCESS_CHANGED, "user": "1"})  # unreadable: ignored
        cache.notice_seen({"type": ACCESS_CHANGED, "user": 1})
        load.calls.clear()
        await cache.get(1, load)
        await cache.get(2, load)
        assert load.calls == [1]
        cache.notices_missed()  # a gap in the notices: anything may be stale
        await cache.get(2, load)
        assert load.calls == [1, 2]

    run(main)


def test_a_read_that_started_before_an_invalidation_is_not_kept() -> None:
    async def main() -> None:
        cache = UserCache(ttl_s=30, size=10)
        started, release = trio.Event(), trio.Event()

        async def slow(user_id: int) -> UserAccess | None:
            started.set()
            await release.wait()
            return access(user_id)  # read before the change: stale

        async with trio.open_nursery() as nursery:
            nursery.start_soon(cache.get, 1, slow)
            await started.wait()
            cache.invalidate(1)
            release.set()
        assert len(cache) == 0

    run(main)


def test_an_invalidation_spoils_only_the_reads_of_its_user_or_all_after_a_clear() -> None:
    async def main() -> None:
        cache = UserCache(ttl_s=30, size=10)
        started, release = trio.Event(), trio.Event()

        async def slow(user_id: int) -> UserAccess | None:
            if user_id == 1:
                started.set()
            await release.wait()
            return access(user_id)

        async with trio.open_nursery() as nursery:
            for user_id in (1, 1, 2, 3):  # two reads of user 1 at once, one of each other
                nursery.start_soon(cache.get, user_id, slow)
            await started.wait()
            cache.invalidate(1)  # both reads of 1 are stale; 2's and 3's are not
            cache.invalidate(4)  # no read in flight: nothing to remember
            release.set()
        assert sorted(cache._entries) == [2, 3]
        assert not cache._loading and not cache._invalidated  # nothing kept once no read is in flight

        release = trio.Event()
        async with trio.open_nursery() as nursery:
            nursery.start_soon(cache.get, 5, slow)
            await trio.testing.wait_all_tasks_blocked()
            cache.notices_missed()  # a gap: every read in flight may be stale
            release.set()
        assert len(cache) == 0

    run(main)


def test_a_zero_ttl_keeps_nothing() -> None:
    async def main() -> None:
        cache, load = UserCache(ttl_s=0, size=10), Loader()
        await cache.get(1, load)
        await cache.get(1, load)
        assert load.calls == [1, 1] and len(cache) == 0

    run(main)


def test_peek_gives_a_fresh_entry_and_never_loads() -> None:
    async def main() -> None:
        cache, load = UserCache(ttl_s=30, size=10), Loader()
        assert cache.peek(1) is None and load.calls == []
        first = await cache.get(1, load)
        assert cache.peek(1) is first
        cache.invalidate(1)
        assert cache.peek(1) is None
        await cache.get(1, load)
        await trio.sleep(30)
        assert cache.peek(1) is None and load.calls == [1, 1]  # expired: gone, and not read again

    run(main)
