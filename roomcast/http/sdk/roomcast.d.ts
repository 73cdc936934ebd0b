// TypeScript declarations for /sdk/roomcast.js (the roomcast connection SDK).
// The wire objects follow docs/protocol.md and the OpenAPI at /openapi.json.

export interface UserBadge { id: number; username: string; display_name: string }
export interface User extends UserBadge { role: string; tenant: string; online: boolean }
export interface Attachment { id: number; filename: string; content_type: string; size: number; url: string }
export interface Message {
  id: number; room_id: number; seq: number; sender: UserBadge; body: string;
  reply_to: number | null; attachments: Attachment[]; client_id: string | null;
  created_at: string; edited_at: string | null;
}
export interface RoomMember extends UserBadge { role: string; room_role: "owner" | "moderator" | "member" }
export interface Room {
  id: number; kind: "direct" | "group" | "forum"; name: string | null; topic: string | null;
  is_active: boolean; external_ref: string | null; members: RoomMember[]; last_seq: number;
  last_message: Message | null; unread_count: number; created_at: string; updated_at: string;
}

export interface ServerEvents {
  welcome: { type: "welcome"; user: User; session_id: string; server_time: string; heartbeat_s: number };
  subscribed: {
    type: "subscribed"; ref?: string; room: number; last_seq: number;
    online?: UserBadge[]; online_count?: number;  // with presence "diff"
  };
  unsubscribed: { type: "unsubscribed"; ref?: string; room: number };
  message: { type: "message"; room: number; seq: number; message: Message };
  message_edited: { type: "message_edited"; room: number; seq: number; message: Message };
  message_deleted: { type: "message_deleted"; room: number; seq: number; message_id: number };
  room_updated: { type: "room_updated"; room: number; seq: number; changes: Partial<Room> };
  typing: { type: "typing"; room: number; user: UserBadge; state: boolean };
  read: { type: "read"; room: number; user: UserBadge; seq: number };
  presence: {
    type: "presence"; room: number; user: UserBadge; status: "joined" | "left";
    online: UserBadge[]; online_count?: number;
  };
  presence_diff: {
    type: "presence_diff"; room: number; joins: UserBadge[]; leaves: UserBadge[];
    joins_truncated: number; leaves_truncated: number; online_count: number;
  };
  room_added: { type: "room_added"; room: Room };
  room_removed: { type: "room_removed"; room: number };
  ack: { type: "ack"; ref?: string; message: Message };
  pong: { type: "pong"; ref?: string };
  event: { type: "event"; room: number; name: string; data: unknown };
  broadcast: { type: "broadcast"; name: string; data: unknown };
  error: { type: "error"; ref?: string; code: string; message: string; retry_after?: number };
}
export type ServerEvent = ServerEvents[keyof ServerEvents];

export type Status = "idle" | "connecting" | "open" | "reconnecting";

export interface OutboxItem {
  client_id: string; room: number; body: string; reply_to: number | null; attachments: number[];
  created_at: string; state: "pending" | "sending" | "failed";
  error: { status: number; code: string; message: string } | null;
}

export interface ClientEvents extends ServerEvents {
  "*": ServerEvent;
  status: { status: Status };
  outbox: { items: OutboxItem[] };
  sent: { item: OutboxItem; message: Message };
  authfailed: Record<string, never>;
}

export interface ClientOptions {
  /** The JWT, or a function returning the current one (called on every connect and request). */
  token: string | (() => string | null);
  /** The server's origin, e.g. "https://chat.example.com"; default: the page's own. */
  url?: string;
  /** Where the outbox is kept; default localStorage. null keeps it in memory only. */
  storage?: Storage | null;
  /** The storage key of the outbox; default one per tenant and user, chosen at welcome. */
  outboxKey?: string | null;
  /** "diff": subscribe with presence diffs (`subscribed.online`, then `presence_diff`); default: `presence` events. */
  presence?: "diff" | "legacy" | null;
}

export declare class RoomcastError extends Error {
  status: number;
  code: string;
  retryAfterS: number | null;
  readonly transient: boolean;
}

export declare class RoomcastClient {
  constructor(options: ClientOptions);
  readonly status: Status;
  readonly user: User | null;
  on<K extends keyof ClientEvents>(type: K, handler: (event: ClientEvents[K]) => void): () => void;
  start(): void;
  stop(): void;
  reset(): void;
  retryNow(): void;
  sendFrame(frame: { type: string; [field: string]: unknown }): boolean;
  subscribe(roomId: number, since?: number): void;
  unsubscribe(roomId: number): void;
  forget(roomId: number): void;
  lastSeq(roomId: number): number;
  request<T = unknown>(method: string, path: string, body?: unknown): Promise<T>;
  send(roomId: number, body: string,
       options?: { replyTo?: number | null; attachments?: number[]; clientId?: string }): OutboxItem;
  pending(roomId?: number): OutboxItem[];
  retry(clientId: string): void;
  discard(clientId: string): void;
  useOutbox(key: string): void;
}

export declare function randomId(): string;
export declare function outboxKeyFor(user: Pick<User, "id" | "tenant">): string;
export declare function splitFrame(data: string): ServerEvent[];
