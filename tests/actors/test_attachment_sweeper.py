"""The attachment sweeper: removes uploads no message carries, and waits out a database outage.

On MockClock: a minute of virtual outage costs no real time.
"""

from __future__ import annotations

import time
from datetime import timedelta
from typing import Any

import pytest
import trio
import trio.testing
from sqlalchemy import select

from roomcast.actors.actor import ActorState
from roomcast.node import Node
from roomcast.services.attachments import ensure_orphan_sweeper
from roomcast.storage.attachments import begin_upload, finish_upload
from roomcast.storage.models import Attachment
from roomcast.timestamps import utcnow

from .faults import DatabaseOutage
from .helpers import create_rooms


async def _orphan(node: Node, room_id: int, uploader_id: int, age_s: float) -> int:
    def work(session: Any) -> int:
        attachment_id = begin_upload(session, tenant="default", room_id=room_id, uploader_id=uploader_id,
                                     filename="a.png", content_type="image/png")
        finish_upload(session, attachment_id, 0, "0" * 64)
        session.get(Attachment, attachment_id).created_at = utcnow() - timedelta(seconds=age_s)
        return attachment_id

    return await node.database.write(work)


async def _ids(node: Node) -> list[int]:
    return await node.database.read(lambda session: sorted(session.scalars(select(Attachment.id))))


@pytest.mark.parametrize("db_backend", ["sqlite"])
async def test_the_sweeper_waits_out_a_database_outage_and_then_sweeps(
        autojump_clock: trio.testing.MockClock, node: Node, users: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    uploader = await users.create("member")
    [room] = await create_rooms(node)
    ttl = node.settings.attachment_orphan_ttl_s
    old, fresh = await _orphan(node, room, uploader.id, ttl + 10), await _orphan(node, room, uploader.id, 0)
    outage = DatabaseOutage(node.database, monkeypatch)
    outage.down = True
    ensure_orphan_sweeper(node)
    went_down = trio.current_time()
    give_up_at = time.monotonic() + 60  # real seconds: a guard against a hang only
    # At least a minute of virtual time, and three failed tries: virtual time may leap past a
    # worker thread still on its way.
    while trio.current_time() - went_down < 60 or outage.failed_calls < 3:
        assert time.monotonic() < give_up_at
        await trio.sleep(1)
    sweeper = node.actors.root.child("attachment_sweeper")
    assert sweeper is not None and sweeper.state is ActorState.RUNNING and sweeper.restarts == 0
    assert outage.failed_calls / (trio.current_time() - went_down) < 3  # with backoff, not in a hot loop

    outage.down = False
    while await _ids(node) != [fresh]:
        await trio.sleep(1)
    assert old not in await _ids(node)
    ensure_orphan_sweeper(node)  # idempotent: still the one actor
    assert node.actors.root.child("attachment_sweeper") is sweeper
