"""coredis's connection pools (one Redis, a cluster), keeping their capacity when a connection dies while lent.

coredis (6.x) holds one slot per connection it may open. A connection that dies idle in the
pool gives its slot back; one that dies while a command holds it (the stream reader's blocking
XREAD, a pipeline) is dropped at release, and its slot with it. Each Redis outage that met such
a command cost the node one of its `redis_max_connections`, until every command, /readyz's ping
included, waited forever for a connection and the node never recovered from the next outage.
"""

from __future__ import annotations

from typing import TypeVar

from coredis._concurrency import Queue, QueueFull
from coredis.connection import ClusterConnection, TCPConnection
from coredis.pool import ClusterConnectionPool, ConnectionPool

C = TypeVar("C", TCPConnection, ClusterConnection)


def _leave_an_empty_slot(slots: Queue[C]) -> None:
    """A dead connection released: not put back, and not in the pool when it died (coredis only
    refills a slot for those), so an empty slot takes its place and the next command connects afresh."""
    try:
        slots.append_nowait(None)
    except QueueFull:
        pass


class SlotKeepingPool(ConnectionPool[TCPConnection]):
    """A pool where releasing a dead connection leaves room for a new one."""

    def release(self, connection: TCPConnection) -> None:
        usable = connection.usable
        super().release(connection)
        if not usable:
            _leave_an_empty_slot(self._available_connections)


class SlotKeepingClusterPool(ClusterConnectionPool):
    """The same for a cluster, whose pool keeps the slots per node: the slot goes back to the
    dead connection's node."""

    def release(self, connection: ClusterConnection) -> None:
        usable = connection.usable
        super().release(connection)
        if not usable:
            _leave_an_empty_slot(self._node_pool(connection.location))
