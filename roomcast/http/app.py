"""The Quart-Trio app factory: REST blueprints, OpenAPI docs, the web client, error envelopes."""

from __future__ import annotations

from typing import Any

from quart import Response, request
from quart_cors import cors
from quart_schema import HttpSecurityScheme, Info, QuartSchema
from quart_trio.wrappers.request import TrioRequest

from .. import __version__
from ..node import Node
from ..services.monitoring import monitor
from .access import AccessLog, install_route_recorder
from .context import RoomcastApp
from .errors import install_error_handlers
from .framing import RequestFraming
from .ids import install_id_converter
from .openapi import RoomcastOpenAPIProvider
from .peer import ForwardedHeaders, TrustedProxies
from .routes import (
    admin,
    attachments,
    auth,
    bots,
    client,
    config,
    docs,
    health,
    messages,
    metrics,
    publish,
    rooms,
    users,
    webhooks,
)
from .validation import answer_plain_values_directly, is_json, json_value

_CORS_HEADERS = ["Authorization", "Content-Type"]
_CORS_METHODS = ["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE"]

# On every answer, the fast sends' too (fast_sends.py).
SECURITY_HEADERS = {
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "X-Frame-Options": "DENY",
}


class RoomcastRequest(TrioRequest):
    """Turns unreadable JSON bodies (not UTF-8, malformed, nested too deeply) into PROTOCOL's 400 instead of a crash."""

    async def get_json(self, force: bool = False, silent: bool = False, cache: bool = True) -> Any:
        # Not JSON by its Content-Type: None, as Quart answers. `silent` is never asked for here.
        if not (force or is_json(self.content_type or "")):
            return None
        return json_value(await self.get_data(cache, False, False))


def create_app(node: Node) -> RoomcastApp:
    """Build the app that serves `node` over REST."""
    app = RoomcastApp("roomcast")
    app.node = node
    app.request_class = RoomcastRequest
    app.config["MAX_CONTENT_LENGTH"] = node.settings.max_request_bytes
    app.streamed_routes = attachments.streamed_routes(node.settings)  # uploads: their own body limit

    QuartSchema(
        app,
        info=Info(title="roomcast", version=__version__),
        security_schemes={"bearer": HttpSecurityScheme(scheme="bearer", bearer_format="JWT")},
        security=[{"bearer": []}],
        redoc_ui_path=None,
        scalar_ui_path=None,
        swagger_ui_path=None,  # its page loads from a CDN; routes/docs.py serves one that works offline
        openapi_provider_class=RoomcastOpenAPIProvider,
    )
    # After QuartSchema, which installs its own JSON provider: keep field order and raw UTF-8.
    app.json.ensure_ascii = False  # type: ignore[attr-defined]
    app.json.sort_keys = False  # type: ignore[attr-defined]
    answer_plain_values_directly(app)
    install_error_handlers(app)
    install_id_converter(app)
    install_route_recorder(app)

    for module in (health, metrics, auth, users, config, rooms, messages, attachments, publish, admin, webhooks, bots,
                   docs, client):
        app.register_blueprint(module.blueprint)

    metrics.count_requests(app, node.metrics)
    monitor(node)  # the node's collectors and its `stats` actor, sampling from the start

    @app.before_request
    async def _preflight() -> Response | None:
        # A CORS preflight carries no token: answered here, before any blueprint authenticates.
        if request.method == "OPTIONS" and request.path.startswith("/api/"):
            return Response(b"", status=204)
        return None

    if node.settings.allowed_origins:  # none: same origin only, no CORS headers at all
        cors(app, allow_origin=node.settings.allowed_origins, allow_headers=_CORS_HEADERS,
             allow_methods=_CORS_METHODS, expose_headers=["Retry-After"], max_age=600)

    @app.after_request
    async def _security_headers(response: Response) -> Response:
        for name, value in SECURITY_HEADERS.items():
            response.headers.setdefault(name, value)
        return response

    # Keep-alive that survives answers given before the request body arrived (framing.py).
    # RequestFraming speaks generic ASGI (MutableMapping scopes and messages), Quart declares Hypercorn's precise types.
    app.asgi_app = RequestFraming(  # type: ignore[method-assign, assignment]
        app.asgi_app, node.settings.max_request_bytes)  # type: ignore[arg-type]
    # Around the access log: every layer below, the access log included, sees the client as
    # trusted_proxies resolve it.
    app.asgi_app = AccessLog(app.asgi_app, node.settings.access_log)  # type: ignore[method-assign, assignment, arg-type]
    app.asgi_app = ForwardedHeaders(  # type: ignore[method-assign, assignment]
        app.asgi_app, TrustedProxies(node.settings.trusted_proxies))  # type: ignore[arg-type]
    return app


