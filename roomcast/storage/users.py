"""User queries. Each takes a Session and runs inside Database.read/write."""

from __future__ import annotations

import sys
from collections.abc import Collection
from dataclasses import dataclass
from datetime import UTC, datetime

from sqlalchemy import func, literal, or_, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from ..errors import Conflict
from .models import User
from .replica import require_replayed


@dataclass(frozen=True, slots=True)
class UserSnapshot:
    """Who a caller is, as a request or a connection holds it: a few slots, not an ORM instance
    (no identity map, no instance state), shared by every request and session of the user on a node."""

    id: int
    tenant: str
    username: str
    display_name: str
    role: str

    @classmethod
    def of(cls, user: User) -> UserSnapshot:
        return cls(user.id, user.tenant, user.username, user.display_name, user.role)


@dataclass(frozen=True, slots=True)
class UserAccess:
    """A user and what admits its tokens (`identity.authenticate.access_refusal`)."""

    user: UserSnapshot
    is_active: bool
    tokens_valid_after: datetime | None  # always aware (UTC)


def user_access(session: Session, user_id: int) -> UserAccess | None:
    """The user with that id and what admits it (one Core query, no ORM instance), or None."""
    row = session.execute(
        select(User.id, User.tenant, User.username, User.display_name, User.role, User.is_active,
               User.tokens_valid_after).where(User.id == user_id)
    ).first()
    if row is None:
        return None
    valid_after = row.tokens_valid_after
    if valid_after is not None and valid_after.tzinfo is None:
        valid_after = valid_after.replace(tzinfo=UTC)  # SQLite hands naive datetimes back
    # Tenants and roles are few: one string each, not one per connection.
    user = UserSnapshot(row.id, sys.intern(row.tenant), row.username, row.display_name, sys.intern(row.role))
    return UserAccess(user, bool(row.is_active), valid_after)


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
    if after_id:  # the page before ended at user `after_id`: a replica must know users up to that id
        require_replayed(session, lambda: (session.scalar(select(func.max(User.id))) or 0) >= after_id)
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


def search_users(session: Session, *, tenant: str, query: str | None, role: str | None, active: bool | None,
                 after_id: int, limit: int) -> list[User]:
    """Users of `tenant` by id after `after_id`: those whose username or display name contains
    `query` (case-insensitive), with `role`, active or not, where given."""
    statement = select(User).where(User.tenant == tenant, User.id > after_id)
    if query:
        # The needle is folded by the database's lower(), as the columns are: Python's folds some
        # letters otherwise (a final 'Σ' to 'ς', 'İ' to 'i̇'), and a name then missed itself.
        escaped = query.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
        pattern = func.lower(literal("%") + escaped + "%")
        statement = statement.where(or_(func.lower(User.username).like(pattern, escape="\\"),
                                        func.lower(User.display_name).like(pattern, escape="\\")))
    if role is not None:
        statement = statement.where(User.role == role)
    if active is not None:
        statement = statement.where(User.is_active.is_(active))
    return list(session.scalars(statement.order_by(User.id).limit(limit)))


def update_access(session: Session, tenant: str, user_id: int, *, is_active: bool | None = None,
                  tokens_valid_after: datetime | None = None, password_hash: str | None = None) -> User | None:
    """Change what admits a user of `tenant` (what is given); None when there is no such user there."""
    user = get_tenant_user(session, tenant, user_id)
    if user is None:
        return None
    if is_active is not None:
        user.is_active = is_active
    if tokens_valid_after is not None:
        user.tokens_valid_after = tokens_valid_after
    if password_hash is not None:
        user.password_hash = password_hash
    session.flush()
    return user
