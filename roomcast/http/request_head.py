"""A strict reader of HTTP/1.1 request heads: for the requests the front door serves itself,
and for the framing of those it hands to Hypercorn.

It reads a narrow subset of what h11 (Hypercorn's parser) accepts, and reads it as h11 does:
CRLF line ends, `HTTP/1.1` (or `HTTP/1.0` where the caller asks for it), a method and header
names of token characters, a target and field values of visible characters (values may hold
inner spaces and tabs; the whitespace around them is not part of them), names compared in lower
case. Anything else, from obsolete line folding or a bare LF to another HTTP version or a control
character, is None: the caller then hands the request to Hypercorn, and the client gets the
answer (or the 400) it always got.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

_TOKEN = rb"[!#$%&'*+\-.^_`|~0-9A-Za-z]+"
_REQUEST_LINE = re.compile(rb"(" + _TOKEN + rb") ([\x21-\x7e]+) HTTP/1\.1")
_REQUEST_LINE_1X = re.compile(rb"(" + _TOKEN + rb") ([\x21-\x7e]+) HTTP/1\.([01])")
_FIELD = re.compile(rb"(" + _TOKEN + rb"):([\t \x21-\x7e\x80-\xff]*)")


@dataclass(slots=True)
class RequestHead:
    """One request's line and fields."""

    method: bytes
    target: bytes
    fields: list[tuple[bytes, bytes]]  # (lower-case name, value), in the order sent
    first: dict[bytes, bytes]  # each name's first value
    repeated: set[bytes]  # the names sent more than once
    http_1_0: bool = False  # an HTTP/1.0 request line (read only when asked for)

    def one(self, name: bytes) -> bytes | None:
        """The value of a field the caller reads only when it is sent at most once; see `repeated`."""
        return self.first.get(name)


def parse_request_head(head: bytes, *, http_1_0: bool = False) -> RequestHead | None:
    """`head`: a request's bytes up to, not including, the blank line that ends its fields.

    `http_1_0`: read an `HTTP/1.0` request line too (`RequestHead.http_1_0` then tells which it was).
    """
    request_line, *lines = head.split(b"\r\n")
    line = (_REQUEST_LINE_1X if http_1_0 else _REQUEST_LINE).fullmatch(request_line)
    if line is None:
        return None
    fields: list[tuple[bytes, bytes]] = []
    first: dict[bytes, bytes] = {}
    repeated: set[bytes] = set()
    for text in lines:
        field = _FIELD.fullmatch(text)
        if field is None:
            return None
        name, value = field[1].lower(), field[2].strip(b" \t")
        fields.append((name, value))
        if name in first:
            repeated.add(name)
        else:
            first[name] = value
    parsed = RequestHead(line[1], line[2], fields, first, repeated)
    if http_1_0 and line[3] == b"0":
        parsed.http_1_0 = True
    return parsed
