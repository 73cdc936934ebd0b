"""A small roomcast bot: answers `/help` and `/time`. Standard library only; runs as its own process.

    python examples/bot/bot.py --port 8100 --secret "$BOT_SECRET"

Register it with `POST /api/bots` (see README.md beside this file): roomcast then POSTs every
message that triggers the bot here as a signed `message.created` webhook, and posts the
`{"reply": {...}}` this answers with to the room, as the bot. The signature is checked first:
a request that is not signed with the bot's secret is refused (401) and never answered.
"""

from __future__ import annotations

import argparse
import hashlib
import hmac
import json
import os
import re
import sys
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

MAX_BODY = 1 << 20
# A mention at the start ("@timebot /time" in a group) is not part of the command.
_LEADING_MENTIONS = re.compile(r"^(?:@\S+\s+)+")

HELP = "I answer:\n/help  this text\n/time  the server's time (UTC)"


def answer(text: str) -> str | None:
    """The reply to a message's text, or None to stay silent (it was not a command)."""
    command = _LEADING_MENTIONS.sub("", text.strip()).split(maxsplit=1)
    if not command or not command[0].startswith("/"):
        return None
    name = command[0].lower()
    if name == "/help":
        return HELP
    if name == "/time":
        return "It is " + datetime.now(UTC).strftime("%Y-%m-%d %H:%M:%S UTC")
    return f"I do not know {name}; try /help"


def signature(secret: str, body: bytes) -> str:
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def make_handler(secret: str) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        server_version = "roomcast-example-bot"

        def do_POST(self) -> None:  # the standard library calls it by this name
            try:
                length = int(self.headers.get("Content-Length", ""))
            except ValueError:
                return self._send(411, {"error": "Content-Length required"})
            if not 0 <= length <= MAX_BODY:
                return self._send(413, {"error": "too large"})
            body = self.rfile.read(length)
            given = self.headers.get("X-Roomcast-Signature", "")
            if not hmac.compare_digest(given, signature(secret, body)):
                return self._send(401, {"error": "bad signature"})
            try:
                event = json.loads(body)
                message = event["message"] if event.get("event") == "message.created" else None
                text = message["body"] if message else None
            except (ValueError, TypeError, KeyError):
                return self._send(400, {"error": "not a roomcast event"})
            reply = answer(text) if isinstance(text, str) else None
            if reply is None:
                return self._send(200, {})
            # `reply_to` threads the answer under the command. roomcast posts it once per event `id`,
            # however often it sends the event: nothing to deduplicate here.
            return self._send(200, {"reply": {"body": reply, "reply_to": message["id"]}})

        def _send(self, status: int, payload: dict[str, object]) -> None:
            data = json.dumps(payload).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, format: str, *args: object) -> None:  # one line per request, on stderr
            sys.stderr.write(f"{self.address_string()} {format % args}\n")

    return Handler


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8100, help="0 = any free port")
    parser.add_argument("--secret", default=os.environ.get("BOT_SECRET"),
                        help="the secret given to POST /api/bots (default: $BOT_SECRET)")
    args = parser.parse_args(argv)
    if not args.secret:
        parser.error("a secret is needed: --secret or $BOT_SECRET")
    server = ThreadingHTTPServer((args.host, args.port), make_handler(args.secret))
    host, port = server.server_address[:2]
    print(f"listening on http://{host}:{port}", flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()


if __name__ == "__main__":
    main()
