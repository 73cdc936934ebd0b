"""Two committer workers sharing one mailbox: every request goes in exactly one batch, and neither
worker ever finds the requests it held gone to the other (which may even have committed them)."""

from __future__ import annotations

import random
from types import SimpleNamespace
from typing import Any

import trio

from roomcast.services.send_committer import SendCommitter, SendRequest
from roomcast.services.send_store import Draft

SENDS = 400


def _committer(workers: int) -> SendCommitter:
    settings = SimpleNamespace(send_batch_max=8, send_committers=workers, send_queue_max=64)
    node = SimpleNamespace(settings=settings, database=SimpleNamespace(is_sqlite=False))
    return SendCommitter(node, store=None, store_many=None)  # type: ignore[arg-type]


async def test_two_workers_take_every_request_once_however_their_turns_fall() -> None:
    committer = _committer(workers=2)
    batches: list[list[SendRequest]] = []
    rng = random.Random(7)

    async def commit(batch: list[SendRequest], ended: Any) -> None:
        """A commit over in a turn or two: the other worker may still be deciding meanwhile."""
        batches.append(batch)
        for _ in range(rng.randint(0, 2)):
            await trio.lowlevel.checkpoint()
        ended()
        for request in batch:
            request.answer([({"n": 0}, None)] * len(request.drafts))

    committer._commit = commit  # type: ignore[method-assign]
    send, mailbox = trio.open_memory_channel[SendRequest](64)
    requests = [SendRequest(sender=None, drafts=[Draft(room_id=1, body=str(n))])  # type: ignore[arg-type]
                for n in range(SENDS)]

    async def sender(mine: list[SendRequest]) -> None:
        for request in mine:
            await send.send(request)
            committer._nudge()
            for _ in range(rng.randint(0, 3)):
                await trio.lowlevel.checkpoint()

    with trio.fail_after(60):
        async with trio.open_nursery() as nursery:
            for _ in range(2):
                nursery.start_soon(committer._work, mailbox)
            async with trio.open_nursery() as senders:
                for k in range(8):
                    senders.start_soon(sender, requests[k::8])
            for request in requests:
                await request.done.wait()
            nursery.cancel_scope.cancel()
    taken = [request for batch in batches for request in batch]
    assert sorted(map(id, taken)) == sorted(map(id, requests))
    assert committer._open == 0
