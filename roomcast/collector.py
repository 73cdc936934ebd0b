"""When a server process collects its cyclic garbage: full collections on a schedule, not mid-storm.

CPython's full collection walks every tracked object, and a node with a thousand sessions
holds some 65 of them per session (the session task's coroutines, its cancel scopes and
nursery, its socket objects). Left to itself, the collector runs a full pass whenever the
old generation has grown by a quarter: a join storm, which builds those objects by the
thousand, sets off one after another, each stalling every socket for 30-100 ms (measured
on a 1000-subscriber storm), exactly while the room's messages are already late.

So a server process:
- freezes what start-up built (modules, classes, the app), which no pass walks again;
- leaves the young generations to CPython (their passes take 1-4 ms). Raising the youngest
  threshold trades pauses for throughput: in `bench/fanout.py`'s flat-100x10, the collector's
  share of the CPU fell from about 5% (700, the default) to 1.5% (10 000), but each young pass
  then took up to 15 ms and a middle one up to 57 ms, past the fan-out latency we aim for;
- makes full passes rare on its own (`_OLDEST_THRESHOLD` young passes between them, where
  CPython's default is 10) and runs one itself every `gc_interval_s`, so the cycles of
  closed sessions are freed on a schedule: memory they hold is bounded by what the node's
  churn leaves in that interval.
"""

from __future__ import annotations

import gc
import logging
import time

import trio

from .logs import log_event

log = logging.getLogger("roomcast.collector")

# Middle-generation passes between full ones that CPython starts by itself (its default is 10):
# about 7 M net allocations, far more than a storm of joins makes, yet a bound if the schedule lags.
_OLDEST_THRESHOLD = 1000
# A full pass taking longer than this is logged (at INFO): what the schedule costs each time.
_SLOW_PASS_S = 0.05


def freeze_start_up() -> None:
    """Collect once, freeze what survives (start-up's objects), and leave full passes to the schedule."""
    gc.collect()
    gc.freeze()
    young, middle, _ = gc.get_threshold()
    gc.set_threshold(young, middle, _OLDEST_THRESHOLD)


async def collect_on_schedule(interval_s: float, until: trio.Event) -> None:
    """A full collection every `interval_s` until `until` is set; 0 leaves CPython's own trigger."""
    if interval_s <= 0:
        young, middle, _ = gc.get_threshold()
        gc.set_threshold(young, middle, 10)
        return
    while True:
        with trio.move_on_after(interval_s):
            await until.wait()
            return
        started = time.perf_counter()
        collected = gc.collect()
        took = time.perf_counter() - started
        log_event(log, "gc.collected", logging.INFO if took >= _SLOW_PASS_S else logging.DEBUG,
                  objects=collected, seconds=round(took, 4))
