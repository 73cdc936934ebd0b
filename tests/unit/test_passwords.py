"""Password hashing: the production Argon2id parameters (the rest of the suite hashes at the lowest cost)."""

from __future__ import annotations

import pytest
from argon2 import PasswordHasher

from roomcast.identity import passwords
from roomcast.identity.passwords import hash_password, verify_password

pytestmark = pytest.mark.usefixtures("production_password_hashing")

# argon2-cffi's default: RFC 9106's second recommended option (64 MiB, 3 passes, 4 lanes).
PRODUCTION = "$argon2id$v=19$m=65536,t=3,p=4$"


async def test_production_hashes_use_rfc_9106_parameters() -> None:
    stored = await hash_password("correct horse")
    assert stored.startswith(PRODUCTION)
    assert passwords._dummy_hash().startswith(PRODUCTION)  # an unknown user's login costs what a real one does
    assert not PasswordHasher().check_needs_rehash(stored)
    assert await verify_password(stored, "correct horse")
    assert not await verify_password(stored, "wrong horse")
    assert not await verify_password(None, "correct horse")

