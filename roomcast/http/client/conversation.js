// The open room: history (older pages on scroll up), live messages grouped by sender under day
// separators, edits, deletions and replies, the composer with its outbox, typing, who is online,
// read receipts, the "new messages" divider and the jump-to-latest button.

import { api } from "./api.js";
import { attachmentNodes, clearAttachments, takeAttachments, uploading } from "./attachments.js";
import { byId, dayKey, dayLabel, el, fullTime, nameOf, plural, relativeTime } from "./dom.js";
import { onlineIn } from "./presence.js";
import { roomName, store } from "./store.js";

const PAGE = 50;
const TYPING_SEND_EVERY_MS = 3000;
const TYPING_IDLE_MS = 4000;
const TYPING_SHOWN_MS = 6000;
const NEAR_BOTTOM_PX = 48;
// Messages of one sender closer together than this are shown as one group.
const GROUP_GAP_MS = 5 * 60 * 1000;
const QUOTE_CHARS = 140;
const PLACEHOLDER = "Write a message (Enter sends, Shift+Enter for a new line)";

let hooks = { sendFrame: () => false, onRead: () => {}, client: null };

// State of the room on screen; reset by openConversation().
let view = null;

function freshView(roomId) {
  return {
    roomId,
    messages: new Map(),  // message id → {message, li}
    deleted: new Set(),  // ids deleted while open: a late history page must not bring them back
    historyLoaded: false,  // the newest page came; until then a reconnect tries again
    loadingNewest: false,
    unreadAtOpen: 0,
    hasMore: false,
    loadingOlder: false,
    typing: new Map(),  // user id → {user, timer}
    typingSentAt: 0,
    typingIdle: null,
    dividerSeq: null,  // the first message not seen when it came: "New messages" goes above it
    dividerStale: false,  // everything was seen since: the next unseen message moves the divider
    unseen: 0,  // messages that arrived while scrolled up or away
    replyTo: null,  // the message the composer replies to
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
    } else if (event.key === "Escape" && view && view.replyTo) {
      event.preventDefault();
      setReply(null);
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
    renderJump();
  });
  byId("load-older").addEventListener("click", () => loadOlder());
  byId("jump-latest").addEventListener("click", () => {
    scrollToBottom();
    markSeen();
    byId("composer-input").focus();
  });
  byId("reply-cancel").addEventListener("click", () => {
    setReply(null);
    byId("composer-input").focus();
  });
  document.addEventListener("visibilitychange", () => markSeen());
  window.addEventListener("focus", () => markSeen());
  document.addEventListener("click", (event) => {
    if (!event.target.closest(".menu-wrap")) closeMenus();
  });
  // Relative times ("5 min ago") move on by themselves.
  setInterval(() => {
    for (const time of document.querySelectorAll("#message-list time.when")) {
      time.textContent = relativeTime(time.dateTime);
    }
  }, 30000);
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
  renderJump();
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
  clearAttachments();
  view = freshView(roomId);
  view.unreadAtOpen = room.unread_count || 0;
  const mine = view;
  byId("message-list").replaceChildren();
  byId("composer").hidden = false;
  byId("composer-error").textContent = "";
  byId("load-older").hidden = true;
  setReply(null);
  renderHeader();
  renderTyping();
  renderOutbox();
  await loadNewest(mine);
}

/** The newest page of history (then older pages until the list scrolls), merged with what came live. */
async function loadNewest(mine) {
  if (mine.loadingNewest) return;
  mine.loadingNewest = true;
  try {
    const page = await api.history(mine.roomId, null, PAGE);
    if (view !== mine) return;  // the user moved on while this loaded
    mine.historyLoaded = true;
    mine.hasMore = page.has_more;
    for (const message of page.items) upsertMessage(message, { fromHistory: true, layout: false });
    if (mine.unreadAtOpen) placeDividerForUnread(mine.unreadAtOpen);
    relayout();
    renderOlderButton();
    scrollToBottom();
    // A short first page in a tall window leaves nothing to scroll: keep loading until it scrolls.
    const scroller = byId("messages");
    while (view === mine && mine.hasMore && scroller.scrollHeight <= scroller.clientHeight) {
      if (!(await loadOlder())) break;
    }
    renderJump();
    markSeen();
  } catch (err) {
    if (view === mine) byId("composer-error").textContent = `Could not load messages: ${err.message}`;
  } finally {
    mine.loadingNewest = false;
  }
}

/**
 * The connection is back: if the open room's history could not be loaded (the server was out of
 * reach when it was opened), load it now. Only what came live would show otherwise, with no
 * "Load older" and no sign that everything before it is missing.
 */
export function retryHistory() {
  if (view && !view.historyLoaded) loadNewest(view);
}

/** Put the divider above the `unread`-th newest message of someone else. */
function placeDividerForUnread(unread) {
  const others = [...view.messages.values()].map((m) => m.message)
    .filter((m) => !isMine(m)).sort((a, b) => a.seq - b.seq);
  const first = others[Math.max(0, others.length - unread)];
  if (first) view.dividerSeq = first.seq;
}

export function closeConversation() {
  stopTyping();
  clearAttachments();
  view = null;
  byId("message-list").replaceChildren();
  byId("outbox-list").replaceChildren();
  byId("composer").hidden = true;
  byId("load-older").hidden = true;
  byId("jump-latest").hidden = true;
  byId("reply-bar").hidden = true;
  byId("room-details").hidden = true;
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
    for (const message of page.items) upsertMessage(message, { fromHistory: true, layout: false });
    relayout();
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

function isMine(message) {
  return Boolean(store.me && message.sender.id === store.me.id);
}

function messageItem(message) {
  const li = el("li", {
    className: `message${isMine(message) ? " mine" : ""}`,
    dataset: { id: String(message.id) },
  });
  fillMessage(li, message);
  return li;
}

function fillMessage(li, message) {
  const mine = isMine(message);
  const meta = el("div", { className: "meta" },
    el("span", { className: "author" }, mine ? "You" : nameOf(message.sender)),
    el("time", { className: "when", dateTime: message.created_at, title: fullTime(message.created_at) },
      relativeTime(message.created_at)),
    message.edited_at
      ? el("span", { className: "edited", title: `Edited ${fullTime(message.edited_at)}` }, "(edited)")
      : null);
  const quote = message.reply_to ? el("button", {
    type: "button", className: "reply-quote", dataset: { replyTo: String(message.reply_to) },
    onclick: () => showOriginal(message.reply_to),
  }) : null;
  // The body is text, always: textContent keeps "<img onerror=…>" as the characters it is.
  const body = el("p", { className: "body" });
  body.textContent = message.body;
  const receipt = el("p", { className: "receipt" });
  li.replaceChildren(meta, quote || "", message.body ? body : "", attachmentNodes(message) || "",
    actionsFor(li, message), receipt);
  if (quote) fillQuote(quote);
  li.dataset.seq = String(message.seq);
  li.dataset.senderId = String(message.sender.id);
  li.dataset.created = message.created_at;
}

/** Reply, Edit, Delete on hover or focus, and the same in a menu that the keyboard reaches. */
function actionsFor(li, message) {
  const mine = isMine(message);
  const items = [
    ["Reply", "Reply to message", () => startReply(li)],
    ...(mine ? [["Edit", "Edit message", () => startEdit(li)],
      ["Delete", "Delete message", (event) => askDelete(li, event.currentTarget)]] : []),
  ];
  const bar = el("div", { className: "actions", attrs: { role: "group", "aria-label": "Message actions" } },
    ...items.map(([text, label, act]) => el("button", {
      type: "button", className: `quiet${text === "Delete" ? " danger" : ""}`, attrs: { "aria-label": label }, onclick: act,
    }, text)));
  const menu = el("ul", { className: "menu", hidden: true, attrs: { role: "menu", "aria-label": "Message actions" } },
    ...items.map(([text, label, act]) => el("li", { attrs: { role: "none" } }, el("button", {
      type: "button", className: "menu-item", attrs: { role: "menuitem", "aria-label": `${label} (menu)` },
      onclick: (event) => {
        closeMenus();
        if (text === "Delete") {
          // From the menu, the toolbar's Delete asks for the confirmation.
          const button = li.querySelector(".actions button[aria-label='Delete message']");
          button.focus();
          askDelete(li, button);
        } else {
          act(event);
        }
      },
    }, text))));
  const toggle = el("button", {
    type: "button", className: "quiet more",
    attrs: { "aria-label": "More actions", "aria-haspopup": "menu", "aria-expanded": "false" },
    onclick: () => toggleMenu(toggle, menu),
  }, "⋯");
  menu.addEventListener("keydown", (event) => menuKeys(event, toggle, menu));
  bar.append(el("span", { className: "menu-wrap" }, toggle, menu));
  return bar;
}

function toggleMenu(toggle, menu) {
  const open = menu.hidden;
  closeMenus();
  if (!open) return;
  menu.hidden = false;
  toggle.setAttribute("aria-expanded", "true");
  toggle.closest(".message")?.classList.add("menu-open");
  menu.querySelector("button")?.focus();
}

function closeMenus() {
  for (const menu of document.querySelectorAll("#message-list .menu:not([hidden])")) {
    menu.hidden = true;
    const toggle = menu.parentElement.querySelector(".more");
    toggle.setAttribute("aria-expanded", "false");
    menu.closest(".message")?.classList.remove("menu-open");
  }
}

function menuKeys(event, toggle, menu) {
  const buttons = [...menu.querySelectorAll("button")];
  const at = buttons.indexOf(document.activeElement);
  if (event.key === "ArrowDown" || event.key === "ArrowUp") {
    event.preventDefault();
    const step = event.key === "ArrowDown" ? 1 : -1;
    buttons[(at + step + buttons.length) % buttons.length].focus();
  } else if (event.key === "Home" || event.key === "End") {
    event.preventDefault();
    buttons[event.key === "Home" ? 0 : buttons.length - 1].focus();
  } else if (event.key === "Escape" || event.key === "Tab") {
    if (event.key === "Escape") event.preventDefault();
    closeMenus();
    if (event.key === "Escape") toggle.focus();
  }
}

/** The quoted original of a reply: who wrote it and how it began. */
function fillQuote(quote) {
  const id = Number(quote.dataset.replyTo);
  const original = view && view.messages.get(id);
  let who = "";
  let text;
  if (original) {
    who = isMine(original.message) ? "You" : nameOf(original.message.sender);
    const body = original.message.body || (original.message.attachments || []).map((a) => `📎 ${a.filename}`).join(", ");
    text = body.length > QUOTE_CHARS ? `${body.slice(0, QUOTE_CHARS)}…` : body;
  } else {
    text = view && view.deleted.has(id) ? "a deleted message" : "an earlier message";
  }
  quote.replaceChildren(el("span", { className: "quote-author" }, who ? `${who}: ` : "Reply to "), text);
  quote.setAttribute("aria-label", `Reply to ${who ? `${who}: ` : ""}${text}`);
  quote.disabled = !original;
}

function showOriginal(messageId) {
  const original = view && view.messages.get(messageId);
  if (!original) return;
  original.li.scrollIntoView({ block: "center", behavior: "smooth" });
  original.li.classList.add("flash");
  setTimeout(() => original.li.classList.remove("flash"), 1500);
}

/** Put a message on screen, or update it in place; ordered by seq, never shown twice. */
function upsertMessage(message, { fromHistory = false, layout = true } = {}) {
  if (!view || message.room_id !== view.roomId || view.deleted.has(message.id)) return;
  const known = view.messages.get(message.id);
  if (known) {
    // A history page may be older than an edit that arrived live; keep the newer text.
    if (fromHistory && (known.message.edited_at || "") > (message.edited_at || "")) return;
    // The same message again (the REST answer and the live event both bring it): nothing to redraw.
    const same = (known.message.edited_at || "") === (message.edited_at || "") && known.message.body === message.body;
    known.message = message;
    if (same) return;
    if (known.li.classList.contains("editing")) return;
    const hadFocus = known.li.contains(document.activeElement);
    fillMessage(known.li, message);
    if (hadFocus) known.li.querySelector(".actions button")?.focus();
    if (layout) relayout();
    return;
  }
  const li = messageItem(message);
  view.messages.set(message.id, { message, li });
  const list = byId("message-list");
  let after = list.lastElementChild;
  while (after && (!after.classList.contains("message") || Number(after.dataset.seq) > message.seq)) {
    after = after.previousElementSibling;
  }
  if (after) after.after(li);
  else list.prepend(li);
  if (message.client_id) renderOutbox();  // our own message, sent from this or another tab
  if (layout) relayout();
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
    relayout();
  }
}

/**
 * Day separators, sender groups, the "New messages" divider, reply quotes and receipts, all
 * derived from the messages in order. Only separators are inserted or removed, so focus stays.
 */
function relayout() {
  if (!view) return;
  const list = byId("message-list");
  for (const node of list.querySelectorAll(":scope > li.day, :scope > li.new-divider")) node.remove();
  let previous = null;
  for (const li of list.querySelectorAll(":scope > li.message")) {
    const day = dayKey(li.dataset.created);
    const newDay = !previous || dayKey(previous.dataset.created) !== day;
    if (newDay) {
      li.before(el("li", { className: "day", attrs: { role: "separator", "aria-label": dayLabel(li.dataset.created) } },
        el("span", {}, dayLabel(li.dataset.created))));
    }
    const divider = view.dividerSeq !== null && Number(li.dataset.seq) === view.dividerSeq;
    if (divider) {
      li.before(el("li", { className: "new-divider", attrs: { role: "separator", "aria-label": "New messages" } },
        el("span", {}, "New messages")));
    }
    const gap = previous ? new Date(li.dataset.created) - new Date(previous.dataset.created) : Infinity;
    const grouped = !newDay && !divider && previous.dataset.senderId === li.dataset.senderId && gap < GROUP_GAP_MS
      && !li.querySelector(".reply-quote");
    li.classList.toggle("grouped", grouped);
    // A grouped message shows no name or time line (that would move the layout on hover): its time is the tooltip.
    if (grouped) li.title = fullTime(li.dataset.created);
    else li.removeAttribute("title");
    previous = li;
  }
  for (const quote of list.querySelectorAll(".reply-quote")) fillQuote(quote);
  renderReceipts();
}

function startReply(li) {
  const known = view && view.messages.get(Number(li.dataset.id));
  if (!known) return;
  setReply(known.message);
  byId("composer-input").focus();
}

function setReply(message) {
  if (view) view.replyTo = message;
  const bar = byId("reply-bar");
  bar.hidden = !message;
  if (!message) return;
  const who = isMine(message) ? "yourself" : nameOf(message.sender);
  const text = message.body || (message.attachments || []).map((a) => a.filename).join(", ");
  byId("reply-text").replaceChildren(el("strong", {}, `Replying to ${who}: `),
    text.length > QUOTE_CHARS ? `${text.slice(0, QUOTE_CHARS)}…` : text);
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
    relayout();
  };
  const save = async () => {
    const text = editor.value;
    if ((!text.trim() && !(known.message.attachments || []).length) || text === known.message.body) {
      finish();
      li.querySelector(".actions button")?.focus();
      return;
    }
    try {
      const updated = await api.edit(known.message.room_id, known.message.id, text);
      known.message = updated;
      finish();
      li.querySelector(".actions button")?.focus();
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
      li.querySelector(".actions button")?.focus();
    }
  });
  const form = el("div", { className: "edit-form" }, editor,
    el("div", { className: "edit-actions" },
      el("button", { type: "button", onclick: save }, "Save"),
      el("button", { type: "button", className: "quiet", onclick: finish }, "Cancel")));
  const body = li.querySelector(".body");
  if (body) body.replaceWith(form);
  else li.querySelector(".meta").after(form);  // an attachment-only message gets its first text
  li.querySelector(".actions")?.remove();
  editor.focus();
  editor.setSelectionRange(editor.value.length, editor.value.length);
}

function askDelete(li, button) {
  // A second click confirms: no modal, and nothing is lost to a stray click.
  if (button.dataset.confirm !== "yes") {
    button.dataset.confirm = "yes";
    button.textContent = "Confirm delete";
    li.classList.add("confirming");
    button.addEventListener("blur", () => {
      button.dataset.confirm = "";
      button.textContent = "Delete";
      li.classList.remove("confirming");
    }, { once: true });
    return;
  }
  const known = view && view.messages.get(Number(li.dataset.id));
  if (!known) return;
  api.remove(known.message.room_id, known.message.id)
    .then(() => removeMessage(known.message.id))
    .catch((err) => { byId("composer-error").textContent = `Not deleted: ${err.message}`; });
}

// ------------------------------------------------------------------ composer and outbox

function sendComposed() {
  if (!view) return;
  const input = byId("composer-input");
  const body = input.value;
  const error = byId("composer-error");
  if (uploading()) {
    error.textContent = "Wait for the upload to finish, then send.";
    return;
  }
  const limit = store.config ? store.config.max_body_chars : 4000;
  if ([...body].length > limit) {
    error.textContent = `Messages can be at most ${plural(limit, "character")}.`;
    return;
  }
  const attachments = takeAttachments();
  if (!body.trim() && !attachments.length) return;
  const roomId = view.roomId;
  // Into the outbox, with a client_id: sent now if connected, else when the connection returns;
  // a retry can never store it twice.
  hooks.client.send(roomId, attachments.length && !body.trim() ? "" : body,
    { replyTo: view.replyTo ? view.replyTo.id : null, attachments });
  input.value = "";
  autoGrow(input);
  stopTyping();
  setReply(null);
  error.textContent = "";
  scrollToBottom();
}

/** Our messages of the open room that wait in the outbox, or failed, below the others. */
export function renderOutbox() {
  const list = byId("outbox-list");
  if (!view || !hooks.client) {
    list.replaceChildren();
    return;
  }
  const shown = new Set([...view.messages.values()].map((m) => m.message.client_id).filter(Boolean));
  const items = hooks.client.pending(view.roomId).filter((item) => !shown.has(item.client_id));
  const online = hooks.client.status === "open";
  const hadFocus = list.contains(document.activeElement) ? document.activeElement.dataset.action : null;
  list.replaceChildren(...items.map((item) => {
    const failed = item.state === "failed";
    const status = failed ? `Not sent: ${item.error.message}`
      : online ? "Sending…" : "Not sent yet: it will be sent when the connection returns";
    const body = el("p", { className: "body" });
    body.textContent = item.body;
    return el("li", {
      className: `message mine pending${failed ? " failed" : ""}`, dataset: { clientId: item.client_id },
    },
    el("div", { className: "meta" }, el("span", { className: "author" }, "You"),
      el("span", { className: "pending-state", attrs: { role: failed ? "alert" : "status" } }, status)),
    item.body ? body : null,
    item.attachments.length ? el("p", { className: "hint-line" }, `📎 ${plural(item.attachments.length, "file")}`) : null,
    failed ? el("div", { className: "pending-actions" },
      el("button", {
        type: "button", dataset: { action: "retry" }, attrs: { "aria-label": "Retry sending" },
        onclick: () => hooks.client.retry(item.client_id),
      }, "Retry"),
      el("button", {
        type: "button", className: "quiet danger", dataset: { action: "discard" }, attrs: { "aria-label": "Discard message" },
        onclick: () => {
          hooks.client.discard(item.client_id);
          byId("composer-input").focus();
        },
      }, "Discard")) : null);
  }));
  if (hadFocus) list.querySelector(`[data-action="${hadFocus}"]`)?.focus();
}

/** An outbox entry was committed: show the message (its live event may come before or after). */
export function messageSent(message) {
  const follow = isNearBottom();
  upsertMessage(message);
  renderOutbox();
  if (follow) scrollToBottom();
}

// ------------------------------------------------------------------ live events

/** Apply a stored room event (already de-duplicated by seq) to the open room. */
export function applyRoomEvent(event) {
  if (!view || event.room !== view.roomId) return;
  if (event.type === "message") {
    const follow = isNearBottom();
    const seeing = isSeeing(view.roomId);
    clearTyping(event.message.sender.id);
    if (!isMine(event.message) && !seeing) {
      if (view.dividerSeq === null || view.dividerStale) {
        view.dividerSeq = event.message.seq;
        view.dividerStale = false;
      }
      if (!follow) view.unseen += 1;
    }
    upsertMessage(event.message);
    if (follow || isMine(event.message)) scrollToBottom();
    renderJump();
    markSeen();
  } else if (event.type === "message_edited") {
    if (view.messages.has(event.message.id)) upsertMessage(event.message);
  } else if (event.type === "message_deleted") {
    removeMessage(event.message_id);
  } else if (event.type === "room_updated") {
    renderHeader();
  }
}

/** The jump-to-latest button, while the newest messages are out of sight. */
function renderJump() {
  const button = byId("jump-latest");
  const away = Boolean(view) && !isNearBottom();
  if (!away && view) view.unseen = 0;
  button.hidden = !away;
  const label = view && view.unseen ? `${plural(view.unseen, "new message")}, jump to latest` : "Jump to latest";
  button.textContent = view && view.unseen ? `↓ ${plural(view.unseen, "new message")}` : "↓ Latest";
  button.setAttribute("aria-label", label);
}

export function renderHeader() {
  if (!view) return;
  const room = store.rooms.get(view.roomId);
  if (!room) return;
  byId("room-title").textContent = roomName(room);
  byId("room-details").hidden = false;
  const { users, count } = onlineIn(room.id);
  const others = users.filter((u) => !store.me || u.id !== store.me.id);
  const members = (room.members || []).length;
  // Diffs may leave the list short or long (truncated); the count is exact, and includes us.
  const othersTotal = count ? count - 1 : others.length;
  let online;
  if (room.kind === "direct") {
    online = othersTotal ? "Online" : "Offline";
  } else if (!othersTotal) {
    online = "Nobody else online";
  } else if (others.length && others.length <= othersTotal) {
    const unlisted = othersTotal - others.length;
    online = `Online: ${others.map(nameOf).join(", ")}${unlisted ? ` and ${unlisted} more` : ""}`;
  } else {
    online = `${plural(othersTotal, "other")} online`;  // who exactly is fetched when details open
  }
  byId("room-online").textContent = room.kind === "direct" ? online : `${plural(members, "member")} · ${online}`;
  const closed = room.is_active === false;
  byId("composer-input").disabled = closed;
  byId("composer-input").placeholder = closed ? "This room is closed" : PLACEHOLDER;
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
  const items = [...byId("message-list").querySelectorAll(":scope > li.message")];
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
  view.dividerStale = true;
  hooks.onRead(roomId);
}
