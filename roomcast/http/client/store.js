// What the client knows: who we are, our rooms, the last event seq seen per room, who is online.

export const store = {
  me: null,
  /** room id → room object (PROTOCOL §3) as last known. */
  rooms: new Map(),
  /** room id → the highest stored-event seq seen; resubscribing with it as `since` misses nothing. */
  lastSeq: new Map(),
  /** room id → user badges currently subscribed (from `presence`). */
  online: new Map(),
  /** room id → (user id → {user, seq}): others' read pointers seen live. */
  readers: new Map(),
  openRoomId: null,
};

/** The name people know a room by: the other person for direct chats. */
export function roomName(room) {
  if (room.kind === "direct") {
    const other = (room.members || []).find((m) => !store.me || m.id !== store.me.id);
    if (other) return other.display_name || other.username;
  }
  return room.name || `Room ${room.id}`;
}

/** When a room last saw activity, for ordering the list (ISO strings sort as times). */
export function activityOf(room) {
  return (room.last_message && room.last_message.created_at) || room.created_at || "";
}

/** Record a stored event's seq; false when it was already seen (a replay overlap). */
export function advanceSeq(roomId, seq) {
  if (typeof seq !== "number") return true;
  const last = store.lastSeq.get(roomId) ?? 0;
  if (seq <= last) return false;
  store.lastSeq.set(roomId, seq);
  return true;
}
