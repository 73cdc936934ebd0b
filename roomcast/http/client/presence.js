// Presence: who is subscribed to each room now. The one place that reads `presence` events, so
// a later form of them (compact joins/leaves with a count, behind a versioned opt-in) changes
// this file only.

import { store } from "./store.js";

/** Apply a `presence` event to store.online / store.onlineCount; returns the room it changed. */
export function applyPresence(event) {
  const online = Array.isArray(event.online) ? event.online : [];
  store.online.set(event.room, online);
  store.onlineCount.set(event.room, typeof event.online_count === "number" ? event.online_count : online.length);
  return event.room;
}

/** Whether `userId` is online in `roomId`, as far as the events listed. */
export function isOnline(roomId, userId) {
  return (store.online.get(roomId) || []).some((u) => u.id === userId);
}

/** Everyone online in a room (the events list at most a server-set number; the count is exact). */
export function onlineIn(roomId) {
  return { users: store.online.get(roomId) || [], count: store.onlineCount.get(roomId) ?? 0 };
}
