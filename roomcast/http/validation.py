"""Request bodies read as JSON and checked against their pydantic models, and answers that need no conversion.

quart_schema's `validate_request` builds a pydantic TypeAdapter for the model on every request,
and its `make_response` another for every dict answered: together about a third of a
millisecond per request, on the hottest path there is (REST sends). Here each model's adapter
is built once, and the answers our views give (dicts and lists from `wire`, strings, bytes,
Responses; with a status, not headers) skip the conversion, which would hand them back unchanged. The OpenAPI document
still sees the models: the view is marked as quart_schema marks it.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from functools import wraps
from typing import TypeVar

from pydantic import TypeAdapter
from pydantic import ValidationError as PydanticValidationError
from quart import Quart, Response, request
from quart.typing import ResponseReturnValue, ResponseTypes
from quart_schema import RequestSchemaValidationError
from quart_schema.validation import QUART_SCHEMA_REQUEST_ATTRIBUTE, DataSource
from werkzeug.exceptions import HTTPException
from werkzeug.http import parse_options_header

from ..errors import BadRequest
from ..wire import JsonValue

F = TypeVar("F", bound=Callable[..., Awaitable[object]])
M = TypeVar("M")
_PLAIN = (dict, list, str, bytes, Response)


def json_value(data: bytes) -> JsonValue:
    """A request body read as JSON: PROTOCOL's 400 for one that is not UTF-8, malformed, or nested too deeply."""
    try:
        return json.loads(data.decode())  # strict UTF-8 first: json.loads would guess UTF-16 or -32 from bytes
    except UnicodeDecodeError:
        raise BadRequest("malformed JSON body: not UTF-8", code="malformed_json") from None
    except RecursionError:  # the parser recurses per level; it gives up long before the stack does
        raise BadRequest("the JSON body is nested too deeply") from None
    except ValueError as error:
        raise BadRequest(f"malformed JSON body: {error}", code="malformed_json") from None


def is_json(content_type: str) -> bool:
    """Whether a Content-Type names JSON, as Quart decides it (a body of any other type reads as null)."""
    mimetype = parse_options_header(content_type)[0].lower()
    return mimetype == "application/json" or (mimetype.startswith("application/") and mimetype.endswith("+json"))


_ADAPTERS: dict[type[object], TypeAdapter[object]] = {}


def _adapter(model_class: type[object]) -> TypeAdapter[object]:
    adapter = _ADAPTERS.get(model_class)
    if adapter is None:
        adapter = _ADAPTERS[model_class] = TypeAdapter(model_class)
    return adapter


def as_model(model_class: type[M], value: JsonValue) -> M:
    """A request's JSON value as `model_class`; RequestSchemaValidationError (400) if it does not fit."""
    try:
        return _adapter(model_class).validate_python(value)  # type: ignore[return-value]  # an M, by its adapter
    except (TypeError, ValueError, PydanticValidationError) as error:  # as quart_schema's model_load
        raise RequestSchemaValidationError(error) from None


def validate_request(model_class: type[object]) -> Callable[[F], F]:
    """The JSON body as `model_class`, passed to the view as `data`; 400 (validation error) otherwise."""
    _adapter(model_class)  # built now, not on the first request

    def decorate(view: F) -> F:
        setattr(view, QUART_SCHEMA_REQUEST_ATTRIBUTE, (model_class, DataSource.JSON))

        @wraps(view)
        async def validated(*args: object, **kwargs: object) -> object:
            data = as_model(model_class, await request.get_json())
            return await view(*args, data=data, **kwargs)

        return validated  # type: ignore[return-value]

    return decorate


def answer_plain_values_directly(app: Quart) -> None:
    """Skip quart_schema's conversion of an answer whose value is already plain (call after QuartSchema)."""
    converting = app.make_response  # quart_schema's wrapper around Quart's own
    plain = type(app).make_response.__get__(app)

    async def make_response(result: ResponseReturnValue | HTTPException) -> ResponseTypes:
        if isinstance(result, tuple):
            value, rest = result[0], result[1:]
            simple = isinstance(value, _PLAIN) and all(isinstance(part, int) for part in rest)
        else:
            simple = isinstance(result, _PLAIN)
        return await (plain if simple else converting)(result)

    app.make_response = make_response  # type: ignore[method-assign]
