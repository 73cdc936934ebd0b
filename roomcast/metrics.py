"""The node's metrics: one Prometheus registry per node, and the counts that have no other home.

A leaf any layer may import (like wire.py). Most figures are read from the node's live
state when /metrics is scraped (services/monitoring.py registers those collectors), so
the message path keeps no books for them. What has no state to read is counted here:
plain integers where the message path counts (one add per socket write, per committed
batch), prometheus_client objects where it does not (HTTP requests, webhook attempts,
send latency). Every node has its own `NodeMetrics`: tests run several nodes in one
process, and a node's figures must not leak into another's.
"""

from __future__ import annotations

import secrets
from collections.abc import Callable
from dataclasses import dataclass
from typing import TypeVar, cast

from prometheus_client import CollectorRegistry, Counter, Histogram, ProcessCollector, generate_latest
from prometheus_client.registry import Collector

C = TypeVar("C", bound=Collector)

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"

# Commit latency of a send: well under a millisecond on an idle SQLite, seconds when something is wrong.
SEND_LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)


@dataclass(slots=True)
class WireCounters:
    """What the node's WebSocket sockets wrote: frames and bytes (bumped per write, read per scrape)."""

    frames: int = 0
    bytes: int = 0


class NodeMetrics:
    """The registry /metrics renders, and the node's own counters."""

    def __init__(self) -> None:
        # Names this node in /api/admin/stats and in Redis; new at every start.
        self.node_id = secrets.token_hex(6)
        self.registry = CollectorRegistry()
        ProcessCollector(registry=self.registry)  # process_*: memory, CPU, open files of the process
        self.wire = WireCounters()
        self.messages_committed = 0
        self.send_transactions = 0  # the transactions that committed them (group commit: many per transaction)
        self.send_latency = Histogram(
            "roomcast_send_latency_seconds",
            "Time from taking a message send (REST request or /ws send frame) to its commit, when it is acked.",
            buckets=SEND_LATENCY_BUCKETS, registry=self.registry)
        # The two parts of a send's latency the node itself does not set: the rate limit (with
        # Redis, a round trip shared by the node's waiting senders) and the database's commit.
        self.send_rate_limit = Histogram(
            "roomcast_send_rate_limit_seconds",
            "Time taking senders' rate tokens: per REST send, or per batch of a /ws connection's sends.",
            buckets=SEND_LATENCY_BUCKETS, registry=self.registry)
        self.send_transaction = Histogram(
            "roomcast_send_transaction_seconds",
            "Time a group-commit transaction that stored messages took, from handing it to a database thread "
            "to its commit.",
            buckets=SEND_LATENCY_BUCKETS, registry=self.registry)
        self.http_requests = Counter(
            "roomcast_http_requests", "HTTP requests answered, by method, route (the URL rule) and status.",
            ["method", "route", "status"], registry=self.registry)
        self._webhook_deliveries = Counter(
            "roomcast_webhook_deliveries", "Webhook delivery attempts that the receiver accepted (2xx).",
            registry=self.registry)
        self._webhook_failures = Counter(
            "roomcast_webhook_failures", "Webhook delivery attempts that failed (non-2xx, timeout, unreachable).",
            registry=self.registry)
        self._installed: dict[str, Collector] = {}

    def committed(self, messages: int) -> None:
        """`messages` new messages were committed (once per transaction, not per message)."""
        self.messages_committed += messages
        self.send_transactions += 1

    def webhook_attempt(self, *, succeeded: bool) -> None:
        """Count one webhook delivery attempt: call it once per HTTP attempt, retries included."""
        if succeeded:
            self._webhook_deliveries.inc()
        else:
            self._webhook_failures.inc()

    def install(self, name: str, make: Callable[[], C]) -> C:
        """The collector registered under `name`, made by `make()` and registered on first use."""
        found = self._installed.get(name)
        if found is None:
            found = self._installed[name] = make()
            self.registry.register(found)
        return cast(C, found)

    def render(self) -> bytes:
        """Every metric of the node in the Prometheus text format."""
        return generate_latest(self.registry)
