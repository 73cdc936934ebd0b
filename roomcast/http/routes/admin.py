"""Operators' views (PROTOCOL §6): the live supervision tree and the live stats."""

from __future__ import annotations

from quart import Blueprint
from quart_schema import document_response

from ...services.stats import admin_stats
from ..auth import require_authentication, require_roles
from ..context import current_node
from ..schemas import ActorsOut, ErrorOut, StatsOut

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
