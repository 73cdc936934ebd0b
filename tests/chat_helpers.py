"""Helpers for the rooms and messages tests: short calls and database peeks."""

from __future__ import annotations

import json
from typing import Any

import pytest
from sqlalchemy import select

from roomcast.node import Node
from roomcast.services import send_store
from roomcast.storage.models import Membership, Message, OutboxEvent, Room


async def body_of(response: Any, status: int) -> Any:
    """The JSON body, after checking the status (the body is shown when it is wrong)."""
    data = await response.get_json()
    assert response.status_code == status, (response.status_code, data)
    return data


async def expect_error(response: Any, status: int, code: str) -> dict[str, Any]:
    data = await body_of(response, status)
    assert data["error"]["code"] == code, data
    assert isinstance(data["error"]["message"], str) and data["error"]["message"]
    return data["error"]


async def make_group(client: Any, owner: Any, members: list[Any] = (), name: str = "group",  # type: ignore[assignment]
                     kind: str = "group") -> dict[str, Any]:
    response = await client.post("/api/rooms", headers=owner.headers,
                                 json={"kind": kind, "name": name, "members": [m.id for m in members]})
    return await body_of(response, 201)


async def make_direct(client: Any, caller: Any, other: Any) -> dict[str, Any]:
    response = await client.post("/api/rooms", headers=caller.headers, json={"kind": "direct", "members": [other.id]})
    assert response.status_code in (200, 201), await response.get_json()
    return await response.get_json()


async def send(client: Any, user: Any, room_id: int, body: str = "hello", **fields: Any) -> dict[str, Any]:
    response = await client.post(f"/api/rooms/{room_id}/messages", headers=user.headers, json={"body": body, **fields})
    return await body_of(response, 201)


async def history(client: Any, user: Any, room_id: int, **params: Any) -> dict[str, Any]:
    query = "&".join(f"{key}={value}" for key, value in params.items())
    response = await client.get(f"/api/rooms/{room_id}/messages?{query}", headers=user.headers)
    return await body_of(response, 200)


async def room_of(client: Any, user: Any, room_id: int) -> dict[str, Any]:
    return await body_of(await client.get(f"/api/rooms/{room_id}", headers=user.headers), 200)


async def outbox(node: Node, room_id: int) -> list[dict[str, Any]]:
    """The room's outbox rows in seq order, each payload decoded (and checked to be compact JSON)."""

    def read(session: Any) -> list[tuple[int, str, str]]:
        rows = session.execute(select(OutboxEvent.seq, OutboxEvent.type, OutboxEvent.payload)
                               .where(OutboxEvent.room_id == room_id).order_by(OutboxEvent.seq))
        return [tuple(row) for row in rows]

    events = []
    for seq, kind, payload in await node.database.read(read):
        event = json.loads(payload)
        assert payload == json.dumps(event, ensure_ascii=False, separators=(",", ":"))
        assert (event["seq"], event["type"], event["room"]) == (seq, kind, room_id)
        events.append(event)
    return events


async def room_record(node: Node, room_id: int) -> Room | None:
    return await node.database.read(lambda session: session.get(Room, room_id))


async def message_count(node: Node, room_id: int) -> int:
    return await node.database.read(
        lambda session: len(session.scalars(select(Message.id).where(Message.room_id == room_id)).all()))


async def read_pointer(node: Node, room_id: int, user_id: int) -> int:
    return await node.database.read(lambda session: session.get(Membership, (room_id, user_id)).last_read_seq)


def curse(monkeypatch: pytest.MonkeyPatch, body: str = "cursed", error: str = "the database refused this one") -> None:
    """Make the database refuse every message with `body`: the batch insert that holds it fails
    (as one statement does), and so does its own insert when the committer retries draft by draft."""
    real_insert, real_insert_many = send_store.insert_message, send_store.insert_messages_with_events

    def insert_unless_cursed(session: Any, **fields: Any) -> int:
        if fields["body"] == body:
            raise RuntimeError(error)
        return real_insert(session, **fields)

    def insert_many_unless_cursed(session: Any, rows: Any, *args: Any) -> Any:
        if any(row["body"] == body for row in rows):
            raise RuntimeError(error)
        return real_insert_many(session, rows, *args)

    monkeypatch.setattr(send_store, "insert_message", insert_unless_cursed)
    monkeypatch.setattr(send_store, "insert_messages_with_events", insert_many_unless_cursed)
