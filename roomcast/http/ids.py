"""Integers from clients, bounded to the database's id range (1..2^63-1) in one place.

Paths take ids through the `id` URL converter: anything out of range names nothing (404),
never a database overflow. Queries and bodies take `Id` and `Seq` (400 out of range).
"""

from __future__ import annotations

from typing import Annotated

from pydantic import Field
from quart import Quart
from werkzeug.exceptions import NotFound
from werkzeug.routing import IntegerConverter

from ..wire import MAX_ID

Id = Annotated[int, Field(ge=1, le=MAX_ID)]
Seq = Annotated[int, Field(ge=0, le=MAX_ID)]


class IdConverter(IntegerConverter):
    """`<id:name>`: a decimal id in 1..MAX_ID."""

    def to_python(self, value: str) -> int:
        # More digits than any id has names nothing; int() would refuse a text of over 4300 digits,
        # leading zeros included (a ValueError, which escaped as a 500).
        digits = value.lstrip("0")
        # Only ASCII digits write an id: werkzeug's pattern also takes other scripts' digits, which
        # int() reads (U+0661 ARABIC-INDIC DIGIT ONE is 1), so such a path named the room with id 1.
        if not digits.isascii() or len(digits) > len(str(MAX_ID)):
            raise NotFound("no such thing")
        number = int(digits or "0")
        if not 1 <= number <= MAX_ID:
            # Not a ValidationError: werkzeug would then answer 405 when the path matches a
            # rule of another method. An id out of range is simply no such thing.
            raise NotFound("no such thing")
        return number


def install_id_converter(app: Quart) -> None:
    """Make `<id:...>` available to the app's routes (before its blueprints are registered)."""
    app.url_map.converters["id"] = IdConverter
