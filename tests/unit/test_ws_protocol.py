"""parse_frame: any text in, a checked frame or a ClientError out, and nothing else."""

from __future__ import annotations

import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from roomcast.http.ws.protocol import MAX_ID, ClientError, Ping, Read, Send, Subscribe, Typing, parse_frame


def error_of(text: str) -> ClientError:
    with pytest.raises(ClientError) as caught:
        parse_frame(text)
    return caught.value


def test_well_formed_frames_become_typed_frames() -> None:
    assert parse_frame('{"type":"ping"}') == Ping(None)
    assert parse_frame('{"type":"subscribe","room":1,"since":null,"ref":"r"}') == Subscribe("r", 1, None)
    assert parse_frame(json.dumps({"type": "read", "room": MAX_ID, "seq": 0})) == Read(None, MAX_ID, 0)
    assert parse_frame('{"type":"typing","room":2,"state":false,"extra":[1]}') == Typing(None, 2, False)
    assert parse_frame('{"type":"send","room":3,"body":null,"attachments":[4,4]}') == Send(None, 3, "", None, None,
                                                                                          (4, 4))


@pytest.mark.parametrize(("text", "code", "ref"), [
    ("{", "malformed_json", None),
    ('{"type":"ping","n":' + "1" * 5000 + "}", "validation_error", None),
    ("[" * 50_000 + "]" * 50_000, "validation_error", None),
    ('{"type":"ping","ref":"\\udc00"}', "validation_error", None),
    ('{"type":"ping","ref":null}', "validation_error", None),
    ('{"ref":"r"}', "validation_error", "r"),
    ('{"type":"pong","ref":"r"}', "unknown_type", "r"),
    ('{"type":"subscribe","room":9223372036854775808,"ref":"r"}', "validation_error", "r"),
    ('{"type":"subscribe","room":0,"ref":"r"}', "validation_error", "r"),
    ('{"type":"subscribe","room":true,"ref":"r"}', "validation_error", "r"),
    ('{"type":"read","room":1,"seq":1.0,"ref":"r"}', "validation_error", "r"),
    ('{"type":"send","room":1,"attachments":[1,false],"ref":"r"}', "validation_error", "r"),
    ('{"type":"typing","room":1,"state":1,"ref":"r"}', "validation_error", "r"),
])
def test_bad_frames_raise_a_client_error_with_the_ref_when_usable(text: str, code: str, ref: str | None) -> None:
    error = error_of(text)
    assert (error.code, error.ref) == (code, ref)


@settings(max_examples=300, derandomize=True, database=None, deadline=None)
@given(st.text(max_size=100) | st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(st.characters(codec=None), max_size=10),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(
        st.sampled_from(["type", "ref", "room", "since", "seq", "body", "state", "attachments", "x"]), inner,
        max_size=5),
    max_leaves=10).map(json.dumps))
def test_any_text_is_a_frame_or_a_client_error(text: str) -> None:
    try:
        parse_frame(text)
    except ClientError as error:
        if error.ref is not None:  # echoed: it must encode
            assert len(error.ref) <= 256 and isinstance(error.ref.encode(), bytes)
