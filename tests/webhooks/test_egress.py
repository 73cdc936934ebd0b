"""Webhooks and bots never connect to a denied network (egress.py, `egress_denied_networks`)."""

from __future__ import annotations

import ipaddress
import socket
from typing import Any

import pytest
import trio

from roomcast.config import SettingsError, load_settings
from roomcast.egress import EgressDenied, GuardedNetworkBackend, is_denied
from roomcast.node import Node
from tests.chat_helpers import body_of, make_group
from tests.helpers import eventually
from tests.webhooks.receiver import Receiver
from tests.webhooks.test_delivery import deliveries

DEFAULT_DENIED = [ipaddress.ip_network("169.254.0.0/16"), ipaddress.ip_network("fe80::/10")]


@pytest.mark.parametrize(("address", "denied"), [
    ("169.254.169.254", True),  # a cloud's metadata service
    ("::ffff:169.254.169.254", True),  # the same, IPv4-mapped
    ("fe80::1%eth0", True),  # link-local IPv6, with a zone
    ("fd00:ec2::254", False),  # not link-local: an operator lists it if their cloud needs it
    ("127.0.0.1", False),
    ("10.1.2.3", False),
    ("93.184.216.34", False),
])
def test_the_default_denies_link_local_addresses_only(address: str, denied: bool) -> None:
    assert is_denied(address, DEFAULT_DENIED) is denied


def test_a_denied_network_that_is_not_one_stops_start_up(tmp_path: Any) -> None:
    with pytest.raises(SettingsError, match=r"'10\.0\.0\.0/33' is not an IP address or CIDR network"):
        load_settings({"data_dir": tmp_path, "egress_denied_networks": ["10.0.0.0/8", "10.0.0.0/33"]}, environ={})


async def _listener() -> tuple[trio.SocketListener, int]:
    sock = trio.socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    await sock.bind(("127.0.0.1", 0))
    sock.listen(8)
    return trio.SocketListener(sock), sock.getsockname()[1]


async def test_no_connection_is_made_to_an_address_in_a_denied_network() -> None:
    listener, port = await _listener()
    backend = GuardedNetworkBackend([ipaddress.ip_network("127.0.0.0/8"), ipaddress.ip_network("::1/128")])
    with pytest.raises(EgressDenied, match="resolves only to denied addresses"):
        await backend.connect_tcp("127.0.0.1", port, timeout=1)
    with pytest.raises(EgressDenied):
        await backend.connect_tcp("localhost", port, timeout=1)  # a name: its every address is checked
    with trio.move_on_after(0.2) as nothing:
        await listener.accept()
    assert nothing.cancelled_caught  # nothing knocked
    await listener.aclose()


async def test_a_name_with_an_allowed_address_connects_there() -> None:
    listener, port = await _listener()
    backend = GuardedNetworkBackend([ipaddress.ip_network("::1/128")])  # localhost's IPv6 address, if it has one
    stream = await backend.connect_tcp("localhost", port, timeout=1)
    accepted = await listener.accept()
    await stream.write(b"hello")
    assert await accepted.receive_some(5) == b"hello"
    await stream.aclose()
    await accepted.aclose()
    await listener.aclose()


@pytest.mark.parametrize("webhook_settings", [{"egress_denied_networks": ["127.0.0.0/8", "::1/128"]}])
async def test_a_target_in_a_denied_network_gets_nothing_and_its_delivery_is_dead_at_once(
        node: Node, client: Any, users: Any, receiver: Receiver, nursery: trio.Nursery) -> None:
    await receiver.start(nursery)
    admin = await users.create("admin")
    await make_group(client, admin)

    async def settled() -> bool:
        items = await deliveries(client, admin)
        return bool(items) and items[0]["status"] != "pending"

    await eventually(settled)
    [delivery] = await deliveries(client, admin)
    assert (delivery["status"], delivery["attempts"], delivery["last_status_code"]) == ("dead", 1, None)
    assert "denied addresses (127.0.0.1)" in delivery["last_error"]
    assert "egress_denied_networks" in delivery["last_error"]
    assert not receiver.requests


async def test_by_default_a_target_at_a_metadata_address_is_refused_without_a_connection(
        node: Node, client: Any, users: Any, receiver: Receiver, nursery: trio.Nursery) -> None:
    await receiver.start(nursery)
    admin = await users.create("admin")
    hook = await body_of(await client.post("/api/webhooks", headers=admin.headers, json={
        "url": "http://169.254.169.254/latest/meta-data/", "secret": "s", "events": ["room.created"]}), 201)
    await make_group(client, admin)

    async def settled() -> bool:
        items = await deliveries(client, admin, target=hook["id"])
        return bool(items) and items[0]["status"] != "pending"

    await eventually(settled)  # at once: no connect timeout was waited out
    [delivery] = await deliveries(client, admin, target=hook["id"])
    assert (delivery["status"], delivery["attempts"]) == ("dead", 1)
    assert "169.254.169.254" in delivery["last_error"] and "denied" in delivery["last_error"]
    await eventually(lambda: len(receiver.bodies("room.created")) == 1)  # the loopback target still gets it


@pytest.mark.parametrize("webhook_settings", [{"webhooks": [], "egress_denied_networks": ["127.0.0.0/8", "::1/128"]}])
async def test_a_bot_in_a_denied_network_is_never_called(
        node: Node, client: Any, users: Any, receiver: Receiver, nursery: trio.Nursery) -> None:
    await receiver.start(nursery)
    admin, ann = await users.create("admin"), await users.create("member")
    bot = await body_of(await client.post("/api/bots", headers=admin.headers, json={
        "username": "helper", "url": receiver.url, "secret": "s", "trigger": "direct"}), 201)
    room = await body_of(await client.post("/api/rooms", headers=ann.headers,
                                           json={"kind": "direct", "members": [bot["user"]["id"]]}), 201)
    sent = await body_of(await client.post(f"/api/rooms/{room['id']}/messages", headers=ann.headers,
                                           json={"body": "hi"}), 201)

    async def settled() -> list[dict[str, Any]]:
        page = await body_of(await client.get(f"/api/bots/{bot['bot']['id']}/deliveries", headers=admin.headers), 200)
        return [d for d in page["items"] if d["status"] != "pending"]

    await eventually(settled)
    [delivery] = await settled()
    assert (delivery["status"], delivery["attempts"]) == ("dead", 1) and delivery["seq"] == sent["seq"]
    assert "denied addresses (127.0.0.1)" in delivery["last_error"]
    assert not receiver.requests
