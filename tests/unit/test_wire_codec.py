"""The wire codec (orjson, with the json module where orjson would differ) gives what the json
module gives: the same bytes for every event without floats, the same values and the same refusals
for every frame a client could send, but for integers beyond 64 bits, which no frame field takes."""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from roomcast.http.ws.protocol import ClientError, parse_frame
from roomcast.wire import decode, encode, encode_text

_reference = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"))
_examples = settings(max_examples=400, derandomize=True, database=None, deadline=None)

_integers = st.integers(min_value=-(2**70), max_value=2**70) | st.sampled_from(
    [2**63 - 1, 2**63, 2**64 - 1, 2**64, -(2**63), -(2**63) - 1])
_text = st.text() | st.sampled_from(["\u2028\u2029", "\x7f\x00\x1f", '"\\/', "\U0001f44b ✓"])


def _plain_json(integers: st.SearchStrategy[int]) -> st.SearchStrategy[Any]:
    """JSON values without floats, their integers drawn from `integers`."""
    return st.recursive(st.none() | st.booleans() | integers | _text,
                        lambda inner: st.lists(inner, max_size=4) | st.dictionaries(_text, inner, max_size=4),
                        max_leaves=20)


_plain = _plain_json(_integers)


@_examples
@given(_plain)
def test_what_has_no_float_is_encoded_as_the_json_module_encodes_it(value: Any) -> None:
    assert encode(value) == _reference.encode(value).encode()
    assert encode_text({"v": value}) == _reference.encode({"v": value})


@_examples
@given(st.floats(allow_nan=False, allow_infinity=False))
def test_a_float_reads_back_as_itself(value: float) -> None:
    assert json.loads(encode({"v": value})) == {"v": value}


class _Kind(StrEnum):
    MESSAGE = "message"


@dataclass
class _Point:
    x: int


@pytest.mark.parametrize("value", [{1: "a key that is an integer"}, {"n": 2**64 + 1}, {"n": -(2**63) - 1},
                                   {"type": _Kind.MESSAGE}, {_Kind.MESSAGE: 1}])
def test_what_orjson_would_write_otherwise_is_written_by_the_json_module(value: Any) -> None:
    assert encode(value) == _reference.encode(value).encode()


@pytest.mark.parametrize("value", [{"at": datetime(2026, 1, 1, tzinfo=UTC)}, {"point": _Point(1)}, {"s": {1}}])
def test_what_the_json_module_refuses_is_still_refused(value: Any) -> None:
    with pytest.raises(TypeError):
        encode(value)


_DIGITS_AS_ZEROS = str.maketrans("123456789", "000000000")


def _read(text: str) -> tuple[str, Any]:
    """What json.loads gives for `text`: ("ok", the value, as repr for NaN's sake) or the error's type."""
    try:
        return "ok", repr(json.loads(text))
    except (ValueError, RecursionError) as exc:
        return type(exc).__name__, None


def _decoded(text: str) -> tuple[str, Any]:
    try:
        return "ok", repr(decode(text))
    except (ValueError, RecursionError) as exc:
        return type(exc).__name__, None


_plain_64 = _plain_json(st.integers(min_value=-(2**63), max_value=2**64 - 1))


@_examples
@given(_plain_64)
def test_a_frame_reads_as_the_json_module_reads_it(value: Any) -> None:
    text = json.dumps(value, ensure_ascii=False)
    assert _decoded(text) == _read(text)
    assert _decoded(json.dumps(value)) == _read(json.dumps(value))  # \u escapes, surrogate pairs


@_examples
@given(st.text(alphabet='{}[]",:0123456789-+.eE \\u tnrfalsNIy\ud800\udc00', max_size=40)
       .filter(lambda text: "0" * 19 not in text.translate(_DIGITS_AS_ZEROS)))
def test_any_text_reads_or_fails_as_with_the_json_module(text: str) -> None:
    assert _decoded(text) == _read(text)


@pytest.mark.parametrize("text", [
    "18446744073709551615", "-9223372036854775808", "1" * 5000, "1e400", "-1e400", "NaN", "Infinity",
    '"\\ud800"', '["\\udc00x"]', "[" * 2000 + "]" * 2000, "\ufeff{}", "",
    '{"a":1,"a":2}', "[1,]", "-0", "1E5", "0.1"])
def test_what_orjson_reads_differently_is_read_as_the_json_module_reads_it(text: str) -> None:
    assert _decoded(text) == _read(text)


@pytest.mark.parametrize("number", ["9223372036854775808", "123456789012345678901234567890",
                                    "-9223372036854775809", "1e400", "2.0"])
@pytest.mark.parametrize("field", ["room", "reply_to"])
def test_a_number_out_of_range_is_refused_as_any_non_id(number: str, field: str) -> None:
    fields = {"room": "7", "reply_to": "1"} | {field: number}
    with pytest.raises(ClientError) as refused:
        parse_frame(f'{{"type":"send","ref":"r","room":{fields["room"]},"reply_to":{fields["reply_to"]},"body":"hi"}}')
    assert (refused.value.code, refused.value.ref, refused.value.details) == ("validation_error", "r",
                                                                              {"field": field})
    assert refused.value.message == f"'{field}' must be an integer from 1 to 2^63-1"
