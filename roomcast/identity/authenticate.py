"""From a bearer token to an active user, for REST and /ws alike."""

from __future__ import annotations

from ..errors import Unauthorized
from ..storage.database import Database
from ..storage.models import User
from ..storage.users import get_user
from .tokens import TokenCodec, TokenError


def bearer_token(authorization: str | None) -> str | None:
    """The token of an `Authorization: Bearer <token>` header, or None."""
    if not authorization:
        return None
    scheme, _, token = authorization.partition(" ")
    token = token.strip()
    return token if scheme.lower() == "bearer" and token else None


async def user_for_token(database: Database, tokens: TokenCodec, token: str | None) -> User:
    """The token's user; Unauthorized (or token_expired) for anything else."""
    if not token:
        raise Unauthorized("missing bearer token")
    try:
        claims = tokens.decode(token)
    except TokenError as exc:
        raise Unauthorized(str(exc), code=exc.code) from None
    user = await database.read(get_user, claims.user_id)
    if user is None or not user.is_active:
        raise Unauthorized("unknown or disabled user")
    if user.tokens_valid_after is not None:
        # A token without `iat` (a deployment's backend may mint such) could be from before the
        # revocation: once the user has one, such tokens are refused.
        if claims.issued_at is None:
            raise Unauthorized("the token has no iat claim and this user's earlier tokens were revoked")
        valid_after = user.tokens_valid_after
        if valid_after.tzinfo is None:
            valid_after = valid_after.replace(tzinfo=claims.issued_at.tzinfo)
        if claims.issued_at < valid_after:
            raise Unauthorized("the token has been revoked")
    return user
