"""Deadlines on the wall clock for waits on worker threads (`Database._run_with_deadline`).

A deadline on trio's clock would not do: under a test's MockClock with autojump, time leaps
ahead whenever every task waits, and a task waiting for a worker thread counts as waiting, so
every database call would miss its deadline at once. A worker thread runs in real time; so does
this watch over it: one daemon thread per process, asleep while nothing is armed.
"""

from __future__ import annotations

import contextlib
import itertools
import threading
import time

import trio

# How late a deadline may fire at worst: the watch looks again at least this often while anything
# is armed, and so sees a deadline armed after it went to sleep.
_LOOK_EVERY_S = 0.25


class WallClockDeadlines:
    """Cancels a trio cancel scope once its deadline, on the wall clock, has passed."""

    def __init__(self) -> None:
        self._changed = threading.Condition()
        self._armed: dict[int, tuple[float, trio.lowlevel.TrioToken, trio.CancelScope]] = {}
        self._keys = itertools.count()
        self._watch: threading.Thread | None = None

    def arm(self, scope: trio.CancelScope, after_s: float) -> int:
        """Cancel `scope` (from the event loop's thread) in `after_s` seconds; a key for `disarm`."""
        key = next(self._keys)
        entry = (time.monotonic() + after_s, trio.lowlevel.current_trio_token(), scope)
        with self._changed:
            if not self._armed:
                self._changed.notify()
            self._armed[key] = entry
            if self._watch is None:
                self._watch = threading.Thread(target=self._run, name="roomcast-deadlines", daemon=True)
                self._watch.start()
        return key

    def disarm(self, key: int) -> None:
        """The wait ended in time (or the deadline fired already): nothing more to do for it."""
        with self._changed:
            self._armed.pop(key, None)

    def _run(self) -> None:
        with self._changed:
            while True:
                if not self._armed:
                    self._changed.wait()
                    continue
                now = time.monotonic()
                for key in [key for key, (deadline, _, _) in self._armed.items() if deadline <= now]:
                    _, token, scope = self._armed.pop(key)
                    with contextlib.suppress(trio.RunFinishedError):  # its run ended meanwhile
                        token.run_sync_soon(scope.cancel)
                earliest = min((deadline for deadline, _, _ in self._armed.values()), default=now + _LOOK_EVERY_S)
                self._changed.wait(min(_LOOK_EVERY_S, max(0.0, earliest - now)))


# Shared by every database of the process: one watch thread, whatever the number of nodes (tests).
wall_clock_deadlines = WallClockDeadlines()
