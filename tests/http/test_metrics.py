"""GET /metrics (PROTOCOL §6): Prometheus text over real sockets, counters that move, the optional token."""

from __future__ import annotations

from typing import Any

import httpx
import pytest
import trio
from prometheus_client.parser import text_string_to_metric_families

from roomcast.actors.actor import Actor, ActorContext
from roomcast.node import Node
from tests.helpers import eventually
from tests.ws_client import ws_connect

MESSAGES_ROUTE = "/api/rooms/<id:room_id>/messages"


def parse(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """Every sample of a scrape, by (name, sorted labels)."""
    samples: dict[tuple[str, tuple[tuple[str, str], ...]], float] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            samples[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return samples


async def scrape(http: httpx.AsyncClient, **headers: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    response = await http.get("/metrics", headers=headers)
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("text/plain")
    return parse(response.text)


def value(samples: dict[tuple[str, tuple[tuple[str, str], ...]], float], name: str, **labels: str) -> float:
    return samples.get((name, tuple(sorted(labels.items()))), 0.0)


async def test_counters_move_after_a_rest_send_and_a_ws_delivery(live_server: str, users: Any) -> None:
    alice, bob = await users.create("member"), await users.create("member")
    async with httpx.AsyncClient(base_url=live_server, timeout=30) as http:
        room = (await http.post("/api/rooms", headers=alice.headers,
                                json={"kind": "group", "name": "metrics", "members": [bob.id]})).json()["id"]
        before = await scrape(http)
        assert value(before, "roomcast_connections") == 0
        async with ws_connect(live_server, bob.token) as ws:
            await ws.subscribe(room)
            sent = await http.post(f"/api/rooms/{room}/messages", headers=alice.headers, json={"body": "hi"})
            assert sent.status_code == 201
            await ws.until("message")
            after_rest = await scrape(http)

            assert value(after_rest, "roomcast_connections") == 1
            assert value(after_rest, "roomcast_users_online") == 1
            assert value(after_rest, "roomcast_subscriptions") == 1
            assert value(after_rest, "roomcast_room_actors") >= 1
            assert value(after_rest, "roomcast_messages_committed_total") == value(
                before, "roomcast_messages_committed_total") + 1
            assert value(after_rest, "roomcast_send_transactions_total") == value(
                before, "roomcast_send_transactions_total") + 1
            # The message at least (bob's own presence `joined` comes when its fold window closes).
            assert value(after_rest, "roomcast_deliveries_total", source="room") >= value(
                before, "roomcast_deliveries_total", source="room") + 1
            assert value(after_rest, "roomcast_ws_frames_out_total") > value(before, "roomcast_ws_frames_out_total")
            assert value(after_rest, "roomcast_ws_bytes_out_total") > value(before, "roomcast_ws_bytes_out_total")
            assert value(after_rest, "roomcast_send_latency_seconds_count") == 1
            # Its parts: one rate-limit call, and the transaction that committed it.
            assert value(after_rest, "roomcast_send_rate_limit_seconds_count") == 1
            assert value(after_rest, "roomcast_send_transaction_seconds_count") == value(
                after_rest, "roomcast_send_transactions_total")
            assert value(after_rest, "roomcast_http_requests_total", method="POST", route=MESSAGES_ROUTE,
                         status="201") == 1
            for gauge in ("roomcast_outbox_unpublished", "roomcast_outbox_oldest_age_seconds",
                          "roomcast_stream_lag_events", "roomcast_db_pool_size", "roomcast_db_threads_limit"):
                assert (gauge, ()) in after_rest, gauge
            assert value(after_rest, "roomcast_dependency_up", dependency="database") == 1
            assert value(after_rest, "roomcast_actor_restarts_total", supervisor="roomcast") == 0

            # A send over /ws: committed, acked, measured, delivered to the sender's own subscription.
            ack = await ws.request({"type": "send", "room": room, "body": "over ws"})
            assert ack["type"] == "ack"
            after_ws = await scrape(http)
            assert value(after_ws, "roomcast_messages_committed_total") == value(
                after_rest, "roomcast_messages_committed_total") + 1
            assert value(after_ws, "roomcast_send_latency_seconds_count") == 2
            assert value(after_ws, "roomcast_send_latency_seconds_bucket", le="+Inf") == 2
            assert value(after_ws, "roomcast_send_rate_limit_seconds_count") == 2
            assert value(after_ws, "roomcast_send_transaction_seconds_count") == value(
                after_ws, "roomcast_send_transactions_total")
        await eventually(lambda: scrape_value(http, "roomcast_connections"), until=0.0)


async def scrape_value(http: httpx.AsyncClient, name: str) -> float:
    return value(await scrape(http), name)


async def test_requests_are_counted_by_route_rule_never_by_raw_path(live_server: str, users: Any) -> None:
    alice = await users.create("member")
    async with httpx.AsyncClient(base_url=live_server, timeout=30) as http:
        for room in (123456, 654321):
            assert (await http.get(f"/api/rooms/{room}/messages", headers=alice.headers)).status_code == 404
        assert (await http.get("/no/such/path/42")).status_code == 404
        assert (await http.request("BREW", "/api/me")).status_code in (400, 405, 501)
        samples = await scrape(http)
    assert value(samples, "roomcast_http_requests_total", method="GET", route=MESSAGES_ROUTE, status="404") == 2
    assert value(samples, "roomcast_http_requests_total", method="GET", route="unmatched", status="404") == 1
    routes = {dict(labels)["route"] for name, labels in samples if name == "roomcast_http_requests_total"}
    assert not any(str(n) in route for route in routes for n in (123456, 654321, 42)), routes
    methods = {dict(labels)["method"] for name, labels in samples if name == "roomcast_http_requests_total"}
    assert "BREW" not in methods


async def test_webhook_attempts_and_actor_restarts_are_exported(live_server: str, node: Node) -> None:
    node.metrics.webhook_attempt(succeeded=True)
    node.metrics.webhook_attempt(succeeded=True)
    node.metrics.webhook_attempt(succeeded=False)
    crashed = trio.Event()

    async def crash_once(ctx: ActorContext) -> None:
        if not crashed.is_set():
            crashed.set()
            raise RuntimeError("boom")
        await trio.sleep_forever()

    node.actors.ensure("crash_once", lambda: Actor("crash_once", crash_once))
    await crashed.wait()
    async with httpx.AsyncClient(base_url=live_server, timeout=30) as http:
        await eventually(lambda: _restarts(http), until=1.0)
        samples = await scrape(http)
    assert value(samples, "roomcast_webhook_deliveries_total") == 2
    assert value(samples, "roomcast_webhook_failures_total") == 1


async def _restarts(http: httpx.AsyncClient) -> float:
    return value(await scrape(http), "roomcast_actor_restarts_total", supervisor="roomcast")


@pytest.mark.parametrize("settings_overrides", [{"metrics_token": "scrape-secret"}])
async def test_a_metrics_token_is_required_once_set(live_server: str, users: Any) -> None:
    admin = await users.create("admin")
    async with httpx.AsyncClient(base_url=live_server, timeout=30) as http:
        for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": "scrape-secret"},
                        {"Authorization": "Basic scrape-secret"}, admin.headers):
            response = await http.get("/metrics", headers=headers)
            assert response.status_code == 401, headers
            assert response.json()["error"]["code"] == "unauthorized"
            assert response.headers["www-authenticate"].startswith("Bearer")
        samples = await scrape(http, Authorization="Bearer scrape-secret")
    assert ("roomcast_connections", ()) in samples


async def test_metrics_are_open_without_a_token(client: Any) -> None:
    response = await client.get("/metrics")
    assert response.status_code == 200
    assert "roomcast_connections" in (await response.get_data(as_text=True))
    for method in ("POST", "PUT", "DELETE"):
        refused = await client.open("/metrics", method=method, data=b"x" * 10_000)
        assert refused.status_code == 405
        assert (await refused.get_json())["error"]["code"] == "method_not_allowed"
    # Query strings are ignored, however odd.
    assert (await client.get("/metrics?name[]=%00&" + "x" * 4000)).status_code == 200


async def test_each_node_counts_its_own(node: Node, users: Any, client: Any) -> None:
    """Tests run several nodes in one process: a registry per node, nothing shared."""
    from roomcast.http.app import create_app
    from roomcast.node import open_node

    alice = await users.create("member")
    created = await client.post("/api/rooms", headers=alice.headers,
                                json={"kind": "group", "name": "own", "members": []})
    room_id = (await created.get_json())["id"]
    async with open_node(node.settings, migrate=False) as other:
        other_client = create_app(other).test_client()
        response = await client.post(f"/api/rooms/{room_id}/messages", headers=alice.headers, json={"body": "x"})
        assert response.status_code == 201
        mine = parse(await (await client.get("/metrics")).get_data(as_text=True))
        theirs = parse(await (await other_client.get("/metrics")).get_data(as_text=True))
    assert value(mine, "roomcast_messages_committed_total") == 1
    assert value(theirs, "roomcast_messages_committed_total") == 0
    assert value(theirs, "roomcast_http_requests_total", method="POST", route=MESSAGES_ROUTE, status="201") == 0


async def test_the_grafana_dashboard_uses_metrics_the_node_exports(client: Any) -> None:
    import json
    import re
    from pathlib import Path

    dashboard = json.loads((Path(__file__).resolve().parents[2] / "docs" / "grafana-dashboard.json").read_text())
    used = {name for panel in dashboard["panels"] for target in panel["targets"]
            for name in re.findall(r"\b((?:roomcast|process)_[a-z_]+)\b", target["expr"])}
    assert (await client.get("/healthz")).status_code == 200  # a labelled counter has samples once counted
    exported = {name for name, _ in parse(await (await client.get("/metrics")).get_data(as_text=True))}
    assert used and used <= exported, used - exported
