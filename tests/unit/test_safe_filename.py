"""Uploaded file names as stored (services/attachments.safe_filename): never a path, hidden, "." or ".."."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from roomcast.services.attachments import DEFAULT_FILENAME, MAX_FILENAME_CHARS, safe_filename


@pytest.mark.parametrize(("raw", "stored"), [
    ("report.pdf", "report.pdf"),
    ("../../etc/passwd", "passwd"),
    ("C:\\Users\\me\\notes.txt", "notes.txt"),
    (". . .", DEFAULT_FILENAME),
    (". .", DEFAULT_FILENAME),
    ("..  ..", DEFAULT_FILENAME),
    (" .hidden", "hidden"),
    ("a\x00b\u202ec.txt", "abc.txt"),
])
def test_examples(raw: str, stored: str) -> None:
    assert safe_filename(raw) == stored


@settings(max_examples=300, deadline=None)
@given(st.text())
def test_any_name_is_stored_safely_and_stays_so(raw: str) -> None:
    name = safe_filename(raw)
    assert 1 <= len(name) <= MAX_FILENAME_CHARS
    assert name == name.strip() and not name.startswith(".")
    assert not set('/\\"') & set(name)
    assert safe_filename(name) == name  # cleaning twice changes nothing
