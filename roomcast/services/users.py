"""Users: logging in, creating users by the caller's rules, lookups in the caller's tenant, contacts (PROTOCOL §2).

`User` (a stored user) and `UserSnapshot` (who makes a request or holds a connection) are
re-exported here so that http names them without importing storage.
"""

from __future__ import annotations

from sqlalchemy.orm import Session

from ..errors import Forbidden, NotFound, Unauthorized
from ..identity.passwords import hash_password, verify_password
from ..node import Node
from ..storage import users as stored
from ..storage.models import User
from ..storage.users import UserSnapshot
from ..wire import JsonObject, user_to_wire
from .presence import users_with_presence

__all__ = ["User", "UserSnapshot", "check_login", "create_user", "get_user", "list_contacts"]


async def check_login(node: Node, tenant: str | None, username: str, password: str,
                      address: str | None = None) -> User:
    """The active user with these credentials (`tenant` defaults to the server's); Unauthorized otherwise.

    RateLimited, before anything is checked, once this username or the client's `address` has
    failed too often lately (`login_throttle`); every failure counts against both.
    """
    tenant = tenant or node.settings.default_tenant
    await node.login_throttle.check(tenant, username, address)
    user = await node.database.read(stored.find_user, tenant, username)
    # Verified even without a user: timing must not reveal which usernames exist.
    matches = await verify_password(user.password_hash if user else None, password)
    if user is None or not matches or not user.is_active:
        await node.login_throttle.failed(tenant, username, address)
        raise Unauthorized("wrong username or password")
    return user


async def create_user(node: Node, caller: UserSnapshot, *, username: str, role: str, display_name: str | None,
                      password: str | None, tenant: str | None) -> JsonObject:
    """A new user of the caller's tenant, as wire; only an admin creates an admin (Forbidden otherwise)."""
    if tenant is not None and tenant != caller.tenant:
        raise Forbidden("users can only be created in your own tenant")
    if role == "admin" and caller.role != "admin":
        raise Forbidden("only an admin may create an admin")
    password_hash = await hash_password(password) if password else None
    user = await node.database.write(
        lambda session: stored.create_user(session, tenant=caller.tenant, username=username, role=role,
                                           display_name=display_name, password_hash=password_hash)
    )
    return user_to_wire(user)


async def get_user(node: Node, caller: UserSnapshot, user_id: int) -> JsonObject:
    """A user of the caller's tenant with `online`; NotFound for any other id."""
    def work(session: Session) -> User:
        found = stored.get_tenant_user(session, caller.tenant, user_id)
        if found is None:  # raised here, so that a replica that has not seen the user yet asks the primary
            raise NotFound("no such user")
        return found

    user = await node.database.replica_read(work)
    return (await users_with_presence(node, [user]))[0]


async def list_contacts(node: Node, caller: UserSnapshot, *, after_id: int,
                        limit: int) -> tuple[list[JsonObject], int | None]:
    """Up to `limit` users the caller may open a direct chat with (by the contact policy), by id after
    `after_id`, with `online`; and the id to continue after when there are more, else None."""
    users = await node.database.replica_read(
        lambda session: stored.list_contacts(session, tenant=caller.tenant, caller_id=caller.id,
                                             roles=node.contact_policy.contactable_roles(caller.role),
                                             after_id=after_id, limit=limit + 1)
    )
    page, more = users[:limit], len(users) > limit
    return await users_with_presence(node, page), page[-1].id if more else None
