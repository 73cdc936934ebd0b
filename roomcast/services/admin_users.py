"""The admin's tools for users of one tenant: list and search, disable and enable, revoke tokens,
reset a password (REST under /api/admin/users and `run.py users`).

Every change is written first, then announced on the notices stream (`live.ACCESS_CHANGED`):
each node forgets the user in its user cache and closes the user's open sessions that it no
longer admits with 1008 at once. Should the announcement fail (the stream backend down), the
change still stands: this node's cache has forgotten the user already, each node's audit closes
those sessions within `heartbeat_s`, and other nodes' caches forget it within `user_cache_ttl_s`.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime

from ..errors import BadRequest, DependencyUnavailable, NotFound
from ..identity.passwords import hash_password
from ..logs import log_event
from ..node import Node
from ..storage import users as stored
from ..storage.models import User
from ..wire import JsonObject, admin_user_to_wire
from .live import access_changed_event

log = logging.getLogger("roomcast.admin")


async def _with_presence(node: Node, users: list[User]) -> list[JsonObject]:
    online = await node.presence.online_users(user.id for user in users)
    return [admin_user_to_wire(user, online=user.id in online) for user in users]


async def list_users(node: Node, tenant: str, *, query: str | None, role: str | None, active: bool | None,
                     after_id: int, limit: int) -> tuple[list[JsonObject], int | None]:
    """Up to `limit` users of `tenant` by id after `after_id`, matching the filters, as the admin sees
    them; and the id to continue after when there are more, else None."""
    found = await node.database.read(
        lambda session: stored.search_users(session, tenant=tenant, query=query, role=role, active=active,
                                            after_id=after_id, limit=limit + 1))
    page, more = found[:limit], len(found) > limit
    return await _with_presence(node, page), page[-1].id if more else None


async def get_user(node: Node, tenant: str, user_id: int) -> JsonObject:
    user = await node.database.read(stored.get_tenant_user, tenant, user_id)
    if user is None:
        raise NotFound("no such user")
    return (await _with_presence(node, [user]))[0]


async def find_user_id(node: Node, tenant: str, username: str) -> int:
    """The id of `username` in `tenant` (for the command line); NotFound otherwise."""
    user = await node.database.read(stored.find_user, tenant, username)
    if user is None:
        raise NotFound(f"no user {username!r} in tenant {tenant!r}")
    return user.id


async def _change(node: Node, tenant: str, user_id: int, *, is_active: bool | None = None, revoke: bool = False,
                  password_hash: str | None = None) -> JsonObject:
    # The revocation instant, to the microsecond: tokens issued before it are refused from now on.
    valid_after = datetime.now(UTC) if revoke else None
    user = await node.database.write(
        lambda session: stored.update_access(session, tenant, user_id, is_active=is_active,
                                             tokens_valid_after=valid_after, password_hash=password_hash))
    if user is None:
        raise NotFound("no such user")
    log_event(log, "admin.user_changed", user=user.id, tenant=tenant, is_active=user.is_active, revoked=revoke,
              password_reset=password_hash is not None)
    # Every change is announced, not only those that take access away: each node's user cache
    # forgets the user on it (this node's at once, whatever the stream does).
    node.user_cache.invalidate(user.id)
    try:
        await node.notices.publish([user.id], access_changed_event(user))
    except DependencyUnavailable as exc:
        # The audit of each node closes the sessions within heartbeat_s; other nodes' caches
        # forget the user within user_cache_ttl_s.
        log_event(log, "admin.announce_failed", logging.WARNING, user=user.id, error=str(exc))
    return (await _with_presence(node, [user]))[0]


async def disable_user(node: Node, tenant: str, user_id: int, *, by: int | None = None) -> JsonObject:
    """Refuse the user's logins and tokens, and close its sessions (1008). Its tokens are revoked
    too, so enabling it again does not bring them back."""
    if by == user_id:
        raise BadRequest("you cannot disable yourself")
    return await _change(node, tenant, user_id, is_active=False, revoke=True)


async def enable_user(node: Node, tenant: str, user_id: int) -> JsonObject:
    """Let the user log in again (tokens from before the disable stay revoked)."""
    return await _change(node, tenant, user_id, is_active=True)


async def revoke_tokens(node: Node, tenant: str, user_id: int) -> JsonObject:
    """Refuse every token issued to the user until now and close its sessions (1008); new logins work."""
    return await _change(node, tenant, user_id, revoke=True)


async def reset_password(node: Node, tenant: str, user_id: int, password: str, *,
                         revoke: bool = True) -> JsonObject:
    """Set the user's password; with `revoke` (the default) its tokens and sessions end too."""
    return await _change(node, tenant, user_id, password_hash=await hash_password(password), revoke=revoke)
