"""HTTP/1.1 over a raw socket, written and read by hand: for tests of framing, keep-alive and pipelining."""

from __future__ import annotations

from dataclasses import dataclass

import trio


@dataclass
class RawResponse:
    status: int
    headers: dict[str, str]
    body: bytes


class RawConnection:
    """One HTTP/1.1 connection written and read by hand."""

    def __init__(self, stream: trio.SocketStream) -> None:
        self.stream = stream
        self.buffer = b""

    @classmethod
    async def open(cls, base_url: str) -> RawConnection:
        host, port = base_url.removeprefix("http://").split(":")
        return cls(await trio.open_tcp_stream(host, int(port)))

    async def send(self, data: bytes) -> None:
        await self.stream.send_all(data)

    async def _fill(self) -> bool:
        chunk = await self.stream.receive_some(65536)
        self.buffer += chunk
        return bool(chunk)

    async def response(self) -> RawResponse:
        """The next Content-Length framed response (fails after 5 s: the fault was a hang)."""
        with trio.fail_after(5):
            while b"\r\n\r\n" not in self.buffer:
                assert await self._fill(), "connection closed before a response"
            head, _, self.buffer = self.buffer.partition(b"\r\n\r\n")
            status_line, *lines = head.decode("latin-1").split("\r\n")
            fields = (line.partition(":") for line in lines)
            headers = {name.strip().lower(): value.strip() for name, _, value in fields}
            length = int(headers.get("content-length", "0"))
            while len(self.buffer) < length:
                assert await self._fill(), "connection closed inside a response"
            body, self.buffer = self.buffer[:length], self.buffer[length:]
        return RawResponse(int(status_line.split(" ")[1]), headers, body)

    async def closed_by_server(self) -> bool:
        """True once the server ends the connection (EOF or reset) with nothing more sent."""
        with trio.fail_after(5):
            try:
                return not await self._fill() and not self.buffer
            except trio.BrokenResourceError:
                return not self.buffer

    async def aclose(self) -> None:
        await self.stream.aclose()


def head(method: str, path: str, *, length: int | None = None, extra: str = "") -> bytes:
    framing = f"Content-Type: application/json\r\nContent-Length: {length}\r\n" if length is not None else ""
    return f"{method} {path} HTTP/1.1\r\nHost: test\r\n{framing}{extra}\r\n".encode()


async def receive_until(stream: trio.abc.ReceiveStream, marker: bytes, *, timeout: float = 5,
                        chunk_bytes: int = 4096) -> bytes:
    """What the server sends until `marker` has come, or it ends the connection (fails after `timeout`)."""
    received = b""
    with trio.fail_after(timeout):
        while marker not in received:
            chunk = await stream.receive_some(chunk_bytes)
            if not chunk:
                break
            received += chunk
    return received
