"""Operators' views (PROTOCOL §6): the live supervision tree."""

from __future__ import annotations

from quart import Blueprint
from quart_schema import document_response

from ..auth import require_authentication, require_roles
from ..context import current_node
from ..schemas import ActorsOut, ErrorOut

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
