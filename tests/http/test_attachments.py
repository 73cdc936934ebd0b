"""Attachments (PROTOCOL §4) over real sockets, on SQLite and PostgreSQL: upload, download, limits, access."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from datetime import timedelta
from typing import Any

import httpx
import pytest
import trio
from sqlalchemy import func, select, update

from roomcast.errors import ApiError
from roomcast.http.routes import attachments as attachment_routes
from roomcast.node import Node
from roomcast.services import messaging
from roomcast.services.attachments import sweep_orphans
from roomcast.storage.models import Attachment, AttachmentChunk, Room
from roomcast.storage.users import UserSnapshot, get_user
from roomcast.timestamps import utcnow
from tests.actors.faults import DatabaseOutage
from tests.chat_helpers import make_group

PNG = b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR\x00\x00\x00\x01\x00\x00\x00\x01\x08\x06\x00\x00\x00\x1f\x15\xc4\x89"
JPEG = b"\xff\xd8\xff\xe0\x00\x10JFIF\x00\x01\x01\x00\x00\x01\x00\x01\x00\x00"
GIF = b"GIF89a\x01\x00\x01\x00\x80\x00\x00"
WEBP = b"RIFF\x24\x00\x00\x00WEBPVP8 \x18\x00\x00\x00"
PDF = b"%PDF-1.7\n%\xe2\xe3\xcf\xd3\n1 0 obj\n<<>>\nendobj\n"
HTML = b"<!DOCTYPE html><html><body><script>alert(document.cookie)</script></body></html>"
CHUNK = 256 << 10


@pytest.fixture
async def http(live_server: str) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=live_server, timeout=60) as client:
        yield client


async def _room(client: Any, users: Any, *, tenant: str = "default") -> tuple[int, Any, Any]:
    owner, member = await users.create("member", tenant=tenant), await users.create("member", tenant=tenant)
    room = await make_group(client, owner, [member])
    return room["id"], owner, member


async def upload(http: httpx.AsyncClient, user: Any, room_id: int, data: bytes, filename: str = "file.bin",
                 declared: str = "application/octet-stream") -> httpx.Response:
    return await http.post(f"/api/rooms/{room_id}/attachments", headers=user.headers,
                           files={"file": (filename, data, declared)})


def error_code(response: httpx.Response) -> str:
    body = response.json()
    assert set(body) == {"error"} and body["error"]["message"], body
    return str(body["error"]["code"])


async def counts(node: Node) -> tuple[int, int]:
    """(attachments, chunks) in the database."""

    def read(session: Any) -> tuple[int, int]:
        return (session.scalar(select(func.count()).select_from(Attachment)),
                session.scalar(select(func.count()).select_from(AttachmentChunk)))

    return await node.database.read(read)


# --------------------------------------------------------------------------- types from the bytes


@pytest.mark.parametrize("head, expected", [(PNG, "image/png"), (JPEG, "image/jpeg"), (GIF, "image/gif"),
                                            (WEBP, "image/webp"), (PDF, "application/pdf")])
async def test_the_type_comes_from_the_bytes_never_the_name_or_declared_type(
        http: httpx.AsyncClient, client: Any, users: Any, head: bytes, expected: str) -> None:
    room_id, owner, _ = await _room(client, users)
    response = await upload(http, owner, room_id, head + os.urandom(100), "report.pdf", "text/html")
    assert response.status_code == 201, response.text
    body = response.json()
    assert body == {"id": body["id"], "filename": "report.pdf", "content_type": expected, "size": len(head) + 100,
                    "url": f"/api/attachments/{body['id']}"}


async def test_a_png_renamed_pdf_round_trips_byte_exact_over_several_chunks(
        http: httpx.AsyncClient, client: Any, users: Any, node: Node) -> None:
    room_id, owner, member = await _room(client, users)
    data = PNG + os.urandom(2 * CHUNK + 12345)
    response = await upload(http, owner, room_id, data, "holiday.pdf", "application/pdf")
    assert response.status_code == 201, response.text
    attachment = response.json()
    assert attachment["content_type"] == "image/png" and attachment["size"] == len(data)
    assert await counts(node) == (1, 3)

    download = await http.get(attachment["url"], headers=member.headers)
    assert download.status_code == 200
    assert download.content == data
    headers = download.headers
    assert headers["content-type"] == "image/png"
    assert headers["content-length"] == str(len(data))
    assert headers["content-disposition"] == 'inline; filename="holiday.pdf"'
    assert headers["x-content-type-options"] == "nosniff"
    assert headers["content-security-policy"] == "sandbox"
    etag = headers["etag"]
    for matching in (etag, "*", f'"other", W/{etag}', f'"other" ,{etag}'):
        again = await http.get(attachment["url"], headers={**member.headers, "If-None-Match": matching})
        assert again.status_code == 304 and again.content == b"", matching
    for other in ('"other"', etag[:-2] + '"', etag + "x", ""):
        fresh = await http.get(attachment["url"], headers={**member.headers, "If-None-Match": other})
        assert fresh.status_code == 200 and fresh.content == data, other


async def test_html_named_photo_png_is_refused(http: httpx.AsyncClient, client: Any, users: Any,
                                               node: Node) -> None:
    room_id, owner, _ = await _room(client, users)
    for data in (HTML, b"<svg xmlns='http://www.w3.org/2000/svg'><script>alert(1)</script></svg>",
                 b'<?xml version="1.0"?><x/>', b"PK\x03\x04" + bytes(40), b"MZ\x90\x00" + bytes(60)):
        response = await upload(http, owner, room_id, data, "photo.png", "image/png")
        assert (response.status_code, error_code(response)) == (415, "unsupported_type"), data
    assert await counts(node) == (0, 0)


async def test_plain_text_is_valid_utf8_without_nul(http: httpx.AsyncClient, client: Any, users: Any,
                                                    node: Node) -> None:
    room_id, owner, member = await _room(client, users)
    text = ("Привет 👋 notes\n" * 10_000).encode()  # past the sniffed head, so checked as it streams
    response = await upload(http, owner, room_id, text, "notes.txt")
    assert response.status_code == 201, response.text
    assert response.json()["content_type"] == "text/plain"
    download = await http.get(response.json()["url"], headers=member.headers)
    assert download.content == text
    assert download.headers["content-type"] == "text/plain; charset=utf-8"
    assert download.headers["content-disposition"] == 'attachment; filename="notes.txt"'
    # Latin-1, a NUL, a bad byte after the head, a character cut off at the end: not text.
    for bad in ("café".encode("latin-1"), b"text\x00more", text + b"\xff" + text, text + "é".encode()[:1]):
        refused = await upload(http, owner, room_id, bad, "notes.txt", "text/plain")
        assert (refused.status_code, error_code(refused)) == (415, "unsupported_type")
    assert await counts(node) == (1, 1 + len(text) // CHUNK)


async def test_an_empty_file_is_empty_text(http: httpx.AsyncClient, client: Any, users: Any) -> None:
    room_id, owner, member = await _room(client, users)
    response = await upload(http, owner, room_id, b"", "empty.txt")
    assert response.status_code == 201, response.text
    assert (response.json()["content_type"], response.json()["size"]) == ("text/plain", 0)
    download = await http.get(response.json()["url"], headers=member.headers)
    assert (download.status_code, download.content, download.headers["content-length"]) == (200, b"", "0")


@pytest.mark.parametrize("settings_overrides", [{"attachment_types": ["application/pdf"]}])
async def test_the_allowed_types_are_configurable(http: httpx.AsyncClient, client: Any, users: Any) -> None:
    room_id, owner, _ = await _room(client, users)
    assert (await upload(http, owner, room_id, PDF)).status_code == 201
    for data in (PNG, b"plain text"):
        response = await upload(http, owner, room_id, data)
        assert (response.status_code, error_code(response)) == (415, "unsupported_type")


# --------------------------------------------------------------------------- size


async def test_exactly_the_limit_is_stored_one_byte_more_is_refused(http: httpx.AsyncClient, client: Any,
                                                                     users: Any, node: Node) -> None:
    limit = node.settings.attachment_max_bytes
    assert limit == 10 << 20  # the default
    room_id, owner, _ = await _room(client, users)
    data = PNG + os.urandom(limit - len(PNG))
    response = await upload(http, owner, room_id, data, "big.png")
    assert response.status_code == 201, response.text
    assert response.json()["size"] == limit
    too_big = await upload(http, owner, room_id, data + b"!", "bigger.png")
    assert (too_big.status_code, error_code(too_big)) == (413, "too_large")
    assert await counts(node) == (1, limit // CHUNK)
    # Other routes keep the app-wide request limit.
    response = await http.post(f"/api/rooms/{room_id}/messages",
                               headers={**owner.headers, "Content-Type": "application/json"},
                               content=b'{"body": "' + b"x" * (2 << 20) + b'"}')
    assert (response.status_code, error_code(response)) == (413, "too_large")


@pytest.mark.parametrize("settings_overrides", [{"attachment_max_bytes": 100_000}])
async def test_a_chunked_body_over_the_limit_is_refused_while_streaming(http: httpx.AsyncClient, client: Any,
                                                                          users: Any, node: Node) -> None:
    room_id, owner, _ = await _room(client, users)
    sent = 0

    async def body() -> AsyncIterator[bytes]:  # no Content-Length: Transfer-Encoding: chunked
        nonlocal sent
        yield b'--b\r\nContent-Disposition: form-data; name="file"; filename="a.png"\r\n\r\n' + PNG
        for _ in range(400):  # 400 x 64 KiB = 25 MiB, far more than the server will read
            sent += 1
            yield bytes(64 << 10)
        yield b"\r\n--b--\r\n"

    try:
        response = await http.post(f"/api/rooms/{room_id}/attachments", content=body(),
                                   headers={**owner.headers, "Content-Type": "multipart/form-data; boundary=b"})
    except httpx.TransportError:  # the server answered and closed while the client was still sending
        pass
    else:
        assert (response.status_code, error_code(response)) == (413, "too_large")
    assert sent < 400
    assert await counts(node) == (0, 0)


async def test_a_declared_length_over_the_limit_is_refused_before_the_body(http: httpx.AsyncClient, client: Any,
                                                                             users: Any) -> None:
    room_id, owner, _ = await _room(client, users)
    response = await http.post(f"/api/rooms/{room_id}/attachments", content=bytes(11 << 20),
                               headers={**owner.headers, "Content-Type": "multipart/form-data; boundary=b"})
    assert (response.status_code, error_code(response)) == (413, "too_large")


# --------------------------------------------------------------------------- malformed requests


def _multipart(*parts: bytes, boundary: bytes = b"b", end: bool = True) -> bytes:
    body = b"".join(b"--" + boundary + b"\r\n" + part + b"\r\n" for part in parts)
    return body + (b"--" + boundary + b"--\r\n" if end else b"")


def _part(name: str, data: bytes, filename: bytes | None = b"a.png") -> bytes:
    disposition = f'Content-Disposition: form-data; name="{name}"'.encode()
    if filename is not None:
        disposition += b'; filename="' + filename + b'"'
    return disposition + b"\r\nContent-Type: application/octet-stream\r\n\r\n" + data


async def _raw_upload(http: httpx.AsyncClient, user: Any, room_id: int, body: bytes,
                      content_type: str = "multipart/form-data; boundary=b") -> httpx.Response:
    return await http.post(f"/api/rooms/{room_id}/attachments", content=body,
                           headers={**user.headers, "Content-Type": content_type})


async def test_malformed_uploads_are_400_and_store_nothing(http: httpx.AsyncClient, client: Any, users: Any,
                                                           node: Node) -> None:
    room_id, owner, _ = await _room(client, users)
    file_part = _part("file", PNG + bytes(1000))
    cases = {
        "no file field": (_multipart(_part("other", b"x", None)), "multipart/form-data; boundary=b"),
        "not multipart": (b'{"file": "x"}', "application/json"),
        "no content type": (_multipart(file_part), ""),
        "no boundary": (_multipart(file_part), "multipart/form-data"),
        "wrong boundary": (_multipart(file_part, boundary=b"other"), "multipart/form-data; boundary=b"),
        "truncated": (_multipart(file_part, end=False), "multipart/form-data; boundary=b"),
        "garbage": (b"\x00\x01garbage" * 100, "multipart/form-data; boundary=b"),
        "two files": (_multipart(file_part, file_part), "multipart/form-data; boundary=b"),
        "not form-data": (_multipart(b"Content-Disposition: attachment; name=\"file\"\r\n\r\nx"),
                          "multipart/form-data; boundary=b"),
        "empty body": (b"", "multipart/form-data; boundary=b"),
    }
    for case, (body, content_type) in cases.items():
        response = await _raw_upload(http, owner, room_id, body, content_type)
        assert (response.status_code, error_code(response)) == (400, "validation_error"), (case, response.text)
    assert await counts(node) == (0, 0)
    # Other fields around the file are read and ignored.
    body = _multipart(_part("caption", b"hello", None), file_part, _part("note", b"x", None))
    response = await _raw_upload(http, owner, room_id, body)
    assert response.status_code == 201, response.text
    assert response.json()["size"] == len(PNG) + 1000


@pytest.mark.parametrize("sent, stored, disposition", [
    (b"../../etc/passwd.png", "passwd.png", 'inline; filename="passwd.png"'),
    (b"C:\\Users\\me\\photo.png", "photo.png", 'inline; filename="photo.png"'),
    (b"a\r\nX-Injected: yes\r\n.png", "aX-Injected: yes.png", 'inline; filename="aX-Injected: yes.png"'),
    (b'say \\"hi\\".png', "say hi.png", 'inline; filename="say hi.png"'),
    ("résumé 📄.png".encode(), "résumé 📄.png",
     "inline; filename=\"r_sum_ _.png\"; filename*=UTF-8''r%C3%A9sum%C3%A9%20%F0%9F%93%84.png"),
    ("evil\u202egnp.exe".encode(), "evilgnp.exe", 'inline; filename="evilgnp.exe"'),
    (b"..", "file", 'inline; filename="file"'),
    (b"", "file", 'inline; filename="file"'),
])
async def test_file_names_are_made_safe(http: httpx.AsyncClient, client: Any, users: Any, sent: bytes,
                                        stored: str, disposition: str) -> None:
    room_id, owner, member = await _room(client, users)
    # Raw bytes in the part header, as a hostile client may send them (CR LF included: the
    # multipart parser ends the header there, and what follows is a header line of its own).
    header = b'Content-Disposition: form-data; name="file"; filename="' + sent + b'"'
    if b"\r\n" in sent:
        header = b'Content-Disposition: form-data; name="file"; filename="a\r\nX-Injected: yes\r\n.png"'
    body = _multipart(header + b"\r\n\r\n" + PNG)
    response = await _raw_upload(http, owner, room_id, body)
    if b"\r\n" in sent:  # the line break ends the header: a broken Content-Disposition, or a stray header
        assert response.status_code in (201, 400), response.text
        if response.status_code == 400:
            return
    assert response.status_code == 201, response.text
    assert response.json()["filename"] == stored
    download = await http.get(response.json()["url"], headers=member.headers)
    assert download.headers["content-disposition"] == disposition
    assert "x-injected" not in download.headers


# --------------------------------------------------------------------------- access


async def test_only_members_upload_and_download_and_tenants_never_meet(http: httpx.AsyncClient, client: Any,
                                                                       users: Any) -> None:
    room_id, owner, member = await _room(client, users)
    other_room, outsider, _ = await _room(client, users)
    elsewhere_room, stranger, _ = await _room(client, users, tenant="other")
    admin = await users.create("admin")

    response = await upload(http, outsider, room_id, PNG)  # a member of another room
    assert (response.status_code, error_code(response)) == (403, "not_a_member")
    response = await upload(http, stranger, room_id, PNG)  # another tenant
    assert (response.status_code, error_code(response)) == (404, "not_found")
    response = await upload(http, owner, elsewhere_room, PNG)
    assert (response.status_code, error_code(response)) == (404, "not_found")
    response = await upload(http, owner, 424242, PNG)
    assert (response.status_code, error_code(response)) == (404, "not_found")
    response = await http.post(f"/api/rooms/{room_id}/attachments", files={"file": ("a.png", PNG)})
    assert (response.status_code, error_code(response)) == (401, "unauthorized")

    url = (await upload(http, member, room_id, PNG)).json()["url"]
    assert (await http.get(url, headers=owner.headers)).status_code == 200
    for user, status, code in ((outsider, 403, "not_a_member"), (admin, 403, "not_a_member"),
                               (stranger, 404, "not_found")):
        response = await http.get(url, headers=user.headers)
        assert (response.status_code, error_code(response)) == (status, code)
    response = await http.get("/api/attachments/424242", headers=owner.headers)
    assert (response.status_code, error_code(response)) == (404, "not_found")
    assert (await http.get("/api/attachments/99999999999999999999", headers=owner.headers)).status_code == 404
    assert (await http.get(url)).status_code == 401
    assert other_room


async def test_an_inactive_room_takes_no_uploads(http: httpx.AsyncClient, client: Any, users: Any) -> None:
    room_id, owner, _ = await _room(client, users)
    await client.patch(f"/api/rooms/{room_id}", headers=owner.headers, json={"is_active": False})
    response = await upload(http, owner, room_id, PNG)
    assert (response.status_code, error_code(response)) == (400, "room_inactive")


# --------------------------------------------------------------------------- lifetime


async def test_deleting_a_room_by_ref_deletes_its_attachments_and_their_chunks(
        http: httpx.AsyncClient, users: Any, node: Node) -> None:
    service, member = await users.create("service"), await users.create("member")
    response = await http.put("/api/rooms/by-ref/enrollment:1", headers=service.headers,
                              json={"kind": "group", "name": "course", "members": [{"user_id": member.id}]})
    room_id = response.json()["id"]
    sent = (await upload(http, member, room_id, PNG + os.urandom(CHUNK))).json()
    await upload(http, member, room_id, PDF)  # never sent
    message = await http.post(f"/api/rooms/{room_id}/messages", headers=member.headers,
                              json={"body": "", "attachments": [sent["id"]]})
    assert message.status_code == 201
    assert await counts(node) == (2, 3)
    assert (await http.delete("/api/rooms/by-ref/enrollment:1", headers=service.headers)).status_code == 204
    assert await counts(node) == (0, 0)
    assert (await http.get(sent["url"], headers=member.headers)).status_code == 404


async def test_the_sweep_removes_old_uploads_no_message_carries(http: httpx.AsyncClient, client: Any, users: Any,
                                                                node: Node) -> None:
    room_id, owner, _ = await _room(client, users)
    ids = [(await upload(http, owner, room_id, PNG + os.urandom(CHUNK))).json()["id"] for _ in range(3)]
    old_orphan, old_sent, fresh_orphan = ids
    await http.post(f"/api/rooms/{room_id}/messages", headers=owner.headers,
                    json={"body": "", "attachments": [old_sent]})
    past = utcnow() - timedelta(seconds=node.settings.attachment_orphan_ttl_s + 1)
    await node.database.write(lambda session: session.execute(
        update(Attachment).where(Attachment.id.in_([old_orphan, old_sent])).values(created_at=past)))

    assert await sweep_orphans(node) == 1
    remaining = await node.database.read(lambda session: sorted(session.scalars(select(Attachment.id))))
    assert remaining == [old_sent, fresh_orphan]
    assert await counts(node) == (2, 4)
    assert await sweep_orphans(node) == 0
    # The first upload started the node's sweeper.
    tree = await node.actors.snapshot()
    assert "attachment_sweeper" in {child["name"] for child in tree["children"]}


async def test_history_loads_the_attachments_of_a_page_in_one_query(http: httpx.AsyncClient, client: Any,
                                                                    users: Any, query_guard: Any) -> None:
    room_id, owner, member = await _room(client, users)

    async def send_with_file() -> None:
        attachment = (await upload(http, owner, room_id, PNG)).json()
        response = await http.post(f"/api/rooms/{room_id}/messages", headers=owner.headers,
                                   json={"body": "see", "attachments": [attachment["id"]]})
        assert response.status_code == 201

    async def statements_for_history() -> int:
        before = query_guard.statements
        response = await http.get(f"/api/rooms/{room_id}/messages?limit=200", headers=member.headers)
        assert all(len(message["attachments"]) == 1 for message in response.json()["items"])
        return int(query_guard.statements - before)

    await statements_for_history()  # from here on the member's user is cached: no read to authenticate
    for _ in range(2):
        await send_with_file()
    few = await statements_for_history()
    for _ in range(10):
        await send_with_file()
    assert await statements_for_history() == few


async def test_openapi_documents_the_multipart_upload_and_the_download(client: Any) -> None:
    document = await (await client.get("/openapi.json")).get_json()
    upload_op = document["paths"]["/api/rooms/{room_id}/attachments"]["post"]
    form = upload_op["requestBody"]["content"]["multipart/form-data"]["schema"]
    form = document["components"]["schemas"][form["$ref"].rsplit("/", 1)[-1]] if "$ref" in form else form
    assert form["properties"]["file"]["format"] == "binary" and form["required"] == ["file"]
    assert {"201", "400", "401", "403", "404", "413", "415"} <= set(map(str, upload_op["responses"]))
    download_op = document["paths"]["/api/attachments/{attachment_id}"]["get"]
    assert download_op["responses"]["200"]["content"]["*/*"]["schema"]["format"] == "binary"


async def test_the_attachments_of_a_deleted_message_are_gone(http: httpx.AsyncClient, client: Any,
                                                             users: Any) -> None:
    room_id, owner, member = await _room(client, users)
    attachment = (await upload(http, owner, room_id, PNG)).json()
    message = (await http.post(f"/api/rooms/{room_id}/messages", headers=owner.headers,
                               json={"body": "oops", "attachments": [attachment["id"]]})).json()
    assert (await http.get(attachment["url"], headers=member.headers)).status_code == 200
    await http.delete(f"/api/rooms/{room_id}/messages/{message['id']}", headers=owner.headers)
    response = await http.get(attachment["url"], headers=member.headers)
    assert (response.status_code, error_code(response)) == (404, "not_found")


async def test_sends_committed_together_never_share_an_upload(http: httpx.AsyncClient, client: Any, users: Any,
                                                              node: Node) -> None:
    """Sends that meet in one group commit (concurrent sends of one upload, say): the first takes it, the
    others are 400 as if sent after it; none answers 201 with an attachment its stored message lacks."""
    room_id, owner, _ = await _room(client, users)
    attachment = (await upload(http, owner, room_id, PNG)).json()
    sender = UserSnapshot.of(await node.database.read(get_user, owner.id))
    drafts = [messaging.draft_message(node, sender, room_id, f"take {n}", attachments=[attachment["id"]])
              for n in range(3)]
    outcomes = await messaging.send_drafts(node, sender, drafts)
    first, *others = outcomes
    assert not isinstance(first, Exception) and [a["id"] for a in first[0]["attachments"]] == [attachment["id"]]
    for refused in others:
        assert isinstance(refused, ApiError) and (refused.status, refused.code) == (400, "validation_error")
        assert refused.details == {"field": "attachments", "ids": [attachment["id"]]}
    history = (await http.get(f"/api/rooms/{room_id}/messages", headers=owner.headers)).json()["items"]
    assert [(m["body"], [a["id"] for a in m["attachments"]]) for m in history] == [("take 0", [attachment["id"]])]


async def test_an_early_refusal_reaches_a_client_still_sending(http: httpx.AsyncClient, client: Any,
                                                               users: Any) -> None:
    """401 and 403 come before the body is read: a small body is drained (the connection is reused),
    a large one is not read at all (`Connection: close`); the client gets the answer either way."""
    room_id, owner, _ = await _room(client, users)
    outsider = await users.create("member")
    for size, connection in ((500_000, None), (5_000_000, "close")):
        for headers, status in (({}, 401), (outsider.headers, 403)):
            response = await http.post(f"/api/rooms/{room_id}/attachments", headers=headers,
                                        files={"file": ("a.png", PNG + bytes(size))})
            assert response.status_code == status
            assert response.headers.get("connection") == connection
    assert (await http.get("/api/me", headers=owner.headers)).status_code == 200


async def test_an_upload_that_stalls_is_answered_408(live_server: str, client: Any, users: Any,
                                                     monkeypatch: pytest.MonkeyPatch, node: Node) -> None:
    monkeypatch.setattr(attachment_routes, "UPLOAD_IDLE_TIMEOUT_S", 0.5)
    room_id, owner, _ = await _room(client, users)
    host, port = live_server.removeprefix("http://").split(":")
    body = _multipart(_part("file", PNG + bytes(CHUNK)))
    head = (f"POST /api/rooms/{room_id}/attachments HTTP/1.1\r\nHost: {host}\r\n"
            f"Authorization: Bearer {owner.token}\r\nContent-Type: multipart/form-data; boundary=b\r\n"
            f"Content-Length: {len(body)}\r\n\r\n").encode()
    stream = await trio.open_tcp_stream(host, int(port))
    async with stream:
        await stream.send_all(head + body[:len(body) // 2])  # and then nothing more
        answer = b""
        with trio.fail_after(30):  # a guard against a hang only
            while b"\r\n\r\n" not in answer or not answer.rstrip().endswith(b"}"):
                data = await stream.receive_some(65536)
                if not data:
                    break
                answer += data
    assert answer.startswith(b"HTTP/1.1 408"), answer[:200]
    assert b'"request_timeout"' in answer
    assert await counts(node) == (0, 0)


async def test_sweeps_running_at_once_share_the_work(users: Any, node: Node) -> None:
    """Nodes sharing a database sweep it together: each orphan is removed once, by one of them."""
    uploader = await users.create("member")
    past = utcnow() - timedelta(seconds=node.settings.attachment_orphan_ttl_s + 1)

    def make_orphans(session: Any) -> None:
        session.add_all(Attachment(tenant="default", room_id=room, uploader_id=uploader.id, filename="a.png",
                                   content_type="image/png", size=1, sha256="0" * 64, created_at=past,
                                   stored_at=past) for _ in range(170))

    room = await node.database.write(_new_room)
    await node.database.write(make_orphans)
    removed: list[int] = []

    async def sweep() -> None:
        removed.append(await sweep_orphans(node))

    async with trio.open_nursery() as nursery:
        for _ in range(3):
            nursery.start_soon(sweep)
    assert sum(removed) == 170
    assert await counts(node) == (0, 0)


def _new_room(session: Any) -> int:
    room = Room(tenant="default", kind="group", name="sweep")
    session.add(room)
    session.flush()
    return int(room.id)


@pytest.mark.parametrize("db_backend", ["sqlite"])
async def test_a_database_outage_is_503_and_stores_nothing(http: httpx.AsyncClient, client: Any, users: Any,
                                                           node: Node, monkeypatch: pytest.MonkeyPatch) -> None:
    room_id, owner, member = await _room(client, users)
    url = (await upload(http, owner, room_id, PNG)).json()["url"]
    outage = DatabaseOutage(node.database, monkeypatch)
    outage.down = True
    for response in (await upload(http, owner, room_id, PNG + os.urandom(CHUNK)),
                     await http.get(url, headers=member.headers)):
        assert (response.status_code, error_code(response)) == (503, "unavailable")
        assert response.json()["error"]["details"] == {"dependency": "database"}
    outage.down = False
    assert await counts(node) == (1, 1)
    assert (await http.get(url, headers=member.headers)).status_code == 200
