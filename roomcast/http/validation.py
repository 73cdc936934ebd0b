"""Request bodies checked against their pydantic models, and answers that need no conversion.

quart_schema's `validate_request` builds a pydantic TypeAdapter for the model on every request,
and its `make_response` another for every dict answered: together about a third of a
millisecond per request, on the hottest path there is (REST sends). Here each model's adapter
is built once, and the answers our views give (dicts and lists from `wire`, strings, bytes,
Responses; with a status, not headers) skip the conversion, which would hand them back unchanged. The OpenAPI document
still sees the models: the view is marked as quart_schema marks it.
"""

from __future__ import annotations

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

F = TypeVar("F", bound=Callable[..., Awaitable[object]])
_PLAIN = (dict, list, str, bytes, Response)


def validate_request(model_class: type[object]) -> Callable[[F], F]:
    """The JSON body as `model_class`, passed to the view as `data`; 400 (validation error) otherwise."""
    adapter: TypeAdapter[object] = TypeAdapter(model_class)

    def decorate(view: F) -> F:
        setattr(view, QUART_SCHEMA_REQUEST_ATTRIBUTE, (model_class, DataSource.JSON))

        @wraps(view)
        async def validated(*args: object, **kwargs: object) -> object:
            try:
                data = adapter.validate_python(await request.get_json())
            except (TypeError, ValueError, PydanticValidationError) as error:  # as quart_schema's model_load
                raise RequestSchemaValidationError(error) from None
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
