"""/docs: a self-contained page over /openapi.json, so the API docs work without Internet access."""

from __future__ import annotations

from importlib.resources import files

from quart import Blueprint, Response
from quart_schema import hide

from ...errors import NotFound

blueprint = Blueprint("docs", __name__)

# Read once at import: serving them must not touch the disk from the event loop.
_ASSETS = {name: (files("roomcast.http") / "docs" / name).read_bytes()
           for name in ("index.html", "docs.js", "docs.css")}
_TYPES = {".html": "text/html; charset=utf-8", ".js": "text/javascript; charset=utf-8",
          ".css": "text/css; charset=utf-8"}
_CSP = "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; img-src 'self'"


def _asset(name: str) -> Response:
    if name not in _ASSETS:
        raise NotFound("no such file")
    response = Response(_ASSETS[name], content_type=_TYPES[name[name.rindex("."):]])
    response.headers["Content-Security-Policy"] = _CSP
    return response


@blueprint.get("/docs")
@hide
async def docs_page() -> Response:
    """The API reference, rendered in the browser from /openapi.json."""
    return _asset("index.html")


@blueprint.get("/docs/<name>")
@hide
async def docs_asset(name: str) -> Response:
    return _asset(name)
