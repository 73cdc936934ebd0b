"""JWT access tokens: HS256 with the server's secret, or RS256 with configured keys."""

from __future__ import annotations

import math
import os
import secrets
import time
from collections import OrderedDict
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import jwt

from ..config import Settings
from ..wire import MAX_ID


class TokenError(Exception):
    """The token is unusable; `code` is `unauthorized` or `token_expired`."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code


@dataclass(frozen=True)
class Claims:
    user_id: int
    issued_at: datetime | None


class TokenCodec:
    """Mints and checks access tokens.

    A token checked once is remembered until its `exp` (the last `VERIFIED_KEPT` of them): the
    same string has the same signature, and a client sends the same token with every request,
    so only its first request pays for the signature (HS256: ~0.3 ms; RS256: more).
    """

    VERIFIED_KEPT = 10_000

    def __init__(self, algorithm: str, verify_key: str | bytes, signing_key: str | bytes | None, ttl_s: int) -> None:
        self.algorithm = algorithm
        self._verify_key = verify_key
        self._signing_key = signing_key
        self.ttl_s = ttl_s
        self._verified: OrderedDict[str, tuple[Claims, float]] = OrderedDict()  # token -> (claims, its exp)

    @classmethod
    def from_settings(cls, settings: Settings) -> TokenCodec:
        if settings.jwt_algorithm == "RS256":
            assert settings.jwt_public_key_file is not None  # checked by Settings
            public = settings.jwt_public_key_file.read_bytes()
            private = settings.jwt_private_key_file.read_bytes() if settings.jwt_private_key_file else None
            return cls("RS256", public, private, settings.token_ttl_s)
        secret = settings.jwt_secret or _stored_secret(settings.data_dir)
        return cls("HS256", secret, secret, settings.token_ttl_s)

    def mint(self, user_id: int, ttl_s: int | None = None) -> str:
        if self._signing_key is None:
            raise TokenError("unauthorized", "this server verifies tokens but has no key to sign them")
        now = datetime.now(UTC)
        # `iat` in milliseconds, rounded down: a token minted in the same second as a revocation
        # (tokens_valid_after) is then told apart, and one minted before it is never stamped after it.
        issued = math.floor(now.timestamp() * 1000) / 1000
        claims = {"sub": str(user_id), "iat": issued, "exp": int(issued) + (ttl_s or self.ttl_s)}
        return jwt.encode(claims, self._signing_key, algorithm=self.algorithm)

    def decode(self, token: str, *, remember: bool = True) -> Claims:
        """The token's claims; TokenError if it is unusable. With `remember`, kept for its next use."""
        known = self._verified.get(token)
        if known is not None and time.time() < known[1]:
            return known[0]
        return self._decode(token, remember)

    def _decode(self, token: str, remember: bool) -> Claims:
        try:
            claims = jwt.decode(
                token, self._verify_key, algorithms=[self.algorithm], options={"require": ["exp", "sub"]}
            )
        except jwt.ExpiredSignatureError:
            raise TokenError("token_expired", "the token has expired") from None
        except jwt.PyJWTError as exc:
            raise TokenError("unauthorized", f"invalid token: {exc}") from None
        subject = claims["sub"]
        if not (isinstance(subject, str) and subject.isascii() and subject.isdigit()
                and 1 <= int(subject) <= MAX_ID):
            raise TokenError("unauthorized", "invalid token: sub must be a user id")
        checked = Claims(int(subject), _issued_at(claims.get("iat")))
        expires = claims["exp"]
        if remember and isinstance(expires, int | float):  # PyJWT has checked it is a number
            self._verified[token] = (checked, float(expires))
            if len(self._verified) > self.VERIFIED_KEPT:
                self._verified.popitem(last=False)
        return checked


def _issued_at(issued: object) -> datetime | None:
    """The `iat` claim as an instant, None without one; TokenError for a number that is no instant
    (PyJWT lets a huge negative one or NaN through, and a backend sharing the secret may send it)."""
    if not isinstance(issued, int | float):
        return None
    try:
        return datetime.fromtimestamp(issued, UTC)
    except (OverflowError, OSError, ValueError):
        raise TokenError("unauthorized", "invalid token: iat must be a time") from None


def _stored_secret(data_dir: Path) -> str:
    """The embedded default's secret: made once, kept beside the database, shared by the CLI
    and by every node that shares data_dir (made whole under a temporary name, then linked into
    place, so a node starting at the same moment reads the whole secret or makes none)."""
    path = data_dir / "jwt_secret"
    if path.exists():
        return path.read_text().strip()
    data_dir.mkdir(parents=True, exist_ok=True)
    secret = secrets.token_urlsafe(48)
    draft = data_dir / f".jwt_secret.{secrets.token_hex(4)}"
    try:
        with open(draft, "x", opener=lambda name, flags: os.open(name, flags, 0o600)) as handle:
            handle.write(secret)
        os.link(draft, path)
    except FileExistsError:  # another process made it first
        return path.read_text().strip()
    finally:
        draft.unlink(missing_ok=True)
    return secret
