"""server.bind_sockets: the port is bound before anything starts, and a failure is one line with its fix."""

from __future__ import annotations

import socket

import pytest

from roomcast.errors import StartupError
from roomcast.server import bind_sockets


def test_binds_and_listens() -> None:
    sockets = bind_sockets("127.0.0.1", 0)
    try:
        [bound] = sockets
        port = bound.getsockname()[1]
        with socket.create_connection(("127.0.0.1", port), timeout=5):
            pass  # the kernel accepts into the backlog: it is listening
    finally:
        for sock in sockets:
            sock.close()


def test_port_zero_is_the_same_port_on_every_address() -> None:
    sockets = bind_sockets("localhost", 0)
    try:
        assert len({sock.getsockname()[1] for sock in sockets}) == 1
    finally:
        for sock in sockets:
            sock.close()


def test_a_busy_port_names_the_fix() -> None:
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        port = holder.getsockname()[1]
        with pytest.raises(StartupError) as caught:
            bind_sockets("127.0.0.1", port)
    assert str(caught.value) == f"port {port} on 127.0.0.1 is in use; pick another with --port or stop the other server"


def test_an_address_not_of_this_machine_names_the_fix() -> None:
    # 192.0.2.1 is TEST-NET-1 (RFC 5737): never assigned here; binding sends nothing.
    with pytest.raises(StartupError, match=r"192\.0\.2\.1 is not an address of this machine; fix --host"):
        bind_sockets("192.0.2.1", 0)
