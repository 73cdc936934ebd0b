"""Taking a free worker slot, or a free lock, without a trip through Trio's scheduler.

`trio.CapacityLimiter.acquire_on_behalf_of` and `trio.Lock.acquire` yield to the scheduler
even when nothing holds them: the caller goes to the back of the run queue and resumes only
after every other runnable task has had its turn. On a busy node that turn is milliseconds
(a fan-out to a thousand sockets, say), and a send's transaction paid it twice before its
worker thread started: measured with 100 rooms of 10 subscribers on PostgreSQL, 5 ms of a
34 ms transaction (0.7 ms once taken at once). Taken at once when free, the scheduler's turn
comes only where the caller really waits (the thread, or a held slot).
"""

from __future__ import annotations

from typing import cast

import trio


class PromptLimiter:
    """A `CapacityLimiter` as `trio.to_thread.run_sync(limiter=...)` takes it, that hands out a
    free slot at once (in turn behind any caller already waiting)."""

    def __init__(self, limiter: trio.CapacityLimiter) -> None:
        self.limiter = limiter

    async def acquire_on_behalf_of(self, borrower: object) -> None:
        await trio.lowlevel.checkpoint_if_cancelled()  # a caller already cancelled still leaves here
        try:
            self.limiter.acquire_on_behalf_of_nowait(borrower)  # raises WouldBlock while others wait
        except trio.WouldBlock:
            await self.limiter.acquire_on_behalf_of(borrower)

    def release_on_behalf_of(self, borrower: object) -> None:
        self.limiter.release_on_behalf_of(borrower)

    def for_trio(self) -> trio.CapacityLimiter:
        """This object typed as what `trio.to_thread.run_sync` declares: it documents any object with
        these two methods as a limiter."""
        return cast(trio.CapacityLimiter, self)


async def acquire_promptly(lock: trio.Lock) -> None:
    """`await lock.acquire()`, without the scheduler's turn when the lock is free."""
    await trio.lowlevel.checkpoint_if_cancelled()
    try:
        lock.acquire_nowait()  # a free lock with tasks waiting on it is theirs: trio hands it on
    except trio.WouldBlock:
        await lock.acquire()
