#!/usr/bin/env python3
"""The floor under fan-out: what one small write(2) to each of N loopback TCP sockets costs here.

No roomcast code: N connected socket pairs, a receiver in another process (asleep, or
reading every socket through epoll as a load generator does), and the time and CPU of
one 200-byte `os.write` per socket, repeated. On loopback the kernel runs the receiver's
TCP path inside the sender's write, so this is most of what a delivery costs the server.

    python bench/loopback_writes.py                  # 1000 sockets, receiver asleep, then reading
    python bench/loopback_writes.py --sockets 5000
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import resource
import selectors
import socket
import time

FRAME = b"\x81\x7e\x00\xc8" + b"x" * 200  # a 200-byte WebSocket text frame, as a server sends it


def receiver(listener: socket.socket, count: int, reading: bool) -> None:
    connections = [listener.accept()[0] for _ in range(count)]
    if not reading:
        time.sleep(3600)
    selector = selectors.EpollSelector()
    for connection in connections:
        connection.setblocking(False)
        selector.register(connection, selectors.EVENT_READ)
    while True:
        for key, _ in selector.select():
            key.fileobj.recv(65536)  # type: ignore[union-attr]


def measure(count: int, reading: bool, rounds: int) -> tuple[float, float]:
    """(wall µs, CPU µs) per write, medians over `rounds` rounds of one write per socket."""
    listener = socket.create_server(("127.0.0.1", 0), backlog=count)
    process = multiprocessing.Process(target=receiver, args=(listener, count, reading), daemon=True)
    process.start()
    senders = []
    for _ in range(count):
        sender = socket.create_connection(listener.getsockname())
        sender.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        sender.setblocking(False)
        senders.append(sender)
    descriptors = [sender.fileno() for sender in senders]
    time.sleep(0.5)
    walls, cpus = [], []
    for _ in range(rounds):
        wall, cpu = time.perf_counter(), time.thread_time()
        for descriptor in descriptors:
            os.write(descriptor, FRAME)
        walls.append(time.perf_counter() - wall)
        cpus.append(time.thread_time() - cpu)
        time.sleep(0.05)  # 20 rounds a second, as in rate-1x1000
    process.kill()
    for sender in senders:
        sender.close()
    listener.close()
    return sorted(walls)[rounds // 2] / count * 1e6, sorted(cpus)[rounds // 2] / count * 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sockets", type=int, default=1000)
    parser.add_argument("--rounds", type=int, default=100)
    args = parser.parse_args()
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    for reading in (False, True):
        wall, cpu = measure(args.sockets, reading, args.rounds)
        state = "reading (epoll)" if reading else "asleep"
        print(f"{args.sockets} sockets, receiver {state}: {wall:.2f} µs wall, {cpu:.2f} µs CPU per write")


if __name__ == "__main__":
    main()
