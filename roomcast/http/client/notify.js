// Telling the user about messages they are not looking at: the unread total in the tab's
// title, and a browser notification (once they allow it) for a message in a room not on
// screen or while the tab is hidden.

import { byId, nameOf } from "./dom.js";
import { roomName, store } from "./store.js";

const BASE_TITLE = "roomcast";
const BODY_CHARS = 120;

let onOpen = () => {};

export function initNotifications(openRoom) {
  onOpen = openRoom;
  const button = byId("enable-notifications");
  button.addEventListener("click", async () => {
    try {
      await Notification.requestPermission();
    } finally {
      renderNotificationButton();
    }
  });
  renderNotificationButton();
}

/** Offer to turn notifications on while the browser has not been asked yet. */
export function renderNotificationButton() {
  byId("enable-notifications").hidden = !("Notification" in window) || Notification.permission !== "default";
}

/** "(3) roomcast" while 3 messages are unread, "roomcast" otherwise. */
export function renderTitle() {
  let unread = 0;
  for (const room of store.rooms.values()) unread += room.unread_count || 0;
  document.title = unread ? `(${unread > 999 ? "999+" : unread}) ${BASE_TITLE}` : BASE_TITLE;
}

/** A notification for a message the user does not see (another room, or the tab in the background). */
export function notifyMessage(room, message) {
  if (!("Notification" in window) || Notification.permission !== "granted") return;
  const inView = store.openRoomId === room.id && document.visibilityState === "visible";
  if (inView) return;
  const text = message.body || (message.attachments || []).map((a) => `📎 ${a.filename}`).join(", ");
  const title = room.kind === "direct" ? nameOf(message.sender) : `${nameOf(message.sender)} in ${roomName(room)}`;
  try {
    const notification = new Notification(title, {
      body: text.length > BODY_CHARS ? `${text.slice(0, BODY_CHARS)}…` : text,
      tag: `roomcast-room-${room.id}`,  // one per room: a newer message replaces the older
      icon: "/client/icon.svg",
    });
    notification.onclick = () => {
      window.focus();
      onOpen(room.id);
      notification.close();
    };
  } catch (err) {
    // Some browsers allow notifications only from a service worker; the title still counts.
  }
}
