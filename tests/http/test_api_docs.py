"""The OpenAPI 3.1 document and the /docs page that renders it without Internet access."""

from __future__ import annotations

import re
from typing import Any

ROUTES = {
    ("get", "/api/rooms"): {"200", "400", "401", "503"},
    ("post", "/api/rooms"): {"200", "201", "400", "403", "404", "401", "413", "503"},
    ("get", "/api/rooms/{room_id}"): {"200", "403", "404", "401", "503"},
    ("patch", "/api/rooms/{room_id}"): {"200", "400", "403", "404", "401", "413", "503"},
    ("post", "/api/rooms/{room_id}/members"): {"200", "201", "400", "403", "404", "401", "413", "503"},
    ("delete", "/api/rooms/{room_id}/members/{user_id}"): {"204", "400", "403", "404", "401", "503"},
    ("put", "/api/rooms/by-ref/{external_ref}"): {"200", "201", "400", "403", "404", "401", "413", "503"},
    ("delete", "/api/rooms/by-ref/{external_ref}"): {"204", "400", "403", "404", "401", "503"},
    ("get", "/api/rooms/{room_id}/messages"): {"200", "400", "403", "404", "401", "503"},
    ("post", "/api/rooms/{room_id}/messages"): {"200", "201", "400", "403", "404", "401", "413", "429", "503"},
    ("patch", "/api/rooms/{room_id}/messages/{message_id}"): {"200", "400", "403", "404", "401", "413", "503"},
    ("delete", "/api/rooms/{room_id}/messages/{message_id}"): {"204", "403", "404", "401", "503"},
    ("post", "/api/rooms/{room_id}/read"): {"204", "400", "403", "404", "401", "413", "503"},
    ("post", "/api/rooms/{room_id}/events"): {"202", "400", "401", "403", "404", "413", "503"},
    ("post", "/api/broadcast"): {"202", "400", "401", "403", "413", "503"},
}
REQUEST_MODELS = {
    ("post", "/api/rooms"): "CreateRoomIn",
    ("patch", "/api/rooms/{room_id}"): "UpdateRoomIn",
    ("post", "/api/rooms/{room_id}/members"): "AddMemberIn",
    ("put", "/api/rooms/by-ref/{external_ref}"): "ProvisionRoomIn",
    ("post", "/api/rooms/{room_id}/messages"): "SendMessageIn",
    ("patch", "/api/rooms/{room_id}/messages/{message_id}"): "EditMessageIn",
    ("post", "/api/rooms/{room_id}/read"): "ReadIn",
    ("post", "/api/rooms/{room_id}/events"): "RoomEventIn",
    ("post", "/api/broadcast"): "BroadcastIn",
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


def _resolve(spec: dict[str, Any], schema: dict[str, Any]) -> dict[str, Any]:
    ref = schema.get("$ref")
    return spec["components"]["schemas"][ref.rsplit("/", 1)[1]] if ref else schema


async def test_every_operation_documents_body_auth_and_success(client: Any) -> None:
    """Walks the whole document: required bodies, 401 with the envelope where a token is
    needed (and no security where none is), a success response everywhere."""
    spec = await (await client.get("/openapi.json")).get_json()
    assert spec["security"] == [{"bearer": []}]
    operations = [(method, path, operation) for path, item in spec["paths"].items()
                  for method, operation in item.items()]
    assert len(operations) >= 17
    for method, path, operation in operations:
        where = (method, path)
        responses = operation["responses"]
        assert any(status.startswith("2") for status in responses), where
        if "requestBody" in operation:
            assert operation["requestBody"]["required"] is True, where
        if operation.get("security") == []:
            assert "401" not in responses or path == "/api/auth/login", where
            continue
        unauthorized = responses["401"]["content"]["application/json"]["schema"]
        assert set(_resolve(spec, unauthorized)["properties"]) == {"error"}, where
        # What any operation of its kind may answer, whatever its view (http/openapi.py).
        assert "503" in responses, where
        if "requestBody" in operation:
            assert {"400", "413"} <= set(responses), where
        if any(parameter["in"] == "query" for parameter in operation.get("parameters", [])):
            assert "400" in responses, where
        for parameter in operation.get("parameters", []):
            if parameter["in"] == "path" and parameter["name"].endswith("_id"):
                assert parameter["schema"] == {"type": "integer", "minimum": 1, "maximum": 2**63 - 1}, where
    public = {(method, path) for method, path, operation in operations if operation.get("security") == []}
    assert public == {("post", "/api/auth/login")}
    actors = spec["paths"]["/api/admin/actors"]["get"]["responses"]
    assert set(actors) == {"200", "401", "403", "503"}
    # Only admins and services may create users: the role check is documented with the route.
    assert "403" in spec["paths"]["/api/users"]["post"]["responses"]
    tree = _resolve(spec, actors["200"]["content"]["application/json"]["schema"])
    assert {"stream_backend", "tree"} <= set(tree["properties"])


async def test_docs_page_needs_nothing_from_outside(client: Any) -> None:
    page = await client.get("/docs")
    assert page.status_code == 200 and page.content_type.startswith("text/html")
    assert "default-src 'none'" in page.headers["Content-Security-Policy"]
    html = (await page.get_data()).decode()
    assets = re.findall(r'(?:src|href)="(/docs/[^"]+)"', html)
    pages = [asset for asset in assets if asset.endswith(".md")]  # docs/*.md, tested in test_guides.py
    assert sorted(set(assets) - set(pages)) == ["/docs/docs.css", "/docs/docs.js"]
    assert "/docs/protocol.md" in pages
    for text in [html] + [(await (await client.get(asset)).get_data()).decode() for asset in assets
                          if asset not in pages]:
        assert not re.search(r"(?:src|href)=\"(?:https?:)?//", text)
        assert "http://" not in text and "https://" not in text
    assert "/openapi.json" in (await (await client.get("/docs/docs.js")).get_data()).decode()
    assert (await client.get("/docs/nope.js")).status_code == 404
