"""A node's singleton actors (the send committer, the join batcher) are found by their actor,
and freed with it: the lookup holds neither."""

from __future__ import annotations

import gc
import weakref

from roomcast.node import Node
from roomcast.services import joins, send_committer, send_store
from roomcast.services.joins import JoinBatcher
from roomcast.services.send_committer import SendCommitter


async def test_a_committer_and_a_batcher_let_go_by_their_node_are_freed(node: Node) -> None:
    committer = SendCommitter(node, send_store.store_draft, send_store.store_drafts)
    batcher = JoinBatcher(node)
    assert send_committer._BY_ACTOR[committer.actor]() is committer
    assert joins._BY_ACTOR[batcher.actor]() is batcher
    gone = [weakref.ref(committer), weakref.ref(committer.actor), weakref.ref(batcher), weakref.ref(batcher.actor)]
    del committer, batcher
    gc.collect()
    assert [ref() for ref in gone] == [None] * 4
