// Presence: who is subscribed to each room now. The one place that reads presence, in either
// shape the server sends (docs/protocol.md "Presence"): the client subscribes with
// `"presence": "diff"`, so the list comes with `subscribed` and then as `presence_diff` events;
// plain `presence` events (a server or subscription without diffs) are read too.

import { api } from "./api.js";
import { store } from "./store.js";

/** What the SDK asks for on subscribe. */
export const PRESENCE_MODE = "diff";

const stale = new Set();  // rooms whose list may be incomplete: refreshed when someone looks at it

/** Apply a `subscribed`, `presence` or `presence_diff` event; returns whether the room's presence changed. */
export function applyPresence(event) {
  const room = event.room;
  if (event.type === "presence_diff") {
    const online = new Map((store.online.get(room) || []).map((u) => [u.id, u]));
    for (const user of event.joins || []) online.set(user.id, user);
    for (const user of event.leaves || []) online.delete(user.id);
    store.online.set(room, [...online.values()].sort((a, b) => a.id - b.id));
    setCount(room, event.online_count);
    if (event.joins_truncated || event.leaves_truncated) stale.add(room);
  } else if (Array.isArray(event.online)) {  // `presence`, or `subscribed` with the list
    store.online.set(room, event.online);
    setCount(room, event.online_count);
  } else {
    return false;  // a `subscribed` without presence: nothing to learn
  }
  if ((store.online.get(room) || []).length !== store.onlineCount.get(room)) stale.add(room);
  else stale.delete(room);
  return true;
}

function setCount(room, count) {
  store.onlineCount.set(room, typeof count === "number" ? count : (store.online.get(room) || []).length);
}

/**
 * Fetch the whole list of a room whose list is incomplete, when it is about to be shown (never on
 * every diff: in a join storm every client would ask at once). Resolves to whether it changed.
 */
export async function refreshPresence(roomId) {
  if (!stale.has(roomId)) return false;
  stale.delete(roomId);
  try {
    const { online } = await api.presence(roomId);
    store.online.set(roomId, online);
    store.onlineCount.set(roomId, online.length);
    return true;
  } catch (err) {
    stale.add(roomId);
    return false;
  }
}

/** Forget a room's presence (left it, signed out). */
export function forgetPresence(roomId = undefined) {
  if (roomId === undefined) {
    store.online.clear();
    store.onlineCount.clear();
    stale.clear();
    return;
  }
  store.online.delete(roomId);
  store.onlineCount.delete(roomId);
  stale.delete(roomId);
}

/** Whether `userId` is online in `roomId`, as far as the events listed. */
export function isOnline(roomId, userId) {
  return (store.online.get(roomId) || []).some((u) => u.id === userId);
}

/** Everyone online in a room (the list may be shorter than the count; the count is exact). */
export function onlineIn(roomId) {
  return { users: store.online.get(roomId) || [], count: store.onlineCount.get(roomId) ?? 0 };
}
