"""/docs: a self-contained page over /openapi.json, so the API docs work without Internet access."""

from __future__ import annotations

from quart import Blueprint, Response
from quart_schema import hide

from ..static import StaticAssets

blueprint = Blueprint("docs", __name__)

_ASSETS = StaticAssets(
    "docs", "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; img-src 'self'")


@blueprint.get("/docs")
@hide
async def docs_page() -> Response:
    """The API reference, rendered in the browser from /openapi.json."""
    return _ASSETS.response("index.html")


@blueprint.get("/docs/<name>")
@hide
async def docs_asset(name: str) -> Response:
    return _ASSETS.response(name)
