"""What a client needs to know about this server's limits before it sends (GET /api/config)."""

from __future__ import annotations

from quart import Blueprint
from quart_schema import document_response

from ..auth import require_authentication
from ..context import current_node
from ..schemas import ClientConfigOut, ErrorOut

blueprint = Blueprint("config", __name__, url_prefix="/api")
require_authentication(blueprint)


@blueprint.get("/config")
@document_response(ClientConfigOut, 200)
@document_response(ErrorOut, 401)
async def client_config() -> dict:
    """Limits a client checks before sending: message length, upload size and accepted upload types.

    The server enforces them anyway (400, 413, 415); knowing them lets a client explain a refusal
    before the bytes go out.
    """
    settings = current_node().settings
    return {"max_body_chars": settings.max_body_chars, "attachment_max_bytes": settings.attachment_max_bytes,
            "attachment_types": list(settings.attachment_types)}
