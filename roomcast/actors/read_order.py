"""Read events of one room in pointer order: a user's `read` never goes backwards for its subscribers.

A read pointer is stored and only ever moves forward, but its live `read` event is published
after the commit by whichever node took the read. Two reads of one user taken on two nodes
(4 on one, 6 on the other) can reach the room's stream the other way round, and subscribers
would be left showing 4. Every node's room actor reads the stream in the same order, so each
drops the same events: a `read` whose seq is not past the last one it passed on for that user.
"""

from __future__ import annotations

import json

# A transient stream entry is a read event when its bytes start so (`wire.encode` keeps key order).
READ_PREFIX = b'{"type":"read",'


class ReadOrder:
    """The newest read seq passed on per user of one room (forgotten with the room's actor)."""

    __slots__ = ("_newest",)

    def __init__(self) -> None:
        self._newest: dict[int, int] = {}

    def stale(self, data: bytes) -> bool:
        """Whether `data`, a transient event, is a `read` behind one already passed on (drop it).

        Any other event, or one not shaped as a read event, is never stale.
        """
        if not data.startswith(READ_PREFIX):
            return False
        try:
            event = json.loads(data)
            user, seq = event["user"]["id"], event["seq"]
        except (ValueError, KeyError, TypeError):
            return False
        if not isinstance(user, int) or not isinstance(seq, int):
            return False
        if seq <= self._newest.get(user, -1):
            return True
        self._newest[user] = seq
        return False
