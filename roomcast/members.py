"""Indexes of small groups: a key maps to its one member itself, and to a set only from a second on.

A node indexes its sessions by user in several places (in-process presence, the notices hub).
Most users have one session, and a set of one costs 216 bytes: at thousands of idle
connections that is a good part of what each costs. So a key holds its member bare while it
is alone. Members must not be sets themselves (a session, a session id).
"""

from __future__ import annotations

from collections.abc import Hashable
from typing import TypeVar

K = TypeVar("K", bound=Hashable)
M = TypeVar("M")


def add(index: dict[K, M | set[M]], key: K, member: M) -> None:
    """Put `member` in `key`'s group (once, however often it is added)."""
    found = index.get(key)
    if found is None:
        index[key] = member
    elif isinstance(found, set):
        found.add(member)
    elif found != member:
        index[key] = {found, member}


def discard(index: dict[K, M | set[M]], key: K, member: M) -> bool:
    """Take `member` out of `key`'s group, the key out once its group is empty; True if it was in."""
    found = index.get(key)
    if isinstance(found, set):
        if member not in found:
            return False
        found.discard(member)
        if len(found) == 1:
            index[key] = found.pop()
        return True
    if found is not None and found == member:
        del index[key]
        return True
    return False


def members(index: dict[K, M | set[M]], key: K) -> list[M]:
    """`key`'s members, as a list of their own (the index may change while it is used)."""
    found = index.get(key)
    if found is None:
        return []
    return list(found) if isinstance(found, set) else [found]


def count(index: dict[K, M | set[M]], key: K) -> int:
    found = index.get(key)
    if found is None:
        return 0
    return len(found) if isinstance(found, set) else 1
