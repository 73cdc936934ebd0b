"""The browser client: static ES modules and CSS served at `/` and `/client/<name>`, no build step.

Every response carries a strict Content-Security-Policy: scripts and styles only from this
origin (no inline code), WebSocket connections only back to it, no framing. The client renders
user text with `textContent`, and the CSP is the second line of defence if that ever slips.
"""

from __future__ import annotations

from importlib.resources import files

from quart import Blueprint, Response
from quart_schema import hide

from ...errors import NotFound

blueprint = Blueprint("client", __name__)

CSP = ("default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
       "connect-src 'self' ws: wss:; object-src 'none'; base-uri 'none'; frame-ancestors 'none'; "
       "form-action 'self'")
_TYPES = {".html": "text/html; charset=utf-8", ".js": "text/javascript; charset=utf-8",
          ".css": "text/css; charset=utf-8", ".svg": "image/svg+xml"}


def _load_assets() -> dict[str, bytes]:
    # Read once at import: serving them must not touch the disk from the event loop.
    folder = files("roomcast.http") / "client"
    return {entry.name: entry.read_bytes() for entry in folder.iterdir()
            if entry.is_file() and entry.name[entry.name.rfind("."):] in _TYPES}


_ASSETS = _load_assets()


def _asset(name: str) -> Response:
    if name not in _ASSETS:
        raise NotFound("no such file")
    response = Response(_ASSETS[name], content_type=_TYPES[name[name.rindex("."):]])
    response.headers["Content-Security-Policy"] = CSP
    response.headers["X-Content-Type-Options"] = "nosniff"
    # The page is tiny and versioned with the server; revalidate so an upgrade shows at once.
    response.headers["Cache-Control"] = "no-cache"
    return response


@blueprint.get("/")
@hide
async def index() -> Response:
    """The chat client's page."""
    return _asset("index.html")


@blueprint.get("/client/<name>")
@hide
async def client_asset(name: str) -> Response:
    return _asset(name)
