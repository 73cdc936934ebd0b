"""Login: username and password for an access token."""

from __future__ import annotations

from quart import Blueprint
from quart_schema import document_response, validate_request

from ...services.users import check_login
from ..auth import public, require_authentication
from ..context import current_node
from ..schemas import ErrorOut, LoginIn, TokenOut

blueprint = Blueprint("auth", __name__, url_prefix="/api/auth")
require_authentication(blueprint)


@blueprint.post("/login")
@public
@validate_request(LoginIn)
@document_response(TokenOut, 200)
@document_response(ErrorOut, 401)
async def login(data: LoginIn) -> tuple[dict, int]:
    """Exchange a username and password for a bearer token."""
    node = current_node()
    user = await check_login(node, data.tenant, data.username, data.password)
    token = node.tokens.mint(user.id)
    return {"access_token": token, "token_type": "bearer", "expires_in": node.tokens.ttl_s}, 200
