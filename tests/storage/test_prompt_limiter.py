"""A free worker slot or lock is taken without the scheduler's turn; a taken one is waited for in turn."""

from __future__ import annotations

import trio
import trio.testing

from roomcast.storage.prompt_limiter import PromptLimiter, acquire_promptly


async def _ran_meanwhile(acquire: object) -> bool:
    """Whether a task started just before `acquire()` ran before it returned."""
    ran = False

    async def other() -> None:
        nonlocal ran
        ran = True

    async with trio.open_nursery() as nursery:
        nursery.start_soon(other)
        await acquire()  # type: ignore[operator]
        seen = ran
    return seen


async def test_a_free_slot_is_taken_without_the_schedulers_turn() -> None:
    limiter = trio.CapacityLimiter(1)
    assert not await _ran_meanwhile(lambda: PromptLimiter(limiter).acquire_on_behalf_of("a"))
    assert limiter.borrowed_tokens == 1
    # (trio's own acquire yields here: whether the other task runs first is then up to its
    # scheduler, which shuffles each round's order on purpose.)


async def test_a_free_lock_is_taken_without_the_schedulers_turn() -> None:
    lock = trio.Lock()
    assert not await _ran_meanwhile(lambda: acquire_promptly(lock))
    assert lock.locked()


async def test_a_caller_waits_its_turn_behind_those_already_waiting() -> None:
    limiter = trio.CapacityLimiter(1)
    prompt = PromptLimiter(limiter)
    order: list[str] = []

    async def borrow(name: str) -> None:
        await prompt.acquire_on_behalf_of(name)
        order.append(name)

    await prompt.acquire_on_behalf_of("holder")
    async with trio.open_nursery() as nursery:
        nursery.start_soon(borrow, "first")
        await trio.testing.wait_all_tasks_blocked()
        limiter.release_on_behalf_of("holder")  # handed to "first", who has not run yet
        nursery.start_soon(borrow, "second")
        await trio.testing.wait_all_tasks_blocked()
        assert order == ["first"]
        limiter.release_on_behalf_of("first")
    assert order == ["first", "second"]


async def test_a_lock_handed_on_stays_with_the_one_who_waited() -> None:
    lock = trio.Lock()
    order: list[str] = []

    async def take(name: str) -> None:
        await acquire_promptly(lock)
        order.append(name)
        lock.release()

    await acquire_promptly(lock)
    async with trio.open_nursery() as nursery:
        nursery.start_soon(take, "waiting")
        await trio.testing.wait_all_tasks_blocked()
        lock.release()
        nursery.start_soon(take, "late")
    assert order == ["waiting", "late"]


async def test_a_cancelled_caller_takes_no_slot() -> None:
    limiter, lock = trio.CapacityLimiter(1), trio.Lock()
    with trio.CancelScope() as scope:
        scope.cancel()
        await PromptLimiter(limiter).acquire_on_behalf_of("a")
    assert scope.cancelled_caught and limiter.borrowed_tokens == 0
    with trio.CancelScope() as scope:
        scope.cancel()
        await acquire_promptly(lock)
    assert scope.cancelled_caught and not lock.locked()


async def test_to_thread_runs_with_it_and_gives_the_slot_back() -> None:
    limiter = trio.CapacityLimiter(1)
    prompt = PromptLimiter(limiter)
    assert await trio.to_thread.run_sync(lambda: limiter.borrowed_tokens, limiter=prompt.for_trio()) == 1
    assert limiter.borrowed_tokens == 0
