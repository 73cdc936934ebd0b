"""The fast path's request-head reader: what h11 reads, read alike; anything else refused (None)."""

from __future__ import annotations

import pytest

from roomcast.http.request_head import parse_request_head


def test_a_head_is_read_with_lower_case_names_and_values_without_surrounding_whitespace() -> None:
    head = parse_request_head(b"POST /a?b=c HTTP/1.1\r\nHost: x\r\nX-Two:\t a  b \t\r\nx-two: 2\r\nEmpty:")
    assert head is not None
    assert (head.method, head.target) == (b"POST", b"/a?b=c")
    assert head.fields == [(b"host", b"x"), (b"x-two", b"a  b"), (b"x-two", b"2"), (b"empty", b"")]
    assert head.one(b"x-two") == b"a  b" and head.repeated == {b"x-two"}


@pytest.mark.parametrize("head", [
    b"POST /a HTTP/1.0\r\nHost: x",
    b"POST /a HTTP/2\r\nHost: x",
    b"POST  /a HTTP/1.1\r\nHost: x",
    b"POST /a b HTTP/1.1\r\nHost: x",
    b"PO(ST /a HTTP/1.1\r\nHost: x",
    b"POST /a HTTP/1.1\r\nHost : x",
    b"POST /a HTTP/1.1\r\nNo colon",
    b"POST /a HTTP/1.1\r\nFolded: a\r\n b",
    b"POST /a HTTP/1.1\nHost: x",
    b"POST /a HTTP/1.1\r\nHost: x\nOther: y",
    b"POST /a HTTP/1.1\r\nHost: x\x00y",
    b"POST /a HTTP/1.1\r\nHost: x\x7f",
    b"POST /\xc3\xa9 HTTP/1.1\r\nHost: x",
    b"\r\nPOST /a HTTP/1.1\r\nHost: x",
])
def test_anything_else_is_left_to_hypercorn(head: bytes) -> None:
    assert parse_request_head(head) is None
