"""Presence changes of one room, folded into at most one event per subscriber per window.

Every join and leave, on any node, reaches each node's room actor through the room's
stream as one `presence` record (the PROTOCOL §5 event, plus `present`: whether the
user is still online in the room after the change, and `at`: the wall time of the
presence write, which orders records of concurrent changes). Changes a node announced
together come as one record of the newest, with `changes`: each as [badge, present, at]
(services/presence_announcer.py). The room actor hands the records
to a `PresenceFold` instead of fanning each out; when the window closes it sends

- to subscribers that opted in (`"presence": "diff"` on subscribe), one `presence_diff`:
  ``{"type": "presence_diff", "room", "joins": [badge], "leaves": [badge],
  "joins_truncated": n, "leaves_truncated": n, "online_count"}``. Each user touched in
  the window is listed once, by where the window left them: online → `joins`, offline →
  `leaves` (a user who joined and left within one window is in `leaves` only; one who left
  and came back, in `joins` only). At most `limit` users are listed, joins first; the
  users left out are counted in `*_truncated`.
- to the others, the window's last `presence` event as PROTOCOL §5 shapes it: its
  `online` list is the newest, its `user`/`status` the last change's.

So a storm of n joins costs each subscriber one small event per window, not n.
"""

from __future__ import annotations

import json
import math

from ..wire import JsonObject, encode

# A transient stream entry is a presence record when its bytes start so (`encode` keeps key order).
PRESENCE_PREFIX = b'{"type":"presence",'


def is_presence_record(data: bytes) -> bool:
    return data.startswith(PRESENCE_PREFIX)


class PresenceFold:
    """One window's presence changes of a room: who changed, where they ended, the newest count."""

    __slots__ = ("_count_at", "_last", "_last_at", "_online_count", "_users", "limit", "room_id")

    def __init__(self, room_id: int, limit: int) -> None:
        self.room_id = room_id
        self.limit = limit
        # user id → (badge, online after its newest change, when that change was made)
        self._users: dict[int, tuple[JsonObject, bool, float]] = {}
        self._last: JsonObject | None = None  # the newest record, for clients of the PROTOCOL §5 event
        self._last_at = -math.inf
        self._online_count = 0
        self._count_at = -math.inf

    def __bool__(self) -> bool:
        return self._last is not None

    def add(self, data: bytes) -> bool:
        """Fold one presence record in; False (and nothing folded) if it is not one we can read."""
        try:
            record = json.loads(data)
            user = record["user"]
            user_id = user["id"]
            status = record["status"]
            count = record.get("online_count", len(record.get("online", ())))
        except (ValueError, KeyError, TypeError):
            return False
        if type(user_id) is not int or status not in ("joined", "left") or type(count) is not int:
            return False
        # A record without `present` (published by an older node): the status says it.
        present = record.pop("present", status == "joined")
        at = _time(record.pop("at", None))
        # A record of several changes (announced together) lists each as [badge, present, at].
        changes = record.pop("changes", None)
        if isinstance(changes, list):
            for change in changes:
                if (isinstance(change, list) and len(change) == 3 and isinstance(change[0], dict)
                        and type(change[0].get("id")) is int):
                    self._change(change[0], bool(change[1]), _time(change[2]))
        else:
            self._change(user, bool(present), at)
        if self._last is None or at >= self._last_at:
            self._last = record
            self._last_at = at
        if at == math.inf:  # an older node's record: arrival order is all there is
            self._online_count = count
        elif at >= self._count_at:  # across windows: a late record never takes the count back
            self._count_at = at
            self._online_count = count
        return True

    def _change(self, user: JsonObject, present: bool, at: float) -> None:
        # Records of concurrent changes may reach the stream out of order (each is published
        # after its presence write and a database read): the newest by `at` says where a user
        # ended and how many are online, whatever order they arrived in.
        user_id = user["id"]
        assert isinstance(user_id, int)
        known = self._users.get(user_id)
        if known is None or at >= known[2]:
            self._users.pop(user_id, None)  # re-inserted: the lists keep the order of each user's last change
            self._users[user_id] = (user, present, at)

    def take(self, *, legacy: bool, diff: bool) -> tuple[bytes | None, bytes | None]:
        """The window's events, encoded once each (the PROTOCOL §5 one, the diff), and a fresh window."""
        legacy_event = encode(self._last) if legacy and self._last is not None else None
        diff_event = encode(self.diff()) if diff and self._last is not None else None
        self._users = {}
        self._last = None
        self._last_at = -math.inf
        return legacy_event, diff_event

    def diff(self) -> JsonObject:
        joins = [badge for badge, online, _ in self._users.values() if online]
        leaves = [badge for badge, online, _ in self._users.values() if not online]
        shown_joins = joins[:self.limit]
        shown_leaves = leaves[:max(self.limit - len(shown_joins), 0)]
        return {"type": "presence_diff", "room": self.room_id, "joins": shown_joins, "leaves": shown_leaves,
                "joins_truncated": len(joins) - len(shown_joins), "leaves_truncated": len(leaves) - len(shown_leaves),
                "online_count": self._online_count}


def _time(at: object) -> float:
    """A record's `at`; one without (an older node's) counts as the newest: arrival order is all there is."""
    return at if isinstance(at, int | float) and not isinstance(at, bool) else math.inf
