// The room list: name, last message, time, unread badge and an online dot for direct chats;
// the unread total goes to the tab title with every redraw.

import { byId, el, nameOf, shortTime } from "./dom.js";
import { renderTitle } from "./notify.js";
import { onlineIn } from "./presence.js";
import { activityOf, roomName, store } from "./store.js";

const items = new Map();  // room id → <li>
let onOpen = () => {};

export function initRoomList(openRoom) {
  onOpen = openRoom;
}

function isOtherOnline(room) {
  if (room.kind !== "direct" || !store.me) return false;
  const { users, count } = onlineIn(room.id);
  // The count is exact (a diff's list may lag); in a direct chat more than us means the other.
  return count ? count > 1 : users.some((u) => u.id !== store.me.id);
}

function preview(room) {
  const last = room.last_message;
  if (!last) return room.kind === "direct" ? "New conversation" : "No messages yet";
  const mine = store.me && last.sender.id === store.me.id;
  const files = (last.attachments || []).map((a) => `📎 ${a.filename}`).join(", ");
  const text = last.body || files || "(attachment)";
  // In a direct chat the room already bears the other person's name.
  if (room.kind === "direct" && !mine) return text;
  return `${mine ? "You" : nameOf(last.sender)}: ${text}`;
}

function renderItem(room) {
  const unread = room.unread_count || 0;
  const open = store.openRoomId === room.id;
  const name = roomName(room);
  const button = el("button", {
    type: "button",
    className: "room-item",
    attrs: {
      "aria-label": `${name}${unread ? `, ${unread} unread` : ""}`,
      ...(open ? { "aria-current": "true" } : {}),
    },
    onclick: () => onOpen(room.id),
  },
  // The dot has a column of its own, so the name and the preview line up under each other.
  el("span", { className: `dot${isOtherOnline(room) ? " on" : ""}`, attrs: { "aria-hidden": "true" } }),
  el("span", { className: "room-text" },
    el("span", { className: "room-line" },
      el("span", { className: "room-name" }, name),
      el("span", { className: "room-time" }, shortTime(room.last_message && room.last_message.created_at))),
    el("span", { className: "room-line" },
      el("span", { className: "room-preview" }, preview(room)),
      unread ? el("span", { className: "badge", attrs: { "aria-hidden": "true" } }, unread > 99 ? "99+" : String(unread)) : null)));
  let li = items.get(room.id);
  if (!li) {
    li = el("li", { dataset: { roomId: String(room.id) } });
    items.set(room.id, li);
  }
  const hadFocus = li.contains(document.activeElement);
  li.replaceChildren(button);
  if (hadFocus) button.focus();
  return li;
}

/** Redraw the list in activity order, keeping focus where it was. */
export function renderRoomList() {
  const list = byId("room-list");
  const rooms = [...store.rooms.values()].sort((a, b) => activityOf(b).localeCompare(activityOf(a)) || b.id - a.id);
  for (const [id, li] of items) {
    if (!store.rooms.has(id)) {
      li.remove();
      items.delete(id);
    }
  }
  const wanted = rooms.map(renderItem);
  const current = [...list.children];
  if (wanted.length !== current.length || wanted.some((li, i) => li !== current[i])) {
    const focused = document.activeElement;
    list.replaceChildren(...wanted);
    if (focused && list.contains(focused) && document.activeElement !== focused) focused.focus();
  }
  byId("room-list-empty").hidden = rooms.length > 0;
  renderTitle();
}
