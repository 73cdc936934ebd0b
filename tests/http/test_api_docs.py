"""The OpenAPI 3.1 document and the /docs page that renders it without Internet access."""

from __future__ import annotations

import re
from typing import Any

ROUTES = {
    ("get", "/api/rooms"): {"200", "400"},
    ("post", "/api/rooms"): {"200", "201", "400", "403", "404"},
    ("get", "/api/rooms/{room_id}"): {"200", "403", "404"},
    ("patch", "/api/rooms/{room_id}"): {"200", "400", "403", "404"},
    ("post", "/api/rooms/{room_id}/members"): {"200", "201", "400", "403", "404"},
    ("delete", "/api/rooms/{room_id}/members/{user_id}"): {"204", "403", "404"},
    ("put", "/api/rooms/by-ref/{external_ref}"): {"200", "201", "400", "403", "404"},
    ("delete", "/api/rooms/by-ref/{external_ref}"): {"204", "403", "404"},
    ("get", "/api/rooms/{room_id}/messages"): {"200", "400", "403", "404"},
    ("post", "/api/rooms/{room_id}/messages"): {"200", "201", "400", "403", "404"},
    ("patch", "/api/rooms/{room_id}/messages/{message_id}"): {"200", "400", "403", "404"},
    ("delete", "/api/rooms/{room_id}/messages/{message_id}"): {"204", "403", "404"},
    ("post", "/api/rooms/{room_id}/read"): {"204", "400", "403", "404"},
}
REQUEST_MODELS = {
    ("post", "/api/rooms"): "CreateRoomIn",
    ("patch", "/api/rooms/{room_id}"): "UpdateRoomIn",
    ("post", "/api/rooms/{room_id}/members"): "AddMemberIn",
    ("put", "/api/rooms/by-ref/{external_ref}"): "ProvisionRoomIn",
    ("post", "/api/rooms/{room_id}/messages"): "SendMessageIn",
    ("patch", "/api/rooms/{room_id}/messages/{message_id}"): "EditMessageIn",
    ("post", "/api/rooms/{room_id}/read"): "ReadIn",
}


async def test_openapi_documents_every_room_and_message_route(client: Any) -> None:
    response = await client.get("/openapi.json")
    spec = await response.get_json()
    assert response.status_code == 200 and spec["openapi"].startswith("3.1")
    for (method, path), statuses in ROUTES.items():
        operation = spec["paths"][path][method]
        assert set(operation["responses"]) == statuses, (method, path)
        assert operation.get("summary"), (method, path)
        if (method, path) in REQUEST_MODELS:
            schema = operation["requestBody"]["content"]["application/json"]["schema"]
            assert schema["title"] == REQUEST_MODELS[method, path]
        assert "content" not in operation["responses"].get("204", {})
    room = spec["paths"]["/api/rooms/{room_id}"]["get"]["responses"]["200"]["content"]["application/json"]["schema"]
    assert set(room["required"]) == {"id", "kind", "name", "topic", "is_active", "external_ref", "members",
                                     "last_seq", "last_message", "unread_count", "created_at", "updated_at"}
    message = spec["components"]["schemas"]["MessageOut"]
    assert set(message["required"]) == {"id", "room_id", "seq", "sender", "body", "reply_to", "attachments",
                                        "client_id", "created_at", "edited_at"}
    history = spec["paths"]["/api/rooms/{room_id}/messages"]["get"]
    limit = next(p for p in history["parameters"] if p["name"] == "limit")
    assert (limit["schema"]["minimum"], limit["schema"]["maximum"]) == (1, 200)


async def test_docs_page_needs_nothing_from_outside(client: Any) -> None:
    page = await client.get("/docs")
    assert page.status_code == 200 and page.content_type.startswith("text/html")
    assert "default-src 'none'" in page.headers["Content-Security-Policy"]
    html = (await page.get_data()).decode()
    assets = re.findall(r'(?:src|href)="(/docs/[^"]+)"', html)
    assert sorted(assets) == ["/docs/docs.css", "/docs/docs.js"]
    for text in [html] + [(await (await client.get(asset)).get_data()).decode() for asset in assets]:
        assert not re.search(r"(?:src|href)=\"(?:https?:)?//", text)
        assert "http://" not in text and "https://" not in text
    assert "/openapi.json" in (await (await client.get("/docs/docs.js")).get_data()).decode()
    assert (await client.get("/docs/nope.js")).status_code == 404
