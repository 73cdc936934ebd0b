"""Operators' views and tools (PROTOCOL §6): the live supervision tree, the live stats, and the tenant's users."""

from __future__ import annotations

from quart import Blueprint
from quart_schema import document_response, validate_querystring

from ...services import admin_users
from ...services.stats import admin_stats
from ..auth import current_user, require_authentication, require_roles
from ..context import current_node
from ..pagination import decode_cursor, encode_cursor
from ..schemas import ActorsOut, AdminUserOut, AdminUserPage, AdminUsersQuery, ErrorOut, PasswordResetIn, StatsOut
from ..validation import validate_request

blueprint = Blueprint("admin", __name__, url_prefix="/api/admin")
require_authentication(blueprint)


@blueprint.get("/actors")
@require_roles("admin")
@document_response(ActorsOut, 200)
@document_response(ErrorOut, 403)
async def actors() -> dict:
    """The supervision tree: each actor's path, state, restarts, last error and, for room
    actors, subscribers, stream position and lag behind the database (admin only)."""
    node = current_node()
    return {"stream_backend": node.streams.name, "tree": await node.actors.snapshot()}


@blueprint.get("/stats")
@require_roles("admin")
@document_response(StatsOut, 200)
@document_response(ErrorOut, 403)
async def stats() -> dict:
    """Live figures (admin only): connections, distinct users online, subscriptions, rooms with a live
    actor, and messages and deliveries per second over the last 10 s and 1 min; for this node (`node`),
    each live node sharing its Redis (`nodes`) and their sum (`total`). Figures are node-wide, across
    tenants. With Redis unreachable: this node's figures, `total` null and `cluster` "unavailable"."""
    return await admin_stats(current_node())
@blueprint.get("/users")
@require_roles("admin")
@validate_querystring(AdminUsersQuery)
@document_response(AdminUserPage, 200)
@document_response(ErrorOut, 400)
@document_response(ErrorOut, 403)
async def list_users(query_args: AdminUsersQuery) -> dict:
    """The users of the caller's tenant by id, disabled ones too (admin only): `q` matches a part of
    the username or display name in any case; `role` and `active` filter."""
    items, next_after = await admin_users.list_users(
        current_node(), current_user().tenant, query=query_args.q, role=query_args.role, active=query_args.active,
        after_id=decode_cursor(query_args.cursor), limit=query_args.limit)
    return {"items": items, "next_cursor": encode_cursor(next_after) if next_after is not None else None}


@blueprint.get("/users/<id:user_id>")
@require_roles("admin")
@document_response(AdminUserOut, 200)
@document_response(ErrorOut, 403)
@document_response(ErrorOut, 404)
async def get_user(user_id: int) -> dict:
    """One user of the caller's tenant as the admin tools show it (admin only)."""
    return await admin_users.get_user(current_node(), current_user().tenant, user_id)


@blueprint.post("/users/<id:user_id>/disable")
@require_roles("admin")
@document_response(AdminUserOut, 200)
@document_response(ErrorOut, 400)
@document_response(ErrorOut, 403)
@document_response(ErrorOut, 404)
async def disable(user_id: int) -> dict:
    """Disable a user: logins and every token refused (401), its open /ws sessions closed with 1008
    on every node within a second. Not yourself (400)."""
    caller = current_user()
    return await admin_users.disable_user(current_node(), caller.tenant, user_id, by=caller.id)


@blueprint.post("/users/<id:user_id>/enable")
@require_roles("admin")
@document_response(AdminUserOut, 200)
@document_response(ErrorOut, 403)
@document_response(ErrorOut, 404)
async def enable(user_id: int) -> dict:
    """Enable a user again: it logs in anew (the tokens it had stay revoked)."""
    return await admin_users.enable_user(current_node(), current_user().tenant, user_id)


@blueprint.post("/users/<id:user_id>/revoke-tokens")
@require_roles("admin")
@document_response(AdminUserOut, 200)
@document_response(ErrorOut, 403)
@document_response(ErrorOut, 404)
async def revoke_tokens(user_id: int) -> dict:
    """Refuse every token issued to the user until now (401) and close its open /ws sessions with 1008
    on every node within a second; tokens issued afterwards (a new login) work."""
    return await admin_users.revoke_tokens(current_node(), current_user().tenant, user_id)


@blueprint.post("/users/<id:user_id>/password")
@require_roles("admin")
@validate_request(PasswordResetIn)
@document_response(AdminUserOut, 200)
@document_response(ErrorOut, 400)
@document_response(ErrorOut, 403)
@document_response(ErrorOut, 404)
async def reset_password(user_id: int, data: PasswordResetIn) -> dict:
    """Set a user's password; unless `revoke_tokens` is false, its tokens and sessions end as with revoke-tokens."""
    return await admin_users.reset_password(current_node(), current_user().tenant, user_id, data.password,
                                            revoke=data.revoke_tokens)
