"""How long the event loop may hold the GIL while a database thread waits for it.

Every query runs in a worker thread (storage/database.py), and a PostgreSQL transaction is a
series of network round trips: after each, its thread must take the GIL back from the event
loop. With CPython's default switch interval (5 ms), a loop busy with a join storm holds it
up to 5 ms each time, and a send's commit of some eight statements took 10-35 ms where it
takes 5 alone (measured on a 1000-subscriber storm): the room's messages were late by that.
A 0.5 ms interval gives the thread its turn at once; the loop yields only while a thread
waits, so an idle database costs nothing.

SQLite is another matter: its thread computes rather than waits, and at 0.5 ms the two fight
over the GIL, costing the loop a fifth of its throughput (measured flat out): it keeps CPython's
default.
"""

from __future__ import annotations

import sys

# For a database reached over the network (PostgreSQL); SQLite keeps CPython's default.
NETWORK_DATABASE_INTERVAL_MS = 0.5


def switch_interval_ms(configured: float | None, *, is_sqlite: bool) -> float | None:
    """The interval to set (ms), or None to keep CPython's: `configured` if given, else by database."""
    if configured is not None:
        return configured
    return None if is_sqlite else NETWORK_DATABASE_INTERVAL_MS


def apply_switch_interval(configured: float | None, *, is_sqlite: bool) -> float:
    """Set the process's switch interval as `switch_interval_ms` says; the interval in effect (ms)."""
    interval = switch_interval_ms(configured, is_sqlite=is_sqlite)
    if interval is not None:
        sys.setswitchinterval(interval / 1000)
    return sys.getswitchinterval() * 1000
