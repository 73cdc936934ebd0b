"""Login: username and password for an access token."""

from __future__ import annotations

from quart import Blueprint
from quart_schema import document_response, validate_request

from ...errors import Unauthorized
from ...identity.passwords import verify_password
from ...storage.users import find_user
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
    tenant = data.tenant or node.settings.default_tenant
    user = await node.database.read(find_user, tenant, data.username)
    matches = await verify_password(user.password_hash if user else None, data.password)
    if user is None or not matches or not user.is_active:
        raise Unauthorized("wrong username or password")
    token = node.tokens.mint(user.id)
    return {"access_token": token, "token_type": "bearer", "expires_in": node.tokens.ttl_s}, 200
