"""The browser client: static ES modules and CSS served at `/` and `/client/<name>`, no build step.

Every response carries a strict Content-Security-Policy: scripts and styles only from this
origin (no inline code), WebSocket connections only back to it, no framing. The client renders
user text with `textContent`, and the CSP is the second line of defence if that ever slips.
"""

from __future__ import annotations

from quart import Blueprint, Response
from quart_schema import hide

from ..static import StaticAssets

blueprint = Blueprint("client", __name__)

CSP = ("default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
       "connect-src 'self' ws: wss:; object-src 'none'; base-uri 'none'; frame-ancestors 'none'; "
       "form-action 'self'")
# The page is tiny and versioned with the server; revalidate so an upgrade shows at once.
_ASSETS = StaticAssets("client", CSP, {"X-Content-Type-Options": "nosniff", "Cache-Control": "no-cache"})


@blueprint.get("/")
@hide
async def index() -> Response:
    """The chat client's page."""
    return _ASSETS.response("index.html")


@blueprint.get("/client/<name>")
@hide
async def client_asset(name: str) -> Response:
    return _ASSETS.response(name)
