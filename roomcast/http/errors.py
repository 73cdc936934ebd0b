"""PROTOCOL §1's error envelope for every error the app can produce."""

from __future__ import annotations

import logging
from typing import Any

from quart import Quart, Response, jsonify
from quart_schema import RequestSchemaValidationError
from werkzeug.exceptions import HTTPException

from ..errors import ApiError

log = logging.getLogger("roomcast.http")

_CODES = {
    400: "validation_error",
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    408: "request_timeout",
    409: "conflict",
    413: "too_large",
    415: "unsupported_type",
    429: "rate_limited",
    503: "unavailable",
}


def error_response(status: int, code: str, message: str, details: dict[str, Any] | None = None,
                   headers: dict[str, str] | None = None) -> Response:
    error: dict[str, Any] = {"code": code, "message": message}
    if details:
        error["details"] = details
    response = jsonify({"error": error})
    response.status_code = status
    response.headers.update(headers or {})
    return response


def _validation_details(error: RequestSchemaValidationError) -> dict[str, Any]:
    cause = error.validation_error
    if hasattr(cause, "errors"):
        fields = [
            {"field": ".".join(str(part) for part in item["loc"]), "problem": item["msg"]}
            for item in cause.errors(include_url=False, include_input=False)
        ]
        return {"fields": fields}
    return {"problem": str(cause)}


def install_error_handlers(app: Quart) -> None:
    # A dependency that is down (DependencyUnavailable: the database, the stream backend) is an
    # ApiError too: 503 `unavailable`, logged once per outage by its gateway, not per request.
    @app.errorhandler(ApiError)
    async def _api_error(error: ApiError) -> Response:
        return error_response(error.status, error.code, error.message, error.details, error.headers)

    @app.errorhandler(RequestSchemaValidationError)
    async def _schema_error(error: RequestSchemaValidationError) -> Response:
        return error_response(400, "validation_error", "the request does not match the expected shape",
                              _validation_details(error))

    @app.errorhandler(HTTPException)
    async def _http_error(error: HTTPException) -> Response:
        status = error.code or 500
        methods = getattr(error, "valid_methods", None)  # set on MethodNotAllowed only
        headers = {"Allow": ", ".join(methods)} if methods else None
        message = (error.description or error.name or "error").strip()
        return error_response(status, _CODES.get(status, "error"), message, headers=headers)

    @app.errorhandler(Exception)
    async def _unexpected(error: Exception) -> Response:
        log.exception("unhandled error", exc_info=error)
        return error_response(500, "internal_error", "internal server error")
