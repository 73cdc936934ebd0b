"""Password hashing with Argon2id, off the event loop."""

from __future__ import annotations

import trio
from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

_hasher = PasswordHasher()
# Hashing is deliberately slow; two at a time keeps a login storm from eating every worker thread.
_hashing = trio.CapacityLimiter(2)


_dummy: tuple[PasswordHasher, str] | None = None


def _dummy_hash() -> str:
    """Verified when the user does not exist, so that timing does not reveal which usernames exist.

    Made on first use (by the hasher in use), not at import: hashing takes ~0.15 s, which every
    process, CLI commands included, would otherwise pay at start.
    """
    global _dummy
    if _dummy is None or _dummy[0] is not _hasher:
        _dummy = (_hasher, _hasher.hash("not a real password"))
    return _dummy[1]


async def prepare_dummy_hash() -> None:
    """Make the dummy hash now, off the event loop (a serving node's start): no login pays for it."""
    await trio.to_thread.run_sync(_dummy_hash, limiter=_hashing)


def hash_password_sync(password: str) -> str:
    return _hasher.hash(password)


async def hash_password(password: str) -> str:
    return await trio.to_thread.run_sync(_hasher.hash, password, limiter=_hashing)


def _verify(stored_hash: str | None, password: str) -> bool:
    try:
        return _hasher.verify(stored_hash or _dummy_hash(), password) and stored_hash is not None
    except (VerificationError, InvalidHashError):
        return False


async def verify_password(stored_hash: str | None, password: str) -> bool:
    """True when `password` matches; a missing hash never matches but costs the same."""
    return await trio.to_thread.run_sync(_verify, stored_hash, password, limiter=_hashing)
