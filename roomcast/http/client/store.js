// What the client knows: who we are, our rooms, who is online, what others have read.
// The last seq seen per room lives in the SDK's client (it resubscribes with it).

import { isolate, nameOf } from "./dom.js";

export const store = {
  me: null,
  /** The server's limits (GET /api/config), or null until known. */
  config: null,
  /** room id → room object (PROTOCOL §3) as last known. */
  rooms: new Map(),
  /** room id → user badges currently subscribed (from `presence`, see presence.js). */
  online: new Map(),
  /** room id → how many are online (may exceed the listed badges). */
  onlineCount: new Map(),
  /** room id → (user id → {user, seq}): others' read pointers seen live. */
  readers: new Map(),
  openRoomId: null,
};

/** The name people know a room by: the other person for direct chats. */
export function roomName(room) {
  if (room.kind === "direct") {
    const other = (room.members || []).find((m) => !store.me || m.id !== store.me.id);
    if (other) return nameOf(other);
  }
  return room.name ? isolate(room.name) : `Room ${room.id}`;
}

/** When a room last saw activity, for ordering the list (ISO strings sort as times). */
export function activityOf(room) {
  return (room.last_message && room.last_message.created_at) || room.created_at || "";
}

/** Whether the signed-in user may manage a room's members and name (owner, moderator or admin). */
export function canManage(room) {
  if (!store.me || room.kind === "direct") return false;
  if (store.me.role === "admin") return true;
  const mine = (room.members || []).find((m) => m.id === store.me.id);
  return Boolean(mine && (mine.room_role === "owner" || mine.room_role === "moderator"));
}
