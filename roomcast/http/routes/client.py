"""The browser client: static ES modules and CSS served at `/` and `/client/<name>`, no build step,
and the connection SDK it is built on at `/sdk/roomcast.js` (with `/sdk/roomcast.d.ts`).

Every response carries a strict Content-Security-Policy: scripts and styles only from this
origin (no inline code), WebSocket connections only back to it, images from this origin or
`blob:` (attachments are fetched with the token and shown from blob URLs), no framing. The client
renders user text with `textContent`, and the CSP is the second line of defence if that ever slips.
"""

from __future__ import annotations

from quart import Blueprint, Response
from quart_schema import hide

from ..static import StaticAssets

blueprint = Blueprint("client", __name__)

CSP = ("default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data: blob:; "
       "connect-src 'self' ws: wss:; object-src 'none'; base-uri 'none'; frame-ancestors 'none'; "
       "form-action 'self'")
# The page is tiny and versioned with the server; revalidate so an upgrade shows at once.
_HEADERS = {"X-Content-Type-Options": "nosniff", "Cache-Control": "no-cache"}
_ASSETS = StaticAssets("client", CSP, _HEADERS)
# The SDK is public code that other origins' pages may import as a module, which needs CORS;
# it holds no secret and the browser sends it no credentials.
_SDK = StaticAssets("sdk", CSP, {**_HEADERS, "Access-Control-Allow-Origin": "*"})


@blueprint.get("/")
@hide
async def index() -> Response:
    """The chat client's page."""
    return _ASSETS.response("index.html")


@blueprint.get("/client/<name>")
@hide
async def client_asset(name: str) -> Response:
    return _ASSETS.response(name)


@blueprint.get("/sdk/<name>")
@hide
async def sdk_asset(name: str) -> Response:
    """`roomcast.js` (an ES module) and `roomcast.d.ts` (its TypeScript declarations)."""
    return _SDK.response(name)
