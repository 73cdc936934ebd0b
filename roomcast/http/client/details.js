// Room details: the members with online dots and roles; for owners and moderators, add and
// remove members and rename the room; for everyone in a group, leave it.

import { allPages, api } from "./api.js";
import { byId, el, fullName, plural } from "./dom.js";
import { isOnline, refreshPresence } from "./presence.js";
import { canManage, roomName, store } from "./store.js";

const ROLE_NAMES = { owner: "Owner", moderator: "Moderator" };

let detailsRoomId = null;
let contacts = null;  // loaded once per opening: who could be added
let hooks = { onRoom: () => {}, onLeft: () => {}, onPresence: () => {} };

export function initDetails(options) {
  hooks = { ...hooks, ...options };
  byId("room-details").addEventListener("click", () => openDetails(store.openRoomId));
  byId("details-close").addEventListener("click", () => byId("details-dialog").close());
  byId("details-dialog").addEventListener("close", () => {
    detailsRoomId = null;
    byId("room-details").focus();
  });
  byId("rename-form").addEventListener("submit", (event) => {
    event.preventDefault();
    rename();
  });
  byId("add-member-form").addEventListener("submit", (event) => {
    event.preventDefault();
    addMember();
  });
  byId("leave-room").addEventListener("click", (event) => leave(event.currentTarget));
}

async function openDetails(roomId) {
  if (!store.rooms.get(roomId)) return;
  detailsRoomId = roomId;
  contacts = null;
  byId("details-error").textContent = "";
  byId("leave-room").dataset.confirm = "";
  byId("leave-room").textContent = "Leave room";
  renderDetails();
  byId("details-dialog").showModal();
  byId("details-close").focus();
  refreshPresence(roomId).then((changed) => changed && hooks.onPresence(roomId));
  if (canManage(store.rooms.get(roomId))) {
    try {
      contacts = await allPages((cursor) => api.contacts(cursor));
    } catch (err) {
      contacts = [];
      byId("details-error").textContent = `Could not load contacts: ${err.message}`;
    }
    if (detailsRoomId === roomId) renderDetails();
  }
}

/** Redraw the dialog if it shows `roomId` (a member joined, left, or the room was renamed). */
export function refreshDetails(roomId) {
  if (detailsRoomId !== null && detailsRoomId === roomId) renderDetails();
}

function renderDetails() {
  const room = store.rooms.get(detailsRoomId);
  if (!room) {
    byId("details-dialog").close();
    return;
  }
  const manage = canManage(room);
  const members = [...(room.members || [])].sort((a, b) => roleRank(a) - roleRank(b) || fullName(a).localeCompare(fullName(b)));
  byId("details-title").textContent = roomName(room);
  byId("details-count").textContent = plural(members.length, "member");
  const focusedId = document.activeElement?.dataset?.userId;
  byId("details-members").replaceChildren(...members.map((member) => {
    const me = store.me && member.id === store.me.id;
    const online = isOnline(room.id, member.id);
    const role = ROLE_NAMES[member.room_role];
    return el("li", { className: "member", dataset: { username: member.username } },
      el("span", { className: `dot${online ? " on" : ""}`, attrs: { "aria-hidden": "true" } }),
      el("span", { className: "member-name" }, fullName(member), me ? " (you)" : ""),
      el("span", { className: "visually-hidden" }, online ? ", online" : ", offline"),
      role ? el("span", { className: "role" }, role) : null,
      manage && !me ? el("button", {
        type: "button", className: "quiet danger", dataset: { userId: String(member.id) },
        attrs: { "aria-label": `Remove ${fullName(member)} from the room` },
        onclick: () => removeMember(member),
      }, "Remove") : null);
  }));
  if (focusedId) byId("details-members").querySelector(`[data-user-id="${focusedId}"]`)?.focus();
  const group = room.kind !== "direct";
  byId("rename-form").hidden = !(manage && group);
  if (byId("rename-input") !== document.activeElement) byId("rename-input").value = room.name || "";
  byId("add-member-form").hidden = !manage;
  const select = byId("add-member-select");
  const memberIds = new Set(members.map((m) => m.id));
  const candidates = (contacts || []).filter((user) => !memberIds.has(user.id));
  select.replaceChildren(
    el("option", { value: "" }, contacts === null ? "Loading contacts…" : candidates.length ? "Choose a person" : "Everyone is already here"),
    ...candidates.map((user) => el("option", { value: String(user.id) }, fullName(user))));
  select.disabled = !candidates.length;
  byId("add-member-submit").disabled = !candidates.length;
  byId("leave-room").hidden = !group;
}

function roleRank(member) {
  return { owner: 0, moderator: 1 }[member.room_role] ?? 2;
}

/** After a change: take the room as the server has it now. */
async function reload(roomId) {
  const room = await api.room(roomId);
  hooks.onRoom(room);
  refreshDetails(roomId);
}

async function act(what, work) {
  const roomId = detailsRoomId;
  byId("details-error").textContent = "";
  try {
    await work(roomId);
    await reload(roomId);
  } catch (err) {
    byId("details-error").textContent = `Could not ${what}: ${err.message}`;
  }
}

function rename() {
  const name = byId("rename-input").value.trim();
  if (!name) {
    byId("details-error").textContent = "Give the room a name.";
    return;
  }
  act("rename the room", (roomId) => api.rename(roomId, name));
}

function addMember() {
  const userId = Number(byId("add-member-select").value);
  if (!userId) return;
  act("add the member", (roomId) => api.addMember(roomId, userId)).then(() => byId("add-member-select").focus());
}

function removeMember(member) {
  act(`remove ${fullName(member)}`, (roomId) => api.removeMember(roomId, member.id))
    .then(() => byId("details-close").focus());
}

async function leave(button) {
  // A second click confirms, as for deleting a message.
  if (button.dataset.confirm !== "yes") {
    button.dataset.confirm = "yes";
    button.textContent = "Really leave?";
    button.addEventListener("blur", () => {
      button.dataset.confirm = "";
      button.textContent = "Leave room";
    }, { once: true });
    return;
  }
  const roomId = detailsRoomId;
  try {
    await api.removeMember(roomId, store.me.id);
    byId("details-dialog").close();
    hooks.onLeft(roomId);
  } catch (err) {
    byId("details-error").textContent = `Could not leave: ${err.message}`;
  }
}
