"""Access tokens: HS256 by default, RS256 with configured keys; every failure is a clear 401 code."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from roomcast.config import load_settings
from roomcast.identity.tokens import TokenCodec, TokenError

SECRET = "s" * 40


def codec() -> TokenCodec:
    return TokenCodec("HS256", SECRET, SECRET, ttl_s=3600)


def test_round_trip_carries_the_user_id() -> None:
    claims = codec().decode(codec().mint(42))
    assert claims.user_id == 42
    assert claims.issued_at is not None


def test_claims_follow_the_protocol() -> None:
    raw = jwt.decode(codec().mint(7), SECRET, algorithms=["HS256"])
    # iat in milliseconds (told apart from a revocation in the same second), exp in whole seconds
    assert raw["sub"] == "7" and raw["exp"] - int(raw["iat"]) == 3600 and isinstance(raw["exp"], int)


@pytest.mark.parametrize(
    ("token", "code"),
    [
        (jwt.encode({"sub": "1", "exp": datetime.now(UTC) - timedelta(seconds=5)}, SECRET), "token_expired"),
        (jwt.encode({"sub": "1", "exp": datetime.now(UTC) + timedelta(hours=1)}, "another secret" * 3), "unauthorized"),
        (jwt.encode({"sub": "1"}, SECRET), "unauthorized"),  # no exp
        (jwt.encode({"sub": "bob", "exp": datetime.now(UTC) + timedelta(hours=1)}, SECRET), "unauthorized"),
        (jwt.encode({"sub": 1, "exp": datetime.now(UTC) + timedelta(hours=1)}, SECRET), "unauthorized"),
        (jwt.encode({"sub": "1", "exp": datetime.now(UTC) + timedelta(hours=1)}, None, algorithm="none"),
         "unauthorized"),
        ("not.a.jwt", "unauthorized"),
        ("", "unauthorized"),
    ],
    ids=["expired", "forged", "no-exp", "sub-not-id", "sub-not-string", "alg-none", "garbage", "empty"],
)
def test_bad_tokens_are_refused_with_their_code(token: str, code: str) -> None:
    with pytest.raises(TokenError) as caught:
        codec().decode(token)
    assert caught.value.code == code


def test_rs256_with_configured_keys(tmp_path: Path) -> None:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    private = tmp_path / "private.pem"
    public = tmp_path / "public.pem"
    private.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                          serialization.NoEncryption()))
    public.write_bytes(key.public_key().public_bytes(serialization.Encoding.PEM,
                                                     serialization.PublicFormat.SubjectPublicKeyInfo))
    settings = load_settings({"jwt_algorithm": "RS256", "jwt_public_key_file": public,
                              "jwt_private_key_file": private}, environ={})
    rs = TokenCodec.from_settings(settings)
    assert rs.decode(rs.mint(5)).user_id == 5
    with pytest.raises(TokenError):  # an HS256 token signed with the public key as secret is refused
        rs.decode(jwt.encode({"sub": "5", "exp": datetime.now(UTC) + timedelta(hours=1)}, "x" * 40))
    verify_only = TokenCodec.from_settings(load_settings({"jwt_algorithm": "RS256", "jwt_public_key_file": public},
                                                         environ={}))
    assert verify_only.decode(rs.mint(6)).user_id == 6
    with pytest.raises(TokenError):
        verify_only.mint(6)


def test_embedded_default_secret_is_made_once_and_shared(tmp_path: Path) -> None:
    first = TokenCodec.from_settings(load_settings({"data_dir": tmp_path}, environ={}))
    second = TokenCodec.from_settings(load_settings({"data_dir": tmp_path}, environ={}))
    assert second.decode(first.mint(3)).user_id == 3
    assert (tmp_path / "jwt_secret").stat().st_mode & 0o077 == 0
