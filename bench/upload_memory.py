#!/usr/bin/env python3
"""Upload memory benchmark: the server's RSS while it takes (or refuses) large attachment uploads.

Starts its own server (`run.py serve --port 0`) on a fresh SQLite file (or a throwaway
PostgreSQL schema), then uploads, one at a time over real HTTP to 127.0.0.1:

- exactly `attachment_max_bytes` (10 MiB by default): stored, 201;
- that plus one byte, with a Content-Length: refused while streaming, 413;
- 50 MiB with a Content-Length: refused from the declared length, 413;
- 50 MiB chunked (no Content-Length): refused while streaming, 413;

and then downloads the stored file, reading it slowly.

The server's RSS (/proc/PID/status VmRSS) is sampled every 5 ms during each upload; the
growth over its RSS before the upload is what the server held for it. A server that buffered
the body would grow by about the body's size. Bounded in count and time; Linux only.

    python bench/upload_memory.py                         # SQLite
    python bench/upload_memory.py --database postgresql   # PostgreSQL at --postgres-url
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import httpx
import trio

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.rest_send import DEFAULT_POSTGRES_URL, database, make_clients, server  # noqa: E402

MIB = 1 << 20
PNG = b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR"
PIECE = 64 << 10


def rss_bytes(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise RuntimeError("no VmRSS")


def multipart_head(boundary: str, filename: str) -> bytes:
    return (f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="{filename}"\r\n'
            "Content-Type: application/octet-stream\r\n\r\n").encode()


async def body_pieces(file_bytes: int, boundary: str) -> AsyncIterator[bytes]:
    """A multipart body whose file is `file_bytes` long (a PNG head, then zeros), made as it is sent."""
    yield multipart_head(boundary, "big.png") + PNG
    left = file_bytes - len(PNG)
    piece = bytes(PIECE)
    while left > 0:
        yield piece[:min(PIECE, left)]
        left -= PIECE
    yield f"\r\n--{boundary}--\r\n".encode()


def body_length(file_bytes: int, boundary: str) -> int:
    return len(multipart_head(boundary, "big.png")) + file_bytes + len(f"\r\n--{boundary}--\r\n")


async def sampled(pid: int, work: Callable[[], Awaitable[str]]) -> tuple[str, int, int]:
    """(what `work` returned, RSS before, peak RSS during): RSS sampled every 5 ms while it runs."""
    before = rss_bytes(pid)
    peak = before

    async def sample() -> None:
        nonlocal peak
        while True:
            peak = max(peak, rss_bytes(pid))
            await trio.sleep(0.005)

    async with trio.open_nursery() as nursery:
        nursery.start_soon(sample)
        outcome = await work()
        await trio.sleep(0.2)  # let the server finish and settle
        peak = max(peak, rss_bytes(pid))
        nursery.cancel_scope.cancel()
    return outcome, before, peak


async def download(http: httpx.AsyncClient, url: str, headers: dict[str, str]) -> str:
    """GET the file, read slowly (64 KiB at a time): the server must not queue it all up."""
    received = 0
    async with http.stream("GET", url, headers=headers) as response:
        async for piece in response.aiter_raw(64 << 10):
            received += len(piece)
            await trio.sleep(0.001)
    return f"{response.status_code}, {received} bytes"


async def measure(http: httpx.AsyncClient, pid: int, room_id: int, headers: dict[str, str], file_bytes: int,
                  chunked: bool, stored: list[str]) -> tuple[str, int, int]:
    """(the answer, RSS before, peak RSS during) for one upload; a stored file's url goes to `stored`."""
    boundary = "bench-boundary"
    request_headers = {**headers, "Content-Type": f"multipart/form-data; boundary={boundary}"}
    if not chunked:
        request_headers["Content-Length"] = str(body_length(file_bytes, boundary))

    async def post() -> str:
        try:
            response = await http.post(f"/api/rooms/{room_id}/attachments", headers=request_headers,
                                       content=body_pieces(file_bytes, boundary))
        except httpx.TransportError as exc:
            return f"connection closed by the server while sending ({type(exc).__name__})"
        if response.status_code == 201:
            stored.append(response.json()["url"])
        code = response.json().get("error", {}).get("code", "") if response.status_code >= 400 else ""
        return f"{response.status_code} {code}".strip()

    return await sampled(pid, post)


async def run(base_url: str, pid: int, token_headers: dict[str, str], member_ids: list[int],
              max_bytes: int, time_limit: float) -> None:
    cases = [
        (f"{max_bytes} bytes (the limit)", max_bytes, False),
        (f"{max_bytes + 1} bytes (limit + 1)", max_bytes + 1, False),
        ("50 MiB, Content-Length", 50 * MIB, False),
        ("50 MiB, chunked", 50 * MIB, True),
    ]
    with trio.fail_after(time_limit):
        async with httpx.AsyncClient(base_url=base_url, timeout=120) as http:
            response = await http.post("/api/rooms", headers=token_headers,
                                       json={"kind": "group", "name": "uploads", "members": member_ids})
            response.raise_for_status()
            room_id = response.json()["id"]
            # Warm up: the first upload imports and allocates what every later one reuses.
            stored: list[str] = []
            await measure(http, pid, room_id, token_headers, 1 * MIB, False, stored)
            print(f"{'upload':<34} {'answer':<52} {'RSS before':>11} {'peak':>9} {'growth':>9}")
            for label, size, chunked in cases:
                outcome, before, peak = await measure(http, pid, room_id, token_headers, size, chunked, stored)
                print(f"{label:<34} {outcome:<52} {before / MIB:>9.1f}Mi {peak / MIB:>7.1f}Mi "
                      f"{(peak - before) / MIB:>7.1f}Mi")
            url = stored[-1]  # the file of exactly the limit
            outcome, before, peak = await sampled(pid, lambda: download(http, url, token_headers))
            print(f"{'download of the stored one':<34} {outcome:<52} {before / MIB:>9.1f}Mi {peak / MIB:>7.1f}Mi "
                  f"{(peak - before) / MIB:>7.1f}Mi")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--database", choices=["sqlite", "postgresql"], default="sqlite")
    parser.add_argument("--postgres-url", default=os.environ.get("ROOMCAST_TEST_POSTGRES_URL", DEFAULT_POSTGRES_URL))
    parser.add_argument("--time-limit", type=float, default=300.0)
    args = parser.parse_args()
    secret = "bench-secret-" + "x" * 32
    with tempfile.TemporaryDirectory() as tmp, database(args.database, Path(tmp), args.postgres_url) as url:
        owner, member = make_clients(url, secret, 2)
        with server(url, Path(tmp), secret) as (base_url, pid):
            started = time.monotonic()
            trio.run(run, base_url, pid, owner.headers, [member.user_id], 10 * MIB, args.time_limit)
            print(f"done in {time.monotonic() - started:.1f}s ({args.database})")


if __name__ == "__main__":
    main()
