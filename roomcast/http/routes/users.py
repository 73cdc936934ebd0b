"""Users: the caller, user lookup and creation, and the caller's contacts (PROTOCOL §2)."""

from __future__ import annotations

from quart import Blueprint
from quart_schema import document_response, validate_querystring, validate_request

from ...errors import Forbidden, NotFound
from ...identity.passwords import hash_password
from ...services.presence import users_with_presence
from ...storage.users import create_user, get_tenant_user, list_contacts
from ...wire import user_to_wire
from ..auth import current_user, require_authentication, require_roles
from ..context import current_node
from ..pagination import decode_cursor, encode_cursor
from ..schemas import ContactsQuery, CreateUserIn, ErrorOut, UserOut, UserPage

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
    caller = current_user()
    if data.tenant is not None and data.tenant != caller.tenant:
        raise Forbidden("users can only be created in your own tenant")
    if data.role == "admin" and caller.role != "admin":
        raise Forbidden("only an admin may create an admin")
    password_hash = await hash_password(data.password) if data.password else None
    user = await current_node().database.write(
        lambda session: create_user(session, tenant=caller.tenant, username=data.username, role=data.role,
                                    display_name=data.display_name, password_hash=password_hash)
    )
    return user_to_wire(user), 201


@blueprint.get("/users/<id:user_id>")
@document_response(UserOut, 200)
@document_response(ErrorOut, 404)
async def get(user_id: int) -> dict:
    """A user of the caller's tenant."""
    user = await current_node().database.read(get_tenant_user, current_user().tenant, user_id)
    if user is None:
        raise NotFound("no such user")
    return (await users_with_presence(current_node(), [user]))[0]


@blueprint.get("/contacts")
@validate_querystring(ContactsQuery)
@document_response(UserPage, 200)
async def contacts(query_args: ContactsQuery) -> dict:
    """Users the caller may open a direct chat with, by the contact policy."""
    caller = current_user()
    node = current_node()
    after_id = decode_cursor(query_args.cursor)
    users = await node.database.read(
        lambda session: list_contacts(session, tenant=caller.tenant, caller_id=caller.id,
                                      roles=node.contact_policy.contactable_roles(caller.role),
                                      after_id=after_id, limit=query_args.limit + 1)
    )
    page, more = users[: query_args.limit], len(users) > query_args.limit
    items = await users_with_presence(node, page)
    return {"items": items, "next_cursor": encode_cursor(page[-1].id) if more else None}
