// "New chat" (a direct chat with a contact) and "New group".

import { allPages, api } from "./api.js";
import { byId, el, fullName } from "./dom.js";

let onRoom = () => {};

export function initDialogs(roomCreated) {
  onRoom = roomCreated;
  byId("new-direct").addEventListener("click", openDirectDialog);
  byId("new-group").addEventListener("click", openGroupDialog);
  // Enter in the name field submits too (Create is the form's only submit button); Escape cancels.
  byId("group-form").addEventListener("submit", (event) => {
    event.preventDefault();
    createGroup();
  });
  byId("group-cancel").addEventListener("click", () => byId("group-dialog").close());
}


async function loadContacts(target, errorBox) {
  target.replaceChildren(el("li", { className: "hint" }, "Loading contacts…"));
  errorBox.textContent = "";
  try {
    const contacts = await allPages((cursor) => api.contacts(cursor));
    if (!contacts.length) target.replaceChildren(el("li", { className: "hint" }, "No contacts you may write to."));
    return contacts;
  } catch (err) {
    target.replaceChildren();
    errorBox.textContent = `Could not load contacts: ${err.message}`;
    return [];
  }
}

async function openDirectDialog() {
  const dialog = byId("direct-dialog");
  const list = byId("contact-list");
  dialog.showModal();
  const contacts = await loadContacts(list, byId("direct-error"));
  if (!contacts.length) return;
  list.replaceChildren(...contacts.map((user) => el("li", {},
    el("button", {
      type: "button",
      className: "contact",
      dataset: { username: user.username },
      attrs: { "aria-label": `Chat with ${fullName(user)}${user.online ? ", online" : ""}` },
      onclick: () => startDirect(user),
    },
    el("span", { className: `dot${user.online ? " on" : ""}`, attrs: { "aria-hidden": "true" } }),
    fullName(user)))));
  list.querySelector("button")?.focus();
}

async function startDirect(user) {
  try {
    const room = await api.createDirect(user.id);
    byId("direct-dialog").close();
    onRoom(room);
  } catch (err) {
    byId("direct-error").textContent = `Could not start the chat: ${err.message}`;
  }
}

async function openGroupDialog() {
  const dialog = byId("group-dialog");
  const list = byId("group-members");
  byId("group-name").value = "";
  dialog.showModal();
  byId("group-name").focus();
  const contacts = await loadContacts(list, byId("group-error"));
  if (!contacts.length) return;
  list.replaceChildren(...contacts.map((user) => {
    const id = `group-member-${user.id}`;
    return el("li", {},
      el("input", { type: "checkbox", id, value: String(user.id), dataset: { username: user.username } }),
      el("label", { htmlFor: id }, fullName(user)));
  }));
}

async function createGroup() {
  const name = byId("group-name").value.trim();
  const error = byId("group-error");
  if (!name) {
    error.textContent = "Give the group a name.";
    byId("group-name").focus();
    return;
  }
  const members = [...byId("group-members").querySelectorAll("input:checked")].map((box) => Number(box.value));
  try {
    const room = await api.createGroup(name, members);
    byId("group-dialog").close();
    onRoom(room);
  } catch (err) {
    error.textContent = `Could not create the group: ${err.message}`;
  }
}
