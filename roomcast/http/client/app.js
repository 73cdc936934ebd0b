// The roomcast web client: sign in, then rooms and live chat, built on the connection SDK
// (/sdk/roomcast.js: one /ws connection that reconnects and resubscribes with `since`, and the
// outbox that keeps messages sent while offline until they are committed).

import { RoomcastClient, outboxKeyFor } from "/sdk/roomcast.js";
import { allPages, api, forgetAttachments, getToken, setToken, setUnauthorizedHandler } from "./api.js";
import { initAttachments } from "./attachments.js";
import {
  applyRead, applyRoomEvent, applyTyping, closeConversation, currentRoomId, initConversation,
  isSeeing, messageSent, openConversation, renderHeader, renderOutbox, retryHistory,
} from "./conversation.js";
import { initDetails, refreshDetails } from "./details.js";
import { initDialogs } from "./dialogs.js";
import { byId, nameOf } from "./dom.js";
import { initNotifications, notifyMessage, renderNotificationButton } from "./notify.js";
import { applyPresence, forgetPresence, PRESENCE_MODE, refreshPresence } from "./presence.js";
import { initRoomList, renderRoomList } from "./rooms.js";
import { store } from "./store.js";

const client = new RoomcastClient({ token: getToken, presence: PRESENCE_MODE });
const readSent = new Map();  // room id → seq last reported read
const SESSION_ENDED = "Your session has ended. Please sign in again.";

client.on("*", onEvent);
client.on("status", ({ status }) => onStatus(status));
client.on("authfailed", () => signOut(SESSION_ENDED));
client.on("outbox", () => renderOutbox());
client.on("sent", ({ message }) => messageSent(message));

// ------------------------------------------------------------------ sign in / out

function showSignIn(message = "") {
  byId("chat").hidden = true;
  byId("signin").hidden = false;
  byId("signin-error").textContent = message;
  byId("signin-password").value = "";
  byId("signin-username").focus();
}

function signOut(message = "") {
  client.stop();
  client.reset();
  setToken(null);
  forgetAttachments();
  store.me = null;
  store.rooms.clear();
  forgetPresence();
  store.readers.clear();
  readSent.clear();
  closeConversation();
  store.openRoomId = null;
  renderRoomList();
  showSignIn(message);
}

async function signIn(event) {
  event.preventDefault();
  const username = byId("signin-username").value.trim();
  const password = byId("signin-password").value;
  const tenant = byId("signin-tenant").value.trim();
  const error = byId("signin-error");
  if (!username || !password) {
    error.textContent = "Enter your username and password.";
    return;
  }
  byId("signin-submit").disabled = true;
  error.textContent = "";
  try {
    const { access_token: token } = await api.login(username, password, tenant || undefined);
    setToken(token);
    await enterChat();
  } catch (err) {
    error.textContent = err.status === 401 ? "Wrong username or password." : err.message;
  } finally {
    byId("signin-submit").disabled = false;
  }
}

async function enterChat() {
  store.me = await api.me();
  // The outbox of this user on this browser: messages a reload interrupted go out once connected.
  client.useOutbox(outboxKeyFor(store.me));
  api.config().then((config) => {
    store.config = config;
    byId("composer-input").maxLength = config.max_body_chars;
  }, () => {});
  byId("me-name").textContent = nameOf(store.me);
  byId("me-name").title = `Signed in as @${store.me.username}`;
  byId("me-name").dataset.username = store.me.username;
  byId("signin").hidden = true;
  byId("chat").hidden = false;
  document.body.classList.remove("room-open");
  renderNotificationButton();
  client.start();
}

// ------------------------------------------------------------------ connection

function onStatus(status) {
  const banner = byId("connection-banner");
  banner.classList.toggle("warn", status === "reconnecting");
  if (status === "open") {
    banner.hidden = true;
    banner.textContent = "";
    // Whatever failed for want of a connection is being retried now: its notice is stale.
    byId("composer-error").textContent = "";
    retryHistory();
  } else if (status === "connecting") {
    banner.hidden = false;
    banner.textContent = "Connecting…";
  } else if (status === "reconnecting") {
    banner.hidden = false;
    banner.textContent = "Connection lost. Reconnecting…";
  }
  document.body.dataset.connection = status;
  renderOutbox();
}

function addRoom(room) {
  const known = store.rooms.get(room.id);
  if (known) {
    // Keep our live-maintained unread count and last message; take everything else.
    store.rooms.set(room.id, { ...room, unread_count: known.unread_count, last_message: known.last_message ?? room.last_message });
    return false;
  }
  store.rooms.set(room.id, room);
  return true;
}

/** Follow a room from where it stands (its history comes by REST when it is opened). */
function follow(room) {
  client.subscribe(room.id, room.last_seq || 0);
}

/** After every welcome: refresh the room list; the SDK has resubscribed known rooms with since. */
async function resync() {
  let rooms;
  try {
    rooms = await allPages((cursor) => api.rooms(cursor));
  } catch (err) {
    return;  // a 401 signs out; otherwise the socket's next welcome tries again
  }
  const ids = new Set(rooms.map((r) => r.id));
  for (const id of [...store.rooms.keys()]) if (!ids.has(id)) forgetRoom(id);
  for (const room of rooms) {
    // A room followed already was resubscribed by the SDK with the last seq it saw: following it
    // again from the list's newer last_seq would drop the missed events it replays (as duplicates),
    // and their unread counts with them.
    if (addRoom(room)) follow(room);
  }
  renderRoomList();
  renderHeader();
}

function forgetRoom(roomId) {
  store.rooms.delete(roomId);
  client.forget(roomId);  // removed from it: the server has already dropped the subscription
  forgetPresence(roomId);
  store.readers.delete(roomId);
  refreshDetails(roomId);
  if (store.openRoomId === roomId) {
    store.openRoomId = null;
    closeConversation();
    document.body.classList.remove("room-open");
  }
}

function onEvent(event) {
  switch (event.type) {
    case "welcome":
      store.me = event.user;
      resync();
      break;
    case "message":
    case "message_edited":
    case "message_deleted":
    case "room_updated":
      // Already de-duplicated by seq in the SDK.
      if (store.rooms.has(event.room)) onStoredEvent(event);
      break;
    case "typing":
      applyTyping(event);
      break;
    case "read":
      onRead(event);
      break;
    case "subscribed":
    case "presence":
    case "presence_diff":
      if (store.rooms.has(event.room) && applyPresence(event)) presenceChanged(event.room);
      break;
    case "room_added":
      if (addRoom(event.room)) {
        renderRoomList();
        follow(event.room);
      }
      break;
    case "room_removed":
      forgetRoom(event.room);
      renderRoomList();
      break;
    case "error":
      if (event.code === "not_a_member") resync();
      break;
    default:
      break;  // unsubscribed, pong, ack, event, broadcast: nothing to show
  }
}

function presenceChanged(roomId) {
  renderRoomList();
  if (roomId === currentRoomId()) renderHeader();
  refreshDetails(roomId);
}

function onStoredEvent(event) {
  const room = store.rooms.get(event.room);
  if (event.type === "message") {
    room.last_message = event.message;
    room.last_seq = event.seq;
    const fromOther = !store.me || event.message.sender.id !== store.me.id;
    if (fromOther && !isSeeing(event.room)) {
      room.unread_count = (room.unread_count || 0) + 1;
      notifyMessage(room, event.message);
    }
  } else if (event.type === "message_edited") {
    if (room.last_message && room.last_message.id === event.message.id) room.last_message = event.message;
  } else if (event.type === "message_deleted") {
    if (room.last_message && room.last_message.id === event.message_id) refreshRoom(event.room);
  } else if (event.type === "room_updated") {
    Object.assign(room, event.changes || {});
    refreshDetails(event.room);
  }
  applyRoomEvent(event);
  renderRoomList();
}

async function refreshRoom(roomId) {
  // The last message went away; the server knows which one is last now.
  try {
    const fresh = await api.room(roomId);
    const room = store.rooms.get(roomId);
    if (room) {
      room.last_message = fresh.last_message;
      renderRoomList();
    }
  } catch (err) { /* the list shows the old preview until the next resync */ }
}

function onRead(event) {
  if (store.me && event.user.id === store.me.id) {
    // Read on another of our devices: that clears the badge here too.
    const room = store.rooms.get(event.room);
    if (room && event.seq >= (room.last_seq || 0)) {
      room.unread_count = 0;
      renderRoomList();
    }
    return;
  }
  if (!store.readers.has(event.room)) store.readers.set(event.room, new Map());
  store.readers.get(event.room).set(event.user.id, { user: event.user, seq: event.seq });
  applyRead(event);
}

/** The user has seen the open room up to its last seq: clear the badge, tell the server. */
function markRead(roomId) {
  const room = store.rooms.get(roomId);
  if (!room) return;
  const seq = client.lastSeq(roomId);
  if (room.unread_count) {
    room.unread_count = 0;
    renderRoomList();
  }
  if (seq <= (readSent.get(roomId) ?? 0)) return;
  readSent.set(roomId, seq);
  if (!client.sendFrame({ type: "read", room: roomId, seq })) {
    api.read(roomId, seq).catch(() => readSent.delete(roomId));
  }
}

// ------------------------------------------------------------------ rooms

function openRoom(roomId) {
  if (!store.rooms.has(roomId)) return;
  store.openRoomId = roomId;
  document.body.classList.add("room-open");
  renderRoomList();
  // The header names who is online: complete the list if diffs left it short.
  refreshPresence(roomId).then((changed) => changed && presenceChanged(roomId));
  openConversation(roomId).then(() => {
    if (store.openRoomId === roomId) byId("composer-input").focus();
  });
}

function roomCreated(room) {
  if (addRoom(room)) follow(room);
  renderRoomList();
  openRoom(room.id);
}

/** Details changed the room (members, name): take the server's copy, keeping our counters. */
function roomChanged(room) {
  addRoom(room);
  renderRoomList();
  if (room.id === currentRoomId()) renderHeader();
}

function roomLeft(roomId) {
  forgetRoom(roomId);
  renderRoomList();
  byId("new-direct").focus();
}

// ------------------------------------------------------------------ start

function start() {
  setUnauthorizedHandler(() => signOut(SESSION_ENDED));
  byId("signin-form").addEventListener("submit", signIn);
  byId("signout").addEventListener("click", () => signOut());
  byId("back").addEventListener("click", () => {
    document.body.classList.remove("room-open");
    const item = document.querySelector(`#room-list li[data-room-id="${store.openRoomId}"] button`);
    if (item) item.focus();
  });
  initRoomList(openRoom);
  initConversation({ sendFrame: (frame) => client.sendFrame(frame), onRead: markRead, client });
  initAttachments({ roomId: currentRoomId, onChange: () => {} });
  initDetails({ onRoom: roomChanged, onLeft: roomLeft, onPresence: presenceChanged });
  initDialogs(roomCreated);
  initNotifications(openRoom);
  if (getToken()) {
    enterChat().catch((err) => {
      if (err.status !== 401) showSignIn(`Could not reach the server: ${err.message}`);
    });
  } else {
    showSignIn();
  }
}

start();
