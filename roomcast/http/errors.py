"""PROTOCOL §1's error envelope for every error the app can produce."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

from quart import Quart, Response, jsonify
from quart_schema import RequestSchemaValidationError
from werkzeug.exceptions import HTTPException

from ..errors import ApiError, envelope
from ..wire import JsonObject

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


SCHEMA_MISMATCH = "the request does not match the expected shape"


@dataclass(frozen=True, slots=True)
class ErrorAnswer:
    """An error as any transport answers it: status, PROTOCOL §1's envelope, extra headers."""

    status: int
    body: JsonObject
    headers: dict[str, str]


def error_answer(error: Exception) -> ErrorAnswer:
    """What a request that raised `error` in a view is answered: the Quart app's handlers and the
    fast sends (fast_sends.py) both answer this way. An error that is no ApiError is logged: a bug."""
    if isinstance(error, ApiError):
        # A dependency that is down (DependencyUnavailable: the database, the stream backend) is an
        # ApiError too: 503 `unavailable`, logged once per outage by its gateway, not per request.
        return ErrorAnswer(error.status, error.envelope(), error.headers)
    if isinstance(error, RequestSchemaValidationError):
        return ErrorAnswer(400, envelope("validation_error", SCHEMA_MISMATCH, _validation_details(error)), {})
    log.exception("unhandled error", exc_info=error)
    return ErrorAnswer(500, envelope("internal_error", "internal server error"), {})


def error_response(status: int, code: str, message: str, details: dict[str, Any] | None = None,
                   headers: dict[str, str] | None = None) -> Response:
    return _response(ErrorAnswer(status, envelope(code, message, details), headers or {}))


def _response(answer: ErrorAnswer) -> Response:
    response = jsonify(answer.body)
    response.status_code = answer.status
    response.headers.update(answer.headers)
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
    @app.errorhandler(ApiError)
    async def _api_error(error: ApiError) -> Response:
        return _response(error_answer(error))

    @app.errorhandler(RequestSchemaValidationError)
    async def _schema_error(error: RequestSchemaValidationError) -> Response:
        return _response(error_answer(error))

    @app.errorhandler(HTTPException)
    async def _http_error(error: HTTPException) -> Response:
        status = error.code or 500
        methods = getattr(error, "valid_methods", None)  # set on MethodNotAllowed only
        headers = {"Allow": ", ".join(methods)} if methods else None
        message = (error.description or error.name or "error").strip()
        return error_response(status, _CODES.get(status, "error"), message, headers=headers)

    @app.errorhandler(Exception)
    async def _unexpected(error: Exception) -> Response:
        return _response(error_answer(error))
