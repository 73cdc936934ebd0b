// REST calls (PROTOCOL §1–4). The token lives in sessionStorage only: it is sent in the
// Authorization header here, and in a URL nowhere but the /ws connection (socket.js).

import { request, RoomcastError } from "/sdk/roomcast.js";

const TOKEN_KEY = "roomcast.token";

export function getToken() {
  return sessionStorage.getItem(TOKEN_KEY);
}

export function setToken(token) {
  if (token) sessionStorage.setItem(TOKEN_KEY, token);
  else sessionStorage.removeItem(TOKEN_KEY);
}

let onUnauthorized = () => {};

/** Called when any call answers 401: the token expired or was revoked. */
export function setUnauthorizedHandler(handler) {
  onUnauthorized = handler;
}

/** The SDK's REST call with the stored token; a 401 (but a failed login) signs the user out. */
async function call(method, path, body) {
  try {
    return await request(method, path, body, getToken());
  } catch (err) {
    if (err.status === 401 && path !== "/api/auth/login") onUnauthorized();
    throw err;
  }
}

export const api = {
  login: (username, password, tenant) =>
    call("POST", "/api/auth/login", tenant ? { username, password, tenant } : { username, password }),
  me: () => call("GET", "/api/me"),
  rooms: (cursor) => call("GET", `/api/rooms?limit=200${cursor ? `&cursor=${encodeURIComponent(cursor)}` : ""}`),
  room: (id) => call("GET", `/api/rooms/${id}`),
  createDirect: (userId) => call("POST", "/api/rooms", { kind: "direct", members: [userId] }),
  createGroup: (name, members) => call("POST", "/api/rooms", { kind: "group", name, members }),
  contacts: (cursor) => call("GET", `/api/contacts?limit=500${cursor ? `&cursor=${encodeURIComponent(cursor)}` : ""}`),
  presence: (roomId) => call("GET", `/api/rooms/${roomId}/presence`),
  history: (roomId, before, limit = 50) =>
    call("GET", `/api/rooms/${roomId}/messages?limit=${limit}${before ? `&before=${before}` : ""}`),
  send: (roomId, body, clientId) => call("POST", `/api/rooms/${roomId}/messages`, { body, client_id: clientId }),
  edit: (roomId, messageId, body) => call("PATCH", `/api/rooms/${roomId}/messages/${messageId}`, { body }),
  remove: (roomId, messageId) => call("DELETE", `/api/rooms/${roomId}/messages/${messageId}`),
  read: (roomId, seq) => call("POST", `/api/rooms/${roomId}/read`, { seq }),
  config: () => call("GET", "/api/config"),
  rename: (roomId, name) => call("PATCH", `/api/rooms/${roomId}`, { name }),
  addMember: (roomId, userId) => call("POST", `/api/rooms/${roomId}/members`, { user_id: userId }),
  removeMember: (roomId, userId) => call("DELETE", `/api/rooms/${roomId}/members/${userId}`),
};

/**
 * Upload a file to a room (multipart field `file`) with XMLHttpRequest, which reports upload
 * progress as fetch cannot. Returns {promise, abort}; the promise resolves to the attachment and
 * rejects with a RoomcastError (413 too_large, 415 unsupported_type, status 0 for the network).
 */
export function upload(roomId, file, onProgress) {
  const xhr = new XMLHttpRequest();
  const promise = new Promise((resolve, reject) => {
    xhr.open("POST", `/api/rooms/${roomId}/attachments`);
    xhr.setRequestHeader("Authorization", `Bearer ${getToken()}`);
    xhr.setRequestHeader("Accept", "application/json");
    xhr.responseType = "json";
    xhr.upload.onprogress = (event) => {
      if (event.lengthComputable) onProgress(event.loaded / event.total);
    };
    xhr.onload = () => {
      if (xhr.status === 201) {
        resolve(xhr.response);
        return;
      }
      const error = (xhr.response && xhr.response.error) || {};
      if (xhr.status === 401) onUnauthorized();
      reject(new RoomcastError(xhr.status, error.code || "http_error", error.message || `HTTP ${xhr.status}`));
    };
    xhr.onerror = () => reject(new RoomcastError(0, "network", "The server cannot be reached."));
    xhr.onabort = () => reject(new RoomcastError(0, "aborted", "The upload was cancelled."));
    const form = new FormData();
    form.append("file", file, file.name);
    xhr.send(form);
  });
  return { promise, abort: () => xhr.abort() };
}

const blobs = new Map();  // attachment url → Promise of an object URL

/** An attachment's bytes as a blob: URL (the download needs the token, so <img src> cannot fetch it). */
export function attachmentUrl(url) {
  if (!blobs.has(url)) {
    const loading = fetch(url, { headers: { Authorization: `Bearer ${getToken()}` }, credentials: "omit" })
      .then(async (response) => {
        if (!response.ok) throw new RoomcastError(response.status, "http_error", `HTTP ${response.status}`);
        return URL.createObjectURL(await response.blob());
      });
    loading.catch(() => blobs.delete(url));  // a later look may succeed
    blobs.set(url, loading);
  }
  return blobs.get(url);
}

/** Let go of every blob: URL (on sign-out). */
export function forgetAttachments() {
  for (const loading of blobs.values()) loading.then((u) => URL.revokeObjectURL(u), () => {});
  blobs.clear();
}

/** Every item of a paged list endpoint (PROTOCOL §1: items + next_cursor). */
export async function allPages(fetchPage, maxPages = 20) {
  const items = [];
  let cursor = null;
  for (let page = 0; page < maxPages; page += 1) {
    const data = await fetchPage(cursor);
    items.push(...data.items);
    cursor = data.next_cursor;
    if (!cursor) break;
  }
  return items;
}
