// The room list: name, last message, time, unread badge and an online dot for direct chats;
// the unread total goes to the tab title with every redraw.

import { byId, el, nameOf, shortTime } from "./dom.js";
import { renderTitle } from "./notify.js";
import { onlineIn } from "./presence.js";
import { activityOf, roomName, store } from "./store.js";

const items = new Map();  // room id → <li>
const parts = new WeakMap();  // <li> → the elements each redraw updates in place
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

/** The <li> of a room, built once: every later redraw updates its elements in place. */
function itemOf(roomId) {
  let li = items.get(roomId);
  if (li) return li;
  const item = {
    dot: el("span", { className: "dot", attrs: { "aria-hidden": "true" } }),
    name: el("span", { className: "room-name" }),
    time: el("span", { className: "room-time" }),
    preview: el("span", { className: "room-preview" }),
    badge: el("span", { className: "badge", attrs: { "aria-hidden": "true" } }),
  };
  item.previewLine = el("span", { className: "room-line" }, item.preview);
  // The dot has a column of its own, so the name and the preview line up under each other.
  item.button = el("button", { type: "button", className: "room-item", onclick: () => onOpen(roomId) },
    item.dot,
    el("span", { className: "room-text" }, el("span", { className: "room-line" }, item.name, item.time),
      item.previewLine));
  li = el("li", { dataset: { roomId: String(roomId) } }, item.button);
  items.set(roomId, li);
  parts.set(li, item);
  return li;
}

function setText(node, text) {
  if (node.textContent !== text) node.textContent = text;
}

// The list redraws on every preview, badge and presence change. Its elements stay the same
// (only their text and attributes change), so a click whose press and release straddle a
// redraw still lands, and focus, hover and a screen reader's place are kept.
function renderItem(room) {
  const li = itemOf(room.id);
  const item = parts.get(li);
  const unread = room.unread_count || 0;
  const name = roomName(room);
  const label = `${name}${unread ? `, ${unread} unread` : ""}`;
  if (item.button.getAttribute("aria-label") !== label) item.button.setAttribute("aria-label", label);
  if (store.openRoomId === room.id) item.button.setAttribute("aria-current", "true");
  else item.button.removeAttribute("aria-current");
  item.dot.className = `dot${isOtherOnline(room) ? " on" : ""}`;
  setText(item.name, name);
  setText(item.time, shortTime(room.last_message && room.last_message.created_at));
  setText(item.preview, preview(room));
  if (unread) {
    setText(item.badge, unread > 99 ? "99+" : String(unread));
    if (!item.badge.isConnected) item.previewLine.append(item.badge);
  } else {
    item.badge.remove();
  }
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
