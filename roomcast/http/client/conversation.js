// The open room: history (older pages on scroll up), live messages, edits and deletions,
// the composer, typing, who is online and read receipts.

import { api, ApiError } from "./api.js";
import { byId, el, nameOf, randomId, shortTime } from "./dom.js";
import { roomName, store } from "./store.js";

const PAGE = 50;
const TYPING_SEND_EVERY_MS = 3000;
const TYPING_IDLE_MS = 4000;
const TYPING_SHOWN_MS = 6000;
const NEAR_BOTTOM_PX = 48;

let hooks = { sendFrame: () => false, onRead: () => {} };

// State of the room on screen; reset by openConversation().
let view = null;

function freshView(roomId) {
  return {
    roomId,
    messages: new Map(),  // message id → {message, li}
    deleted: new Set(),  // ids deleted while open: a late history page must not bring them back
    hasMore: false,
    loadingOlder: false,
    typing: new Map(),  // user id → {user, timer}
    typingSentAt: 0,
    typingIdle: null,
  };
}

export function initConversation(options) {
  hooks = { ...hooks, ...options };
  const input = byId("composer-input");
  byId("composer").addEventListener("submit", (event) => {
    event.preventDefault();
    sendComposed();
  });
  input.addEventListener("keydown", (event) => {
    // Enter sends, Shift+Enter is a newline; never while an IME is composing a character.
    if (event.key === "Enter" && !event.shiftKey && !event.isComposing) {
      event.preventDefault();
      sendComposed();
    }
  });
  input.addEventListener("input", () => {
    autoGrow(input);
    noteTyping();
  });
  const scroller = byId("messages");
  scroller.addEventListener("scroll", () => {
    if (scroller.scrollTop < 80) loadOlder();
    if (isNearBottom()) markSeen();
  });
  byId("load-older").addEventListener("click", () => loadOlder());
  document.addEventListener("visibilitychange", () => markSeen());
  window.addEventListener("focus", () => markSeen());
}

function autoGrow(input) {
  input.style.height = "auto";
  input.style.height = `${Math.min(input.scrollHeight, 200)}px`;
}

function isNearBottom() {
  const scroller = byId("messages");
  return scroller.scrollHeight - scroller.scrollTop - scroller.clientHeight < NEAR_BOTTOM_PX;
}

function scrollToBottom() {
  const scroller = byId("messages");
  scroller.scrollTop = scroller.scrollHeight;
}

export function currentRoomId() {
  return view ? view.roomId : null;
}

/** Whether the user can see new messages of `roomId` right now (so they count as read). */
export function isSeeing(roomId) {
  return Boolean(view && view.roomId === roomId && document.visibilityState === "visible" && isNearBottom());
}

/** Show a room: its header, the newest page of history, then whatever arrives live. */
export async function openConversation(roomId) {
  const room = store.rooms.get(roomId);
  if (!room) return;
  stopTyping();
  view = freshView(roomId);
  const mine = view;
  byId("message-list").replaceChildren();
  byId("composer").hidden = false;
  byId("composer-error").textContent = "";
  byId("load-older").hidden = true;
  renderHeader();
  renderTyping();
  try {
    const page = await api.history(roomId, null, PAGE);
    if (view !== mine) return;  // the user moved on while this loaded
    mine.hasMore = page.has_more;
    for (const message of page.items) upsertMessage(message, { fromHistory: true });
    renderOlderButton();
    scrollToBottom();
    // A short first page in a tall window leaves nothing to scroll: keep loading until it scrolls.
    const scroller = byId("messages");
    while (view === mine && mine.hasMore && scroller.scrollHeight <= scroller.clientHeight) {
      if (!(await loadOlder())) break;
    }
    markSeen();
  } catch (err) {
    if (view === mine) byId("composer-error").textContent = `Could not load messages: ${err.message}`;
  }
}

export function closeConversation() {
  stopTyping();
  view = null;
  byId("message-list").replaceChildren();
  byId("composer").hidden = true;
  byId("load-older").hidden = true;
  byId("room-title").textContent = "Pick a conversation";
  byId("room-online").textContent = "";
  byId("typing").textContent = "";
}

function renderOlderButton() {
  byId("load-older").hidden = !(view && view.hasMore);
}

/** Fetch the page before the oldest message shown, keeping the reader's place. */
async function loadOlder() {
  if (!view || !view.hasMore || view.loadingOlder) return false;
  const mine = view;
  const oldest = [...mine.messages.values()].reduce((min, m) => Math.min(min, m.message.seq), Infinity);
  if (!Number.isFinite(oldest)) return false;
  mine.loadingOlder = true;
  const scroller = byId("messages");
  try {
    const page = await api.history(mine.roomId, oldest, PAGE);
    if (view !== mine) return false;
    const fromBottom = scroller.scrollHeight - scroller.scrollTop;
    for (const message of page.items) upsertMessage(message, { fromHistory: true });
    mine.hasMore = page.has_more;
    scroller.scrollTop = scroller.scrollHeight - fromBottom;
    renderOlderButton();
    return true;
  } catch (err) {
    byId("composer-error").textContent = `Could not load older messages: ${err.message}`;
    return false;
  } finally {
    mine.loadingOlder = false;
  }
}

// ------------------------------------------------------------------ messages

function messageItem(message) {
  const mine = store.me && message.sender.id === store.me.id;
  const li = el("li", {
    className: `message${mine ? " mine" : ""}`,
    dataset: { id: String(message.id), seq: String(message.seq), sender: message.sender.username },
  });
  fillMessage(li, message);
  return li;
}

function fillMessage(li, message) {
  const mine = store.me && message.sender.id === store.me.id;
  const meta = el("div", { className: "meta" },
    el("span", { className: "author" }, mine ? "You" : nameOf(message.sender)),
    el("time", { dateTime: message.created_at, title: message.created_at }, shortTime(message.created_at)),
    message.edited_at ? el("span", { className: "edited" }, "(edited)") : null);
  // The body is text, always: textContent keeps "<img onerror=…>" as the characters it is.
  const body = el("p", { className: "body" });
  body.textContent = message.body;
  const attachments = (message.attachments || []).map((a) =>
    el("span", { className: "attachment" }, `📎 ${a.filename}`));
  const actions = mine
    ? el("div", { className: "actions" },
      el("button", { type: "button", className: "quiet", attrs: { "aria-label": "Edit message" }, onclick: () => startEdit(li) }, "Edit"),
      el("button", { type: "button", className: "quiet danger", attrs: { "aria-label": "Delete message" }, onclick: (e) => askDelete(li, e.currentTarget) }, "Delete"))
    : null;
  const receipt = el("p", { className: "receipt" });
  li.replaceChildren(meta, body, ...attachments, actions || "", receipt);
  li.dataset.seq = String(message.seq);
}

/** Put a message on screen, or update it in place; ordered by seq, never shown twice. */
function upsertMessage(message, { fromHistory = false } = {}) {
  if (!view || message.room_id !== view.roomId || view.deleted.has(message.id)) return;
  const known = view.messages.get(message.id);
  if (known) {
    // A history page may be older than an edit that arrived live; keep the newer text.
    if (fromHistory && (known.message.edited_at || "") > (message.edited_at || "")) return;
    if (known.li.classList.contains("editing")) {
      known.message = message;
      return;
    }
    known.message = message;
    fillMessage(known.li, message);
    renderReceipts();
    return;
  }
  const li = messageItem(message);
  view.messages.set(message.id, { message, li });
  const list = byId("message-list");
  let after = list.lastElementChild;
  while (after && Number(after.dataset.seq) > message.seq) after = after.previousElementSibling;
  if (after) after.after(li);
  else list.prepend(li);
  renderReceipts();
}

function removeMessage(messageId) {
  if (!view) return;
  view.deleted.add(messageId);
  const known = view.messages.get(messageId);
  if (known) {
    const hadFocus = known.li.contains(document.activeElement);
    known.li.remove();
    view.messages.delete(messageId);
    if (hadFocus) byId("composer-input").focus();
    renderReceipts();
  }
}

function startEdit(li) {
  const known = view && view.messages.get(Number(li.dataset.id));
  if (!known || li.classList.contains("editing")) return;
  li.classList.add("editing");
  const editor = el("textarea", { className: "edit-input", value: known.message.body, attrs: { "aria-label": "Edit message text" } });
  const finish = () => {
    li.classList.remove("editing");
    const latest = view && view.messages.get(known.message.id);
    if (latest) fillMessage(li, latest.message);
  };
  const save = async () => {
    const text = editor.value;
    if (!text.trim() || text === known.message.body) {
      finish();
      return;
    }
    try {
      const updated = await api.edit(known.message.room_id, known.message.id, text);
      known.message = updated;
      finish();
      li.querySelector("button")?.focus();
    } catch (err) {
      byId("composer-error").textContent = `Not saved: ${err.message}`;
    }
  };
  editor.addEventListener("keydown", (event) => {
    if (event.key === "Enter" && !event.shiftKey && !event.isComposing) {
      event.preventDefault();
      save();
    } else if (event.key === "Escape") {
      event.preventDefault();
      finish();
    }
  });
  const form = el("div", { className: "edit-form" }, editor,
    el("div", { className: "edit-actions" },
      el("button", { type: "button", onclick: save }, "Save"),
      el("button", { type: "button", className: "quiet", onclick: finish }, "Cancel")));
  li.querySelector(".body").replaceWith(form);
  li.querySelector(".actions")?.remove();
  editor.focus();
  editor.setSelectionRange(editor.value.length, editor.value.length);
}

function askDelete(li, button) {
  // A second click confirms: no modal, and nothing is lost to a stray click.
  if (button.dataset.confirm !== "yes") {
    button.dataset.confirm = "yes";
    button.textContent = "Confirm delete";
    button.addEventListener("blur", () => {
      button.dataset.confirm = "";
      button.textContent = "Delete";
    }, { once: true });
    return;
  }
  const known = view && view.messages.get(Number(li.dataset.id));
  if (!known) return;
  api.remove(known.message.room_id, known.message.id)
    .then(() => removeMessage(known.message.id))
    .catch((err) => { byId("composer-error").textContent = `Not deleted: ${err.message}`; });
}

async function sendComposed() {
  if (!view) return;
  const input = byId("composer-input");
  const body = input.value;
  if (!body.trim()) return;
  const roomId = view.roomId;
  const clientId = randomId();
  input.value = "";
  autoGrow(input);
  stopTyping();
  byId("composer-error").textContent = "";
  // REST, with a client_id: the 201 means committed, and a retry can never send it twice.
  try {
    const message = await api.send(roomId, body, clientId);
    upsertMessage(message);
    if (view && view.roomId === roomId) scrollToBottom();
  } catch (err) {
    if (view && view.roomId === roomId && !input.value) {
      input.value = body;
      autoGrow(input);
    }
    const reason = err instanceof ApiError && err.status === 0 ? "the server cannot be reached" : err.message;
    byId("composer-error").textContent = `Not sent: ${reason}`;
  }
}

// ------------------------------------------------------------------ live events

/** Apply a stored room event (already de-duplicated by seq) to the open room. */
export function applyRoomEvent(event) {
  if (!view || event.room !== view.roomId) return;
  if (event.type === "message") {
    const follow = isNearBottom();
    clearTyping(event.message.sender.id);
    upsertMessage(event.message);
    if (follow || (store.me && event.message.sender.id === store.me.id)) scrollToBottom();
    markSeen();
  } else if (event.type === "message_edited") {
    if (view.messages.has(event.message.id)) upsertMessage(event.message);
  } else if (event.type === "message_deleted") {
    removeMessage(event.message_id);
  } else if (event.type === "room_updated") {
    renderHeader();
  }
}

export function renderHeader() {
  if (!view) return;
  const room = store.rooms.get(view.roomId);
  if (!room) return;
  byId("room-title").textContent = roomName(room);
  const online = store.online.get(room.id) || [];
  const names = online.map((u) => (store.me && u.id === store.me.id ? "you" : nameOf(u)));
  const members = (room.members || []).length;
  const count = room.kind === "direct" ? "" : `${members} members · `;
  byId("room-online").textContent = online.length ? `${count}Online: ${names.join(", ")}` : `${count}Nobody else online`;
  byId("composer-input").disabled = room.is_active === false;
  byId("composer-input").placeholder = room.is_active === false
    ? "This room is closed" : "Write a message (Enter sends, Shift+Enter for a new line)";
}

export function applyTyping(event) {
  if (!view || event.room !== view.roomId || (store.me && event.user.id === store.me.id)) return;
  clearTyping(event.user.id);
  if (event.state) {
    // A typist who vanishes without "stopped" (closed laptop) fades out on its own.
    const timer = setTimeout(() => clearTyping(event.user.id), TYPING_SHOWN_MS);
    view.typing.set(event.user.id, { user: event.user, timer });
  }
  renderTyping();
}

function clearTyping(userId) {
  if (!view) return;
  const entry = view.typing.get(userId);
  if (entry) {
    clearTimeout(entry.timer);
    view.typing.delete(userId);
    renderTyping();
  }
}

function renderTyping() {
  const names = view ? [...view.typing.values()].map((t) => nameOf(t.user)) : [];
  let text = "";
  if (names.length === 1) text = `${names[0]} is typing…`;
  else if (names.length === 2) text = `${names[0]} and ${names[1]} are typing…`;
  else if (names.length > 2) text = "Several people are typing…";
  byId("typing").textContent = text;
}

function noteTyping() {
  if (!view) return;
  const now = Date.now();
  if (now - view.typingSentAt > TYPING_SEND_EVERY_MS) {
    view.typingSentAt = now;
    hooks.sendFrame({ type: "typing", room: view.roomId, state: true });
  }
  clearTimeout(view.typingIdle);
  view.typingIdle = setTimeout(stopTyping, TYPING_IDLE_MS);
}

function stopTyping() {
  if (!view || !view.typingSentAt) return;
  clearTimeout(view.typingIdle);
  view.typingSentAt = 0;
  hooks.sendFrame({ type: "typing", room: view.roomId, state: false });
}

export function applyRead(event) {
  if (!view || event.room !== view.roomId) return;
  renderReceipts();
}

/** "Seen by …" under the newest message each other reader has reached. */
function renderReceipts() {
  if (!view) return;
  const readers = store.readers.get(view.roomId) || new Map();
  const byMessage = new Map();
  const items = [...byId("message-list").children];
  for (const { user, seq } of readers.values()) {
    const reached = items.findLast((li) => Number(li.dataset.seq) <= seq);
    if (!reached) continue;
    if (!byMessage.has(reached)) byMessage.set(reached, []);
    byMessage.get(reached).push(nameOf(user));
  }
  for (const li of items) {
    const receipt = li.querySelector(".receipt");
    if (!receipt) continue;
    const names = byMessage.get(li);
    receipt.textContent = names ? `Seen by ${names.join(", ")}` : "";
  }
}

/** Mark the open room read up to the last seq seen, when the user can actually see it. */
export function markSeen() {
  if (!view) return;
  const roomId = view.roomId;
  if (!isSeeing(roomId)) return;
  hooks.onRead(roomId);
}
