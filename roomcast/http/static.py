"""Files shipped in the roomcast.http package (the browser client, the API docs page), served as they are."""

from __future__ import annotations

from collections.abc import Mapping
from importlib.resources import files

from quart import Response

from ..errors import NotFound

CONTENT_TYPES = {".html": "text/html; charset=utf-8", ".js": "text/javascript; charset=utf-8",
                 ".css": "text/css; charset=utf-8", ".svg": "image/svg+xml",
                 ".ts": "text/plain; charset=utf-8"}  # TypeScript declarations, read by tools, never run


def _suffix(name: str) -> str:
    return name[name.rfind("."):] if "." in name else ""


class StaticAssets:
    """The files of one folder of roomcast.http that have a known content type, all served under one CSP."""

    def __init__(self, folder: str, csp: str, extra_headers: Mapping[str, str] | None = None) -> None:
        # Read once, at import: serving them must not touch the disk from the event loop.
        self._files = {entry.name: (entry.read_bytes(), CONTENT_TYPES[_suffix(entry.name)])
                       for entry in (files("roomcast.http") / folder).iterdir()
                       if entry.is_file() and _suffix(entry.name) in CONTENT_TYPES}
        self._headers = {"Content-Security-Policy": csp, **(extra_headers or {})}

    def response(self, name: str) -> Response:
        """The file `name` with its content type and headers; NotFound (404) for any name not in the folder."""
        if name not in self._files:
            raise NotFound("no such file")
        body, content_type = self._files[name]
        response = Response(body, content_type=content_type)
        for header, value in self._headers.items():
            response.headers[header] = value
        return response
