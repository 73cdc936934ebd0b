"""Users: the caller, user lookup and creation, and the caller's contacts (PROTOCOL §2)."""

from __future__ import annotations

from quart import Blueprint
from quart_schema import document_response, validate_querystring

from ...services import users
from ...services.presence import users_with_presence
from ..auth import current_user, require_authentication, require_roles
from ..context import current_node
from ..pagination import decode_cursor, encode_cursor
from ..schemas import ContactsQuery, CreateUserIn, ErrorOut, UserOut, UserPage
from ..validation import validate_request

blueprint = Blueprint("users", __name__, url_prefix="/api")
require_authentication(blueprint)


@blueprint.get("/me")
@document_response(UserOut, 200)
@document_response(ErrorOut, 401)
async def me() -> dict:
    """The authenticated user."""
    return (await users_with_presence(current_node(), [current_user()]))[0]


@blueprint.post("/users")
@require_roles("admin", "service")
@validate_request(CreateUserIn)
@document_response(UserOut, 201)
@document_response(ErrorOut, 409)
async def create(data: CreateUserIn) -> tuple[dict, int]:
    """Create a user in the caller's tenant (admin or service)."""
    user = await users.create_user(current_node(), current_user(), username=data.username, role=data.role,
                                   display_name=data.display_name, password=data.password, tenant=data.tenant)
    return user, 201


@blueprint.get("/users/<id:user_id>")
@document_response(UserOut, 200)
@document_response(ErrorOut, 404)
async def get(user_id: int) -> dict:
    """A user of the caller's tenant."""
    return await users.get_user(current_node(), current_user(), user_id)


@blueprint.get("/contacts")
@validate_querystring(ContactsQuery)
@document_response(UserPage, 200)
async def contacts(query_args: ContactsQuery) -> dict:
    """Users the caller may open a direct chat with, by the contact policy."""
    items, next_after = await users.list_contacts(current_node(), current_user(),
                                                  after_id=decode_cursor(query_args.cursor), limit=query_args.limit)
    return {"items": items, "next_cursor": encode_cursor(next_after) if next_after is not None else None}
