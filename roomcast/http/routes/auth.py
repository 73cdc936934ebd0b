"""Login: username and password for an access token."""

from __future__ import annotations

from quart import Blueprint, request
from quart_schema import document_response

from ...services.users import check_login
from ..auth import public, require_authentication
from ..context import current_node
from ..schemas import ErrorOut, LoginIn, TokenOut
from ..validation import validate_request

blueprint = Blueprint("auth", __name__, url_prefix="/api/auth")
require_authentication(blueprint)


@blueprint.post("/login")
@public
@validate_request(LoginIn)
@document_response(TokenOut, 200)
@document_response(ErrorOut, 400)
@document_response(ErrorOut, 401)
@document_response(ErrorOut, 429)
async def login(data: LoginIn) -> tuple[dict, int]:
    """Exchange a username and password for a bearer token.

    Failed attempts are counted per username and per client address: beyond
    `login_failures_per_username` or `login_failures_per_address`, 429 with `Retry-After`.
    """
    node = current_node()
    # remote_addr: the client as trusted_proxies resolve it (peer.ForwardedHeaders)
    user = await check_login(node, data.tenant, data.username, data.password, request.remote_addr)
    token = node.tokens.mint(user.id)
    return {"access_token": token, "token_type": "bearer", "expires_in": node.tokens.ttl_s}, 200
