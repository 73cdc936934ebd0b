"""One task pings every WebSocket session of the node, a slice of them at a time.

Each session is pinged once per `interval`, and dropped once its client has been
silent for two. Pinging all of them at the same moment would write (and then read
the pongs of) every connection in one burst, which stalls whatever room fan-out
falls in it; so the sessions are dealt into `slices` groups and one group is pinged
every `interval / slices`. A task per session would instead cost memory on every
idle connection.
"""

from __future__ import annotations

import logging
from typing import Protocol

import trio

from ...logs import log_event

log = logging.getLogger("roomcast.ws")

DEFAULT_SLICES = 25


class Beating(Protocol):
    heartbeat_slice: int  # which slice the Heartbeat dealt it into (kept on the session: no map per connection)

    def heartbeat(self, now: float, interval: float) -> None: ...


class Heartbeat:
    """The node's heartbeat: `add` a session when it starts, `discard` it when it ends."""

    def __init__(self, interval: float, slices: int = DEFAULT_SLICES) -> None:
        self.interval = interval
        self._slices: list[set[Beating]] = [set() for _ in range(max(1, slices))]

    def __len__(self) -> int:
        return sum(map(len, self._slices))

    def add(self, session: Beating) -> None:
        # Into the smallest slice, so they stay even however sessions come and go.
        index = min(range(len(self._slices)), key=lambda i: len(self._slices[i]))
        self._slices[index].add(session)
        session.heartbeat_slice = index

    def members(self) -> list[Beating]:
        """Every session, in no particular order."""
        return [session for group in self._slices for session in group]

    def discard(self, session: Beating) -> None:
        self._slices[session.heartbeat_slice].discard(session)

    async def run(self) -> None:
        """Ping forever: one slice every `interval / slices`, each slice once per `interval`."""
        step = self.interval / len(self._slices)
        deadline = trio.current_time()
        while True:
            for group in self._slices:
                deadline += step
                await trio.sleep_until(deadline)
                now = trio.current_time()
                for session in list(group):
                    try:
                        session.heartbeat(now, self.interval)
                    except Exception as exc:  # one broken session must not stop every heartbeat
                        log_event(log, "heartbeat.session_failed", logging.ERROR, error_type=type(exc).__name__,
                                  error=str(exc))
