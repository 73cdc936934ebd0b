"""Pure rules of rooms and messages: text checks and keyset cursors."""

from __future__ import annotations

import pytest
from pydantic import BaseModel, ValidationError

from roomcast.errors import BadRequest
from roomcast.http.pagination import decode_keyset, encode_keyset
from roomcast.http.schemas import NewUsername
from roomcast.services.text import check_attachment_ids, check_body, check_client_id, new_username_problem, text_problem


def test_keyset_cursors_round_trip_and_refuse_forgeries() -> None:
    cursor = encode_keyset(1_767_868_530_123_000, 42)
    assert decode_keyset(cursor, 2) == (1_767_868_530_123_000, 42)
    assert decode_keyset(None, 2) is None and decode_keyset("", 2) is None
    for bad in ("x", encode_keyset(1), encode_keyset(1, 2, 3), "cDE", "a2EuYg"):
        with pytest.raises(BadRequest):
            decode_keyset(bad, 2)


@pytest.mark.parametrize(("text", "fine"), [
    ("plain", True), ("Привет 👋\t\n", True), ("", True), ("a\x00b", False), ("\ud800", False),
    ("\U0001F600", True),
])
def test_text_problem(text: str, fine: bool) -> None:
    assert (text_problem(text) is None) is fine


def test_body_rules() -> None:
    check_body("x" * 5, 5, has_attachments=False)
    check_body("", 5, has_attachments=True)
    with pytest.raises(BadRequest) as too_long:
        check_body("x" * 6, 5, has_attachments=False)
    assert too_long.value.code == "validation_error"
    with pytest.raises(BadRequest) as blank:
        check_body(" \n", 5, has_attachments=False)
    assert blank.value.code == "empty_body"


def test_client_id_and_attachment_rules() -> None:
    check_client_id(None)
    check_client_id("c" * 64)
    for bad in ("", "c" * 65, "nul\x00"):
        with pytest.raises(BadRequest):
            check_client_id(bad)
    assert check_attachment_ids([3, 1, 3]) == [3, 1]
    for too_many in (list(range(1, 12)), [1] * 11):  # repeats count, as REST's schema counts them
        with pytest.raises(BadRequest):
            check_attachment_ids(too_many)


@pytest.mark.parametrize("name", ["ann", "Ann.O'Neil-2", "żółw", "用户", "😀", "a" * 64, "a" * 65, "", "a b",
                                  "a\u00a0b", "a\u200bb", "\u202eab", "a\tb", "a\x7fb", "\ue000", "a\u2028b",
                                  "\U000e0001", "a\u0378b"])
def test_new_username_problem_is_the_schema_rule(name: str) -> None:
    """The CLI's check and REST's NewUsername pattern agree."""
    class Form(BaseModel):
        username: NewUsername

    try:
        Form(username=name)
        schema_accepts = True
    except ValidationError:
        schema_accepts = False
    assert (new_username_problem(name) is None) is schema_accepts
