"""Whether a dependency (the database, the stream backend) answers, as its own calls find it.

The gateway to a dependency reports every call's outcome here; the change of state is
logged once each way (`dependency.unavailable` at WARNING, `dependency.recovered` with
how long it lasted), however many actors retry meanwhile and however often.
"""

from __future__ import annotations

import logging
import math

import trio

from .logs import log_event

log = logging.getLogger("roomcast.availability")


class Availability:
    """Up or down, for one dependency; cheap to report on every call."""

    def __init__(self, dependency: str) -> None:
        self.dependency = dependency
        self.down_since: float | None = None
        self.up_since = -math.inf  # when the last outage ended
        self.failures = 0  # calls that failed during the current outage

    @property
    def is_down(self) -> bool:
        return self.down_since is not None

    def failed(self, error: BaseException, started_at: float, detail: str | None = None) -> None:
        """A call that began at `started_at` failed: the dependency is unreachable.

        One that began before the last recovery is old news, not a new outage.
        `detail` describes the failure for the log.
        """
        if self.down_since is None and started_at <= self.up_since:
            return
        self.failures += 1
        if self.down_since is None:
            self.down_since = trio.current_time()
            log_event(log, "dependency.unavailable", logging.WARNING, dependency=self.dependency,
                      error_type=type(error).__name__, error=detail if detail is not None else str(error))

    def succeeded(self, started_at: float) -> None:
        """A call that began at `started_at` (trio.current_time()) went through.

        One that began before the outage was noticed proves nothing about now: a call
        already on its way when the others started failing is not a recovery.
        """
        if self.down_since is not None and started_at > self.down_since:
            down_s = trio.current_time() - self.down_since
            log_event(log, "dependency.recovered", dependency=self.dependency, down_s=round(down_s, 3),
                      failed_calls=self.failures)
            self.down_since = None
            self.up_since = trio.current_time()
            self.failures = 0

