"""/docs: the REST reference (a self-contained page over /openapi.json) and the project's written docs
(docs/*.md, with the /ws protocol), so both work without Internet access."""

from __future__ import annotations

from quart import Blueprint, Response
from quart_schema import hide

from ..guides import render_guides
from ..static import StaticAssets

blueprint = Blueprint("docs", __name__)

_ASSETS = StaticAssets(
    "docs", "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; img-src 'self'")
# Rendered once, at import: serving them must not touch the disk from the event loop.
_GUIDES = render_guides()
_GUIDE_CSP = "default-src 'none'; style-src 'self'; img-src 'self'; base-uri 'none'; form-action 'none'"


@blueprint.get("/docs")
@hide
async def docs_page() -> Response:
    """The API reference, rendered in the browser from /openapi.json."""
    return _ASSETS.response("index.html")


@blueprint.get("/docs/<name>")
@hide
async def docs_asset(name: str) -> Response:
    """A page of docs/ (`/docs/protocol.md`: REST conventions and the /ws protocol), or an asset of /docs."""
    if name in _GUIDES:
        response = Response(_GUIDES[name][1], content_type="text/html; charset=utf-8")
        response.headers["Content-Security-Policy"] = _GUIDE_CSP
        return response
    return _ASSETS.response(name)
