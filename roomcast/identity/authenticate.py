"""From a bearer token to an active user, for REST and /ws alike."""

from __future__ import annotations

from datetime import UTC, datetime

from ..errors import Unauthorized
from ..storage.database import Database
from ..storage.replica import act_for
from ..storage.users import UserAccess, UserSnapshot, user_access
from .tokens import Claims, TokenCodec, TokenError
from .user_cache import UserCache


def bearer_token(authorization: str | None) -> str | None:
    """The token of an `Authorization: Bearer <token>` header, or None."""
    if not authorization:
        return None
    scheme, _, token = authorization.partition(" ")
    token = token.strip()
    return token if scheme.lower() == "bearer" and token else None


async def authenticate(database: Database, tokens: TokenCodec, token: str | None,
                       users: UserCache | None = None, *, keep: bool = True) -> tuple[UserSnapshot, Claims]:
    """The token's user and claims; Unauthorized (or token_expired) for anything else. The calling
    context acts for that user from then on (`replica.act_for`).

    With `users`, a user seen lately costs no database read (`UserCache`); a user read is kept
    there (the online lists of presence take their badges from it too). Without `keep`, the
    token's check is not kept: a /ws connection checks its token once, and keeping it would cost
    memory per connection for nothing.
    """
    if not token:
        raise Unauthorized("missing bearer token")
    try:
        claims = tokens.decode(token, remember=keep)
    except TokenError as exc:
        raise Unauthorized(str(exc), code=exc.code) from None

    async def load(user_id: int) -> UserAccess | None:
        return await database.read(user_access, user_id)

    # While the database is known to be down, the cache answers nothing: the read either finds it
    # back or fails as the request would (503, /ws 1013), rather than admitting a client that can
    # then do nothing.
    cached = users is not None and not database.availability.is_down
    access = await (users.get(claims.user_id, load) if cached and users is not None else load(claims.user_id))
    if access is None:
        raise Unauthorized("unknown or disabled user")
    refusal = access_refusal(access.is_active, access.tokens_valid_after, claims.issued_at)
    if refusal is not None:
        raise Unauthorized(refusal)
    # What this request or connection reads and writes from now on is this user's: their reads wait
    # for their own writes when a replica may serve them (storage/replica.py).
    act_for(access.user.id)
    return access.user, claims


async def user_for_token(database: Database, tokens: TokenCodec, token: str | None,
                         users: UserCache | None = None) -> UserSnapshot:
    """The token's user; Unauthorized (or token_expired) for anything else."""
    return (await authenticate(database, tokens, token, users))[0]


def access_refusal(is_active: bool, tokens_valid_after: datetime | None, issued_at: datetime | None) -> str | None:
    """Why a token issued at `issued_at` no longer admits its user, or None if it still does.

    Checked at every request and, for open WebSocket sessions, periodically after.
    """
    if not is_active:
        return "unknown or disabled user"
    if tokens_valid_after is None:
        return None
    if issued_at is None:
        # A deployment's backend may mint tokens without `iat`: such a token could be from
        # before the revocation, so once the user has one, it is refused.
        return "the token has no iat claim and this user's earlier tokens were revoked"
    if tokens_valid_after.tzinfo is None:
        tokens_valid_after = tokens_valid_after.replace(tzinfo=UTC)
    if issued_at < tokens_valid_after:
        return "the token has been revoked"
    return None
