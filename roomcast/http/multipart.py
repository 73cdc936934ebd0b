"""One file field of a multipart/form-data body, streamed as it arrives (python-multipart's push parser).

Nothing is buffered beyond what one network read brings: the parser hands over each piece
of a part as it finds it. Parts before the file field are read and dropped; after it the
rest of the body is read to its closing boundary, so a truncated or malformed body is a 400
before the file counts as complete. The whole body is limited to `max_body_bytes` (413), and
a client that stops sending midway is answered 408 `request_timeout` after `idle_timeout_s`.
"""

from __future__ import annotations

from collections.abc import AsyncIterable, AsyncIterator

import trio
from python_multipart.exceptions import FormParserError, MultipartParseError
from python_multipart.multipart import MultipartParser, parse_options_header

from ..errors import ApiError, BadRequest, TooLarge

MAX_PART_HEADERS = 16
MAX_PART_HEADER_BYTES = 8 << 10

_Event = tuple[str, bytes]


def _malformed(problem: str) -> BadRequest:
    return BadRequest(f"malformed multipart body: {problem}", details={"field": "file"})


def boundary_of(content_type: str | None) -> bytes:
    """The boundary of a multipart/form-data Content-Type; 400 for any other body."""
    kind, options = parse_options_header(content_type)
    if kind != b"multipart/form-data":
        raise BadRequest("send the file as multipart/form-data, in a field named 'file'",
                         details={"field": "file"})
    boundary = options.get(b"boundary", b"")
    if not 1 <= len(boundary) <= 70:  # RFC 2046 §5.1.1
        raise _malformed("the Content-Type needs a boundary of 1 to 70 characters")
    return boundary


class MultipartFile:
    """The field `field` of one multipart body: `open()` reads up to its data, `chunks()` streams it."""

    def __init__(self, body: AsyncIterable[bytes], boundary: bytes, *, field: str, max_body_bytes: int,
                 idle_timeout_s: float) -> None:
        self.field = field
        self.max_body_bytes = max_body_bytes
        self.idle_timeout_s = idle_timeout_s
        self.received = 0
        self.ended = False
        self.filename = ""
        self._body = body
        self._pending: list[_Event] = []
        self._headers: dict[str, str] = {}
        self._header_name = bytearray()
        self._header_value = bytearray()
        self._in_file = False  # the parser is inside the file field's data
        self._events = self._read()
        try:
            self._parser = MultipartParser(boundary, callbacks={
                "on_part_begin": self._part_begin,
                "on_header_field": self._header_field,
                "on_header_value": self._header_value_piece,
                "on_header_end": self._header_end,
                "on_headers_finished": self._headers_finished,
                "on_part_data": self._part_data,
                "on_part_end": self._part_end,
                "on_end": self._end,
            }, max_header_count=MAX_PART_HEADERS, max_header_size=MAX_PART_HEADER_BYTES)
        except FormParserError as exc:
            raise _malformed(str(exc)) from None

    # Parser callbacks: they run inside `write` and only note what they saw.

    def _part_begin(self) -> None:
        self._headers = {}

    def _header_field(self, data: bytes, start: int, end: int) -> None:
        self._header_name += data[start:end]

    def _header_value_piece(self, data: bytes, start: int, end: int) -> None:
        self._header_value += data[start:end]

    def _header_end(self) -> None:
        name = self._header_name.decode("latin-1").strip().lower()
        self._headers[name] = self._header_value.decode("latin-1").strip()
        self._header_name.clear()
        self._header_value.clear()

    def _headers_finished(self) -> None:
        disposition, options = parse_options_header(self._headers.get("content-disposition"))
        if disposition != b"form-data":
            self._pending.append(("error", b"every part needs Content-Disposition: form-data"))
            return
        if options.get(b"name") == self.field.encode():
            self._in_file = True
            self._pending.append(("file", options.get(b"filename", b"")))

    def _part_data(self, data: bytes, start: int, end: int) -> None:
        if self._in_file and end > start:
            self._pending.append(("data", data[start:end]))

    def _part_end(self) -> None:
        self._in_file = False

    def _end(self) -> None:
        self.ended = True

    async def _read(self) -> AsyncIterator[_Event]:
        body = aiter(self._body)
        while True:
            with trio.move_on_after(self.idle_timeout_s) as waited:
                data = await anext(body, None)
            if waited.cancelled_caught:
                raise ApiError(f"no part of the body arrived for {self.idle_timeout_s:g} s", status=408,
                               code="request_timeout")
            if data is None:
                break
            self.received += len(data)
            if self.received > self.max_body_bytes:
                raise TooLarge(f"the request body is larger than {self.max_body_bytes} bytes",
                               details={"max_bytes": self.max_body_bytes})
            try:
                self._parser.write(data)
            except MultipartParseError as exc:
                raise _malformed(str(exc)) from None
            events, self._pending = self._pending, []
            for event in events:
                yield event
        if not self.ended:
            raise _malformed("the body ends before its closing boundary")

    async def open(self) -> str:
        """Read up to the file field's data; its file name (as sent, UTF-8, maybe empty). 400 if there is none."""
        async for kind, value in self._events:
            if kind == "error":
                raise _malformed(value.decode())
            if kind == "file":
                # Browsers send the name as raw UTF-8; it was read as latin-1 above.
                self.filename = value.decode("utf-8", "replace")
                return self.filename
        raise BadRequest(f"the body has no '{self.field}' field", details={"field": self.field})

    async def chunks(self) -> AsyncIterator[bytes]:
        """The file's bytes as they arrive; then the rest of the body, checked to its closing boundary."""
        async for kind, value in self._events:
            if kind == "error":
                raise _malformed(value.decode())
            if kind == "file":
                raise BadRequest(f"send one '{self.field}' field, not several", details={"field": self.field})
            if kind == "data":
                yield value
