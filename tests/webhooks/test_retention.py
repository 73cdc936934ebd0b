"""Retention (PROTOCOL §6): delivered and dead deliveries are kept `webhook_retention_s`, then
forgotten, however many piled up since the last purge; pending ones are never forgotten."""

from __future__ import annotations

from collections import Counter
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import select

from roomcast.services.webhook_delivery import purge_expired
from roomcast.storage.models import WebhookDelivery
from roomcast.storage.webhooks import DEAD, DELIVERED, PENDING, insert_deliveries
from roomcast.timestamps import utcnow


def _deliveries(status: str, created_at: datetime, count: int, room_id: int) -> list[dict[str, object]]:
    return [{"tenant": "default", "target": "config:0", "webhook_id": None, "event_id": f"{status}-{room_id}-{n}",
             "event": "message.created", "room_id": room_id, "seq": n, "body": "{}", "status": status,
             "attempts": 1, "next_attempt_at": created_at, "created_at": created_at} for n in range(count)]


async def test_finished_deliveries_past_retention_are_forgotten_in_batches_until_none_is_left(node: Any) -> None:
    now = utcnow()
    expired = now - timedelta(seconds=node.settings.webhook_retention_s + 60)
    recent = now - timedelta(seconds=60)
    old_room, new_room = 1, 2  # which rows are which, told apart without comparing stored timestamps
    rows = (_deliveries(DELIVERED, expired, 230, old_room) + _deliveries(DEAD, expired, 40, old_room)
            + _deliveries(PENDING, expired, 5, old_room)
            + _deliveries(DELIVERED, recent, 7, new_room) + _deliveries(DEAD, recent, 3, new_room))
    await node.database.write(insert_deliveries, rows)

    # More than one batch's worth expired since the last round: every one of them goes in this one.
    assert await purge_expired(node, batch=50) == 270

    def left(session: Any) -> Counter[tuple[str, int]]:
        return Counter(tuple(row) for row in session.execute(select(WebhookDelivery.status, WebhookDelivery.room_id)))

    assert await node.database.read(left) == {(PENDING, old_room): 5, (DELIVERED, new_room): 7, (DEAD, new_room): 3}
    assert await purge_expired(node, batch=50) == 0
