"""The server process's garbage collection: start-up frozen, full passes on a schedule."""

from __future__ import annotations

import gc
from collections.abc import Iterator

import pytest
import trio
import trio.testing

from roomcast import collector


@pytest.fixture
def gc_state() -> Iterator[None]:
    """Whatever a test does to the collector is undone for the rest of the process."""
    thresholds = gc.get_threshold()
    try:
        yield
    finally:
        gc.unfreeze()
        gc.set_threshold(*thresholds)


def test_start_up_is_frozen_and_full_passes_are_left_to_the_schedule(gc_state: None) -> None:
    collector.freeze_start_up()
    assert gc.get_freeze_count() > 0
    assert gc.get_threshold()[2] == collector._OLDEST_THRESHOLD > 10


def test_a_full_pass_every_interval_until_told_to_stop(gc_state: None, monkeypatch: pytest.MonkeyPatch) -> None:
    passes: list[float] = []

    def record(*args: int) -> int:
        passes.append(trio.current_time())
        return 0

    monkeypatch.setattr(collector.gc, "collect", record)

    async def main() -> None:
        stop = trio.Event()
        async with trio.open_nursery() as nursery:
            nursery.start_soon(collector.collect_on_schedule, 60.0, stop)
            await trio.sleep(185)
            stop.set()
        assert passes == [60.0, 120.0, 180.0]  # and it returned at once when stopped

    trio.run(main, clock=trio.testing.MockClock(autojump_threshold=0))


def test_interval_zero_gives_cpython_its_own_trigger_back(gc_state: None) -> None:
    collector.freeze_start_up()

    async def main() -> None:
        await collector.collect_on_schedule(0, trio.Event())  # returns at once

    trio.run(main, clock=trio.testing.MockClock(autojump_threshold=0))
    assert gc.get_threshold()[2] == 10
