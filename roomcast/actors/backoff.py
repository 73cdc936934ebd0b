"""Exponential backoff with jitter, for restarts and reconnects; and waiting out an outage with it."""

from __future__ import annotations

import logging
import random
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar

import trio

from ..errors import DependencyUnavailable
from ..logs import log_event

T = TypeVar("T")


@dataclass
class Backoff:
    """Delay before attempt n (1-based): base * 2**(n-1), capped, then scaled by jitter.

    With `jitter` j the delay is drawn uniformly from [(1 - j) * d, d]: retries
    from many actors spread out instead of arriving together.
    """

    base: float = 0.1
    cap: float = 5.0
    jitter: float = 0.5
    rng: random.Random = field(default_factory=random.Random)

    def delay(self, attempt: int) -> float:
        if attempt <= 0 or self.base <= 0:
            return 0.0
        ceiling = min(self.cap, self.base * 2 ** min(attempt - 1, 32))
        return ceiling * (1 - self.jitter * self.rng.random())


async def until_available(call: Callable[[], Awaitable[T]], backoff: Backoff, log: logging.Logger,
                          event: str, **fields: Any) -> T:
    """`await call()`, again and again with backoff while its dependency is unavailable.

    An outage is a state to wait out, not a crash (DESIGN.md §11): the caller keeps its
    place and its state and carries on once the dependency answers. The outage itself is
    logged by the dependency's gateway; each retry here only at DEBUG, as `event`.
    """
    attempt = 0
    while True:
        try:
            return await call()
        except DependencyUnavailable as exc:
            attempt += 1
            delay = backoff.delay(attempt)
            log_event(log, event, logging.DEBUG, dependency=exc.dependency, error=str(exc), attempt=attempt,
                      retry_in_s=round(delay, 3), **fields)
            await trio.sleep(delay)
