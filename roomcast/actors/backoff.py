"""Exponential backoff with jitter, for restarts and reconnects."""

from __future__ import annotations

import random
from dataclasses import dataclass, field


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
