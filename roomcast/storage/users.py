"""User queries. Each takes a Session and runs inside Database.read/write."""

from __future__ import annotations

from collections.abc import Collection
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from ..errors import Conflict
from .models import User


def create_user(session: Session, *, tenant: str, username: str, role: str,
                display_name: str | None = None, password_hash: str | None = None) -> User:
    """Insert a user; a taken (tenant, username) raises Conflict."""
    user = User(tenant=tenant, username=username, role=role, display_name=display_name or username,
                password_hash=password_hash, is_active=True)
    session.add(user)
    try:
        with session.begin_nested():
            session.flush()
    except IntegrityError:
        raise Conflict(f"username {username!r} is taken in tenant {tenant!r}") from None
    return user


def get_user(session: Session, user_id: int) -> User | None:
    return session.get(User, user_id)


def access_states(session: Session, user_ids: Collection[int]) -> dict[int, tuple[bool, datetime | None]]:
    """(is_active, tokens_valid_after) of each of these users that exists, by id (one query)."""
    if not user_ids:
        return {}
    rows = session.execute(select(User.id, User.is_active, User.tokens_valid_after).where(User.id.in_(list(user_ids))))
    return {user_id: (active, valid_after) for user_id, active, valid_after in rows}


def get_tenant_user(session: Session, tenant: str, user_id: int) -> User | None:
    """The user with that id if it is in `tenant`: other tenants' users do not exist here."""
    user = session.get(User, user_id)
    return user if user is not None and user.tenant == tenant else None


def find_user(session: Session, tenant: str, username: str) -> User | None:
    return session.scalars(select(User).where(User.tenant == tenant, User.username == username)).first()


def list_contacts(session: Session, *, tenant: str, caller_id: int, roles: Collection[str],
                  after_id: int, limit: int) -> list[User]:
    """Active users of the tenant with one of `roles`, never the caller, by id after `after_id`."""
    if not roles:
        return []
    query = (
        select(User)
        .where(User.tenant == tenant, User.id != caller_id, User.id > after_id,
               User.role.in_(sorted(roles)), User.is_active.is_(True))
        .order_by(User.id)
        .limit(limit)
    )
    return list(session.scalars(query))


def user_badges(session: Session, tenant: str, user_ids: Collection[int]) -> list[dict[str, object]]:
    """{id, username, display_name} of these users of `tenant`, by id (one query)."""
    if not user_ids:
        return []
    rows = session.execute(
        select(User.id, User.username, User.display_name)
        .where(User.tenant == tenant, User.id.in_(list(user_ids)))
        .order_by(User.id)
    )
    return [{"id": user_id, "username": username, "display_name": name} for user_id, username, name in rows]


def get_tenant_users(session: Session, tenant: str, user_ids: Collection[int]) -> list[User]:
    """These users of `tenant`, by id (one query); ids of other tenants are left out."""
    if not user_ids:
        return []
    return list(session.scalars(select(User).where(User.tenant == tenant, User.id.in_(list(user_ids)))
                                .order_by(User.id)))
