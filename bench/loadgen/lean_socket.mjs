// A receive-mostly WebSocket client on a raw socket, for the load generator's subscribers.
//
// The `ws` package costs more per frame than the server it measures: a thousand subscribers
// in one Node process would make the load generator the bottleneck. Server frames are
// unmasked and final (roomcast never fragments), so reading them is a header and a slice;
// the few frames a subscriber sends (subscribe, pong) are masked as RFC 6455 requires.
import { randomBytes } from "node:crypto";
import http from "node:http";

const OP_TEXT = 0x1;
const OP_CLOSE = 0x8;
const OP_PING = 0x9;

function clientFrame(opcode, payload) {
  const mask = randomBytes(4);
  const length = payload.length;
  const header = length < 126 ? Buffer.from([0x80 | opcode, 0x80 | length])
    : Buffer.from([0x80 | opcode, 0x80 | 126, length >> 8, length & 0xff]);
  const masked = Buffer.alloc(length);
  for (let i = 0; i < length; i++) masked[i] = payload[i] ^ mask[i & 3];
  return Buffer.concat([header, mask, masked]);
}

export class LeanSocket {
  /** Open `url` (ws://host:port/path?query); `onText(buffer)` gets each text frame's payload. */
  static open(url, onText, onClose) {
    const target = new URL(url.replace(/^ws:/, "http:"));
    return new Promise((resolve, reject) => {
      const request = http.request({
        host: target.hostname, port: target.port, path: target.pathname + target.search,
        headers: {
          Connection: "Upgrade", Upgrade: "websocket", "Sec-WebSocket-Version": "13",
          "Sec-WebSocket-Key": randomBytes(16).toString("base64"),
        },
      });
      request.on("upgrade", (_response, socket, head) => {
        const lean = new LeanSocket(socket, onText, onClose);
        if (head.length) lean.receive(head);
        resolve(lean);
      });
      request.on("response", (response) => reject(new Error(`handshake answered ${response.statusCode}`)));
      request.on("error", reject);
      request.end();
    });
  }

  constructor(socket, onText, onClose) {
    this.socket = socket;
    this.onText = onText;
    this.pending = null;
    socket.setNoDelay(true);
    socket.on("data", (chunk) => this.receive(chunk));
    socket.on("close", () => onClose(this.closeCode ?? 1006));
    socket.on("error", () => {});
  }

  sendText(text) {
    this.socket.write(clientFrame(OP_TEXT, Buffer.from(text)));
  }

  /** Drop the connection with a TCP reset (RST), as a crashed client or a dead network does. */
  reset() {
    this.socket.resetAndDestroy();
  }

  terminate() {
    this.socket.destroy();
  }

  receive(chunk) {
    let buffer = this.pending === null ? chunk : Buffer.concat([this.pending, chunk]);
    let offset = 0;
    for (;;) {
      if (buffer.length - offset < 2) break;
      const opcode = buffer[offset] & 0x0f;
      let length = buffer[offset + 1] & 0x7f;
      let start = offset + 2;
      if (length === 126) {
        if (buffer.length - offset < 4) break;
        length = buffer.readUInt16BE(offset + 2);
        start += 2;
      } else if (length === 127) {
        if (buffer.length - offset < 10) break;
        length = Number(buffer.readBigUInt64BE(offset + 2));
        start += 8;
      }
      if (buffer.length < start + length) break;
      const payload = buffer.subarray(start, start + length);
      offset = start + length;
      if (opcode === OP_TEXT) this.onText(payload);
      else if (opcode === OP_PING) this.socket.write(clientFrame(0xa, payload));
      else if (opcode === OP_CLOSE) {
        this.closeCode = payload.length >= 2 ? payload.readUInt16BE(0) : 1005;
        this.socket.end(clientFrame(OP_CLOSE, payload.subarray(0, 2)));
      }
    }
    this.pending = offset < buffer.length ? buffer.subarray(offset) : null;
    if (this.pending !== null && offset > 0) this.pending = Buffer.from(this.pending);  // drop the consumed bytes
  }
}
