"""Password hashing with Argon2id, off the event loop."""

from __future__ import annotations

import trio
from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

_hasher = PasswordHasher()
# Hashing is deliberately slow; two at a time keeps a login storm from eating every worker thread.
_hashing = trio.CapacityLimiter(2)
# Verified when the user does not exist, so that timing does not reveal which usernames exist.
_DUMMY_HASH = _hasher.hash("not a real password")


def hash_password_sync(password: str) -> str:
    return _hasher.hash(password)


async def hash_password(password: str) -> str:
    return await trio.to_thread.run_sync(_hasher.hash, password, limiter=_hashing)


def _verify(stored_hash: str | None, password: str) -> bool:
    try:
        return _hasher.verify(stored_hash or _DUMMY_HASH, password) and stored_hash is not None
    except (VerificationError, InvalidHashError):
        return False


async def verify_password(stored_hash: str | None, password: str) -> bool:
    """True when `password` matches; a missing hash never matches but costs the same."""
    return await trio.to_thread.run_sync(_verify, stored_hash, password, limiter=_hashing)
