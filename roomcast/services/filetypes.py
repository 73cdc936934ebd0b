"""What an upload is, decided from its bytes alone (never its name or declared type).

Formats with a signature (PNG, JPEG, GIF, WebP, PDF, ...) are recognised by puremagic from
the first HEAD_BYTES. Plain text has no signature: it is text/plain when every byte of it is
valid UTF-8 without NUL, checked incrementally as the bytes stream by, and when its head is
not recognised as another format (an HTML or SVG document, a script, an archive...), so that
markup never passes as text. Two-byte signatures (`BM`, `MZ`, `{"`...) do not count against
text: they say nothing about it.
"""

from __future__ import annotations

import codecs
from collections.abc import Collection

import puremagic

from ..errors import UnsupportedType

HEAD_BYTES = 64 << 10
TEXT = "text/plain"
# puremagic's confidence grows with the signature's length: 0.3 is three bytes.
_TEXT_OVERRULING_CONFIDENCE = 0.3


def refused(detected: str | None) -> UnsupportedType:
    what = f"a {detected} file" if detected else "a file of unknown type"
    return UnsupportedType(f"this is {what}, which may not be uploaded here",
                           details={"detected": detected} if detected else None)


class TypeSniffer:
    """Decides the type from the head (`decide`), then checks text through to the end (`feed`, `finish`)."""

    def __init__(self, allowed: Collection[str]) -> None:
        self.allowed = frozenset(allowed)
        self.content_type: str | None = None
        self._text: codecs.IncrementalDecoder | None = None

    def decide(self, head: bytes) -> str:
        """The type of an upload that starts with `head` (HEAD_BYTES of it, or all of a shorter one).

        UnsupportedType if it is none of the allowed types. A text/plain answer stands only
        if `feed` and `finish` find the rest valid UTF-8 without NUL.
        """
        matches = _matches(head)
        if matches:
            best = matches[0].confidence
            for match in matches:
                if match.confidence == best and match.mime_type in self.allowed and match.mime_type != TEXT:
                    return self._decided(match.mime_type)
        overruling = [m for m in matches if m.confidence >= _TEXT_OVERRULING_CONFIDENCE]
        if TEXT in self.allowed and not overruling:
            self._text = codecs.getincrementaldecoder("utf-8")()
            return self._decided(TEXT)
        detected = next((m.mime_type for m in matches if m.mime_type), None)
        raise refused(detected)

    def feed(self, data: bytes) -> None:
        """The upload's next bytes, from its first (the head included)."""
        if self._text is None:
            return
        if b"\x00" in data:
            raise refused(None)
        try:
            self._text.decode(data)
        except UnicodeDecodeError:
            raise refused(None) from None

    def finish(self) -> str:
        """The upload is complete: its type, or UnsupportedType (text that ends mid-character)."""
        self.feed(b"")
        if self._text is not None:
            try:
                self._text.decode(b"", final=True)
            except UnicodeDecodeError:
                raise refused(None) from None
        assert self.content_type is not None, "decide() comes first"
        return self.content_type

    def _decided(self, content_type: str) -> str:
        self.content_type = content_type
        return content_type


def _matches(head: bytes) -> list[puremagic.main.PureMagicWithConfidence]:
    if not head:
        return []
    try:
        return puremagic.magic_string(head)
    except puremagic.PureError:  # nothing recognised
        return []
