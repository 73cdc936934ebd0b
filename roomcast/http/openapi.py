"""quart-schema's OpenAPI generation, taught to document bodiless responses (204)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from quart_schema import document_response
from quart_schema.openapi import OpenAPIProvider


class RoomcastOpenAPIProvider(OpenAPIProvider):
    def build_response_object(self, model: Any, headers_model: Any) -> tuple[dict[str, Any], dict[str, Any]]:
        if model is None:
            return {"description": "No Content"}, {}
        return super().build_response_object(model, headers_model)


def documents_no_content() -> Callable[[Any], Any]:
    """Document a 204 response, which has no body."""
    return document_response(None, 204)  # type: ignore[arg-type]
