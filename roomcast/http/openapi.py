"""quart-schema's OpenAPI generation, completed: bodiless responses (204), required request
bodies, the id range of path parameters, and the errors any operation of its kind may answer
whatever its view: 401 where a token is needed (and no security where none is), 403 where only
some roles may call, 400 where there is a body or a query to check, 413 for a body over
`max_request_bytes`, and 503 while a dependency is down."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from quart_schema import document_response
from quart_schema.openapi import OpenAPIProvider
from werkzeug.routing import BaseConverter, Rule

from ..wire import MAX_ID
from .auth import needs_role, needs_token
from .ids import IdConverter
from .schemas import ErrorOut


class RoomcastOpenAPIProvider(OpenAPIProvider):
    def build_paths(self, rule: Rule) -> tuple[dict, dict]:
        paths, components = super().build_paths(rule)
        authenticated = needs_token(self._app, rule.endpoint)  # type: ignore[arg-type]
        restricted = needs_role(self._app, rule.endpoint)  # type: ignore[arg-type]
        error, error_components = self.build_response_object(ErrorOut, None)
        components.update(error_components)
        for operations in paths.values():
            for operation in operations.values():
                responses = operation["responses"]
                for status in _errors_of(operation, authenticated, restricted):
                    responses.setdefault(status, error)
                if not authenticated:
                    operation["security"] = []  # the document's default asks for a bearer token
        return paths, components

    def build_request_body(self, model: Any, source: Any) -> tuple[dict[str, Any], dict[str, Any]]:
        # Every body roomcast validates is required: a request without one is a 400.
        body, components = super().build_request_body(model, source)
        return {**body, "required": True}, components

    def build_path_parameter(self, name: str, converter: BaseConverter) -> dict[str, Any]:
        parameter = super().build_path_parameter(name, converter)
        if isinstance(converter, IdConverter):
            parameter["schema"] = {"type": "integer", "minimum": 1, "maximum": MAX_ID}
        return parameter

    def build_response_object(self, model: Any, headers_model: Any) -> tuple[dict[str, Any], dict[str, Any]]:
        if model is None:
            return {"description": "No Content"}, {}
        if model is FileBytes:
            return {"description": FileBytes.__doc__, "content": {
                "*/*": {"schema": {"type": "string", "format": "binary"}}}}, {}
        return super().build_response_object(model, headers_model)


def _errors_of(operation: dict[str, Any], authenticated: bool, restricted: bool) -> list[str]:
    """The error statuses an operation may answer by its kind alone (its view adds its own)."""
    checked = "requestBody" in operation or any(p.get("in") == "query" for p in operation.get("parameters", []))
    return [status for status, applies in (
        ("400", checked),  # PROTOCOL §1's validation_error
        ("401", authenticated),
        ("403", restricted),  # the caller's role may not
        ("413", "requestBody" in operation),  # over max_request_bytes, refused before it is read
        ("503", True),  # the database (or the stream backend) is down: wait and retry
    ) if applies]


def documents_no_content() -> Callable[[Any], Any]:
    """Document a 204 response, which has no body."""
    return document_response(None, 204)


class FileBytes:
    """The file's bytes, with the Content-Type found when it was uploaded."""


def documents_file_bytes() -> Callable[[Any], Any]:
    """Document a 200 response whose body is a file's bytes, not JSON."""
    return document_response(FileBytes, 200)
