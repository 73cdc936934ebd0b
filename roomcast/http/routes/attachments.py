"""Attachments (PROTOCOL §4): upload a file to a room, download it.

The upload's body is streamed (http/streaming.py) and parsed as it arrives (http/multipart.py),
never through Quart's form parser, which would hold the file in memory. The download is sent
a chunk at a time, each read from the store as the client takes the previous one.
"""

from __future__ import annotations

import re
from urllib.parse import quote

from quart import Blueprint, Response, request
from quart_schema import DataSource, document_request, document_response

from ...config import Settings
from ...errors import TooLarge
from ...services import attachments
from ..auth import current_user, require_authentication
from ..chat_schemas import AttachmentOut, UploadIn
from ..context import current_node
from ..multipart import MultipartFile, boundary_of
from ..openapi import documents_file_bytes
from ..schemas import ErrorOut
from ..streaming import StreamedRoute

blueprint = Blueprint("attachments", __name__, url_prefix="/api")
require_authentication(blueprint)

# Room for the multipart framing around the file (boundaries, part headers, small fields).
MULTIPART_OVERHEAD_BYTES = 64 << 10
# An upload that sends nothing for this long is answered 408 `request_timeout`.
UPLOAD_IDLE_TIMEOUT_S = 60.0
_UPLOAD_PATH = re.compile(r"/api/rooms/[^/]+/attachments")
# Downloads shown by the browser (inline); everything else is saved (attachment).
_INLINE_PREFIX = "image/"
_SANDBOX = "sandbox"


def streamed_routes(settings: Settings) -> list[StreamedRoute]:
    """The upload route's body is streamed, up to the file limit plus the multipart framing."""
    return [StreamedRoute("POST", _UPLOAD_PATH, settings.attachment_max_bytes + MULTIPART_OVERHEAD_BYTES)]


@blueprint.post("/rooms/<id:room_id>/attachments")
@document_request(UploadIn, source=DataSource.FORM_MULTIPART)
@document_response(AttachmentOut, 201)
@document_response(ErrorOut, 400)
@document_response(ErrorOut, 403)
@document_response(ErrorOut, 404)
@document_response(ErrorOut, 413)
@document_response(ErrorOut, 415)
async def upload(room_id: int) -> tuple[dict, int]:
    """Upload a file for a message of this room (members only); send its `id` in `attachments` to attach it.

    The type comes from the bytes alone, never the name or the declared type: by default PNG, JPEG,
    GIF, WebP, PDF and plain text (valid UTF-8 without NUL); anything else is a 415
    `unsupported_type`. A file over `attachment_max_bytes` (10 MiB by default) is a 413 `too_large`,
    refused while it streams in. The name is kept without its path, control characters and quotes.
    An upload that no message carries is deleted after `attachment_orphan_ttl_s`.
    """
    node, caller = current_node(), current_user()
    limit = streamed_routes(node.settings)[0].max_bytes
    if request.content_length is not None and request.content_length > limit:
        raise TooLarge(f"the request body is larger than {limit} bytes", details={"max_bytes": limit})
    boundary = boundary_of(request.headers.get("Content-Type"))
    await attachments.check_upload(node, caller, room_id)
    form = MultipartFile(request.body, boundary, field="file", max_body_bytes=limit,
                         idle_timeout_s=UPLOAD_IDLE_TIMEOUT_S)
    filename = await form.open()
    return await attachments.store_upload(node, caller, room_id, filename, form.chunks()), 201


@blueprint.get("/attachments/<id:attachment_id>")
@documents_file_bytes()
@document_response(None, 304)  # Not Modified: no body
@document_response(ErrorOut, 403)
@document_response(ErrorOut, 404)
async def download(attachment_id: int) -> Response:
    """The attachment's bytes, to members of its room.

    `Content-Type` is the type found at upload; images are shown `inline`, everything else is
    `Content-Disposition: attachment`, with the file's name (`filename*` for non-ASCII names).
    `X-Content-Type-Options: nosniff` and `Content-Security-Policy: sandbox` keep a crafted file
    from running as a page. The `ETag` is the SHA-256 of the bytes; `If-None-Match` gives a 304.
    """
    found = await attachments.open_download(current_node(), current_user(), attachment_id)
    etag = f'"{found.sha256}"'
    headers = {
        "Content-Disposition": content_disposition(found.content_type, found.filename),
        "X-Content-Type-Options": "nosniff",
        "Content-Security-Policy": _SANDBOX,
        "Cache-Control": "private, no-cache",
        "ETag": etag,
    }
    if _none_match(request.headers.get("If-None-Match", ""), etag):
        await found.chunks.aclose()
        return Response(b"", status=304, headers=headers)
    content_type = found.content_type + ("; charset=utf-8" if found.content_type.startswith("text/") else "")
    response = Response(found.chunks, status=200, headers=headers, content_type=content_type)
    response.headers["Content-Length"] = str(found.size)
    return response


def _none_match(header: str, etag: str) -> bool:
    """Whether an If-None-Match header names `etag` (weakly compared) or is `*` (RFC 9110 §13.1.2)."""
    tags = [tag.strip() for tag in header.split(",")]
    return "*" in tags or any(tag.removeprefix("W/") == etag for tag in tags)


def content_disposition(content_type: str, filename: str) -> str:
    """`inline` for images, `attachment` for the rest, with the name as RFC 6266 has it.

    The stored name has no control characters, quotes or backslashes; the plain `filename` is
    its ASCII form (others become `_`), and a non-ASCII name also goes as `filename*` (RFC 5987).
    """
    kind = "inline" if content_type.startswith(_INLINE_PREFIX) else "attachment"
    fallback = "".join(c if " " <= c <= "~" and c not in '"\\' else "_" for c in filename)
    value = f'{kind}; filename="{fallback}"'
    if fallback != filename:
        value += f"; filename*=UTF-8''{quote(filename, safe='')}"
    return value
