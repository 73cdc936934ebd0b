"""Request authentication: every /api route needs a bearer token unless marked public."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from functools import wraps
from typing import Any, TypeVar

from quart import Blueprint, Quart, current_app, g, request

from ..errors import Forbidden
from ..identity.authenticate import bearer_token, user_for_token
from ..node import Node
from ..services.users import UserSnapshot
from .context import current_node

F = TypeVar("F", bound=Callable[..., Awaitable[Any]])

_PUBLIC_ATTR = "_roomcast_public"
_ROLES_ATTR = "_roomcast_roles"
_AUTHENTICATED_ATTR = "_roomcast_authenticated"


def public(view: F) -> F:
    """Mark a view as reachable without a token (login)."""
    setattr(view, _PUBLIC_ATTR, True)
    return view


def require_authentication(blueprint: Blueprint) -> None:
    """Authenticate every request to `blueprint` before its view runs."""
    setattr(blueprint, _AUTHENTICATED_ATTR, True)

    @blueprint.before_request
    async def _authenticate() -> None:
        view = current_app.view_functions.get(request.endpoint or "")
        if view is not None and getattr(view, _PUBLIC_ATTR, False):
            return
        g.user = await user_for_authorization(current_node(), request.headers.get("Authorization"))


async def user_for_authorization(node: Node, authorization: str | None) -> UserSnapshot:
    """The caller named by a request's Authorization header (Unauthorized otherwise), for the app and
    the fast sends (fast_sends.py) alike."""
    return await user_for_token(node.database, node.tokens, bearer_token(authorization), node.user_cache)


def needs_token(app: Quart, endpoint: str) -> bool:
    """Whether requests to `endpoint` must carry a bearer token (for the OpenAPI document)."""
    blueprint = app.blueprints.get(endpoint.rpartition(".")[0])
    view = app.view_functions[endpoint]
    return getattr(blueprint, _AUTHENTICATED_ATTR, False) and not getattr(view, _PUBLIC_ATTR, False)


def needs_role(app: Quart, endpoint: str) -> bool:
    """Whether `endpoint` is for some roles only (`require_roles`), so it may answer 403 (for the OpenAPI document)."""
    return bool(getattr(app.view_functions[endpoint], _ROLES_ATTR, ()))


def current_user() -> UserSnapshot:
    """The authenticated caller of this request."""
    return g.user


def require_roles(*roles: str) -> Callable[[F], F]:
    """Allow a view only to callers with one of `roles` (403 otherwise)."""

    def decorate(view: F) -> F:
        @wraps(view)
        async def guarded(*args: Any, **kwargs: Any) -> Any:
            if current_user().role not in roles:
                raise Forbidden(f"only {' or '.join(roles)} users may do this")
            return await view(*args, **kwargs)

        setattr(guarded, _ROLES_ATTR, roles)  # decorators above copy it on (functools.wraps)
        return guarded  # type: ignore[return-value]

    return decorate
