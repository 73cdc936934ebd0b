// Attachments: files picked, dropped or pasted into the composer (checked against the server's
// limits first, then uploaded with a progress bar), and attachments shown in messages: images
// as previews that open large on click, other files as a chip that downloads them.

import { attachmentUrl, upload } from "./api.js";
import { byId, el, fileSize } from "./dom.js";
import { store } from "./store.js";

const MAX_PER_MESSAGE = 10;  // PROTOCOL §4: at most 10 attachments per message

// Files waiting in the composer: {file, state: "uploading"|"done"|"failed", attachment, error, li, bar, abort}.
let queued = [];
let currentRoom = () => null;
let changed = () => {};

export function initAttachments({ roomId, onChange }) {
  currentRoom = roomId;
  changed = onChange;
  const picker = byId("attach-input");
  byId("attach").addEventListener("click", () => picker.click());
  picker.addEventListener("change", () => {
    addFiles([...picker.files]);
    picker.value = "";
  });
  const room = byId("room");
  room.addEventListener("dragover", (event) => {
    if (!currentRoom() || !hasFiles(event)) return;
    event.preventDefault();
    room.classList.add("dropping");
  });
  room.addEventListener("dragleave", (event) => {
    if (!room.contains(event.relatedTarget)) room.classList.remove("dropping");
  });
  room.addEventListener("drop", (event) => {
    room.classList.remove("dropping");
    if (!currentRoom() || !hasFiles(event)) return;
    event.preventDefault();
    addFiles([...event.dataTransfer.files]);
  });
  byId("composer-input").addEventListener("paste", (event) => {
    const files = [...(event.clipboardData?.files || [])];
    if (!files.length) return;
    event.preventDefault();
    addFiles(files);
  });
  const viewer = byId("image-viewer");
  viewer.addEventListener("click", (event) => {
    if (event.target === viewer) viewer.close();  // a click on the backdrop closes it
  });
}

function hasFiles(event) {
  return [...(event.dataTransfer?.types || [])].includes("Files");
}

/** Why the server would refuse this file, or "" (it has the last word: the type is read from the bytes). */
export function refusal(file) {
  const config = store.config;
  if (!config) return "";
  if (file.size > config.attachment_max_bytes) {
    return `${file.name} is ${fileSize(file.size)}; files can be at most ${fileSize(config.attachment_max_bytes)}.`;
  }
  const type = (file.type || "").split(";")[0].trim().toLowerCase();
  if (type && !config.attachment_types.includes(type)) {
    return `${file.name} cannot be sent: ${kindList(config.attachment_types)} only.`;
  }
  return "";
}

const KIND_NAMES = {
  "image/png": "PNG", "image/jpeg": "JPEG", "image/gif": "GIF", "image/webp": "WebP",
  "application/pdf": "PDF", "text/plain": "plain text",
};

function kindList(types) {
  const names = types.map((t) => KIND_NAMES[t] || t);
  return names.length > 1 ? `${names.slice(0, -1).join(", ")} and ${names.at(-1)}` : names.join("");
}

function addFiles(files) {
  const roomId = currentRoom();
  if (!roomId) return;
  const error = byId("attach-error");
  const problems = [];
  for (const file of files) {
    if (queued.length >= MAX_PER_MESSAGE) {
      problems.push(`At most ${MAX_PER_MESSAGE} files go with one message.`);
      break;
    }
    const why = refusal(file);
    if (why) {
      problems.push(why);
      continue;
    }
    start(roomId, file);
  }
  error.textContent = problems.join(" ");
  render();
}

function start(roomId, file) {
  const bar = el("progress", { max: 1, value: 0, attrs: { "aria-label": `Uploading ${file.name}` } });
  const item = { file, state: "uploading", attachment: null, error: "", bar, roomId };
  const { promise, abort } = upload(roomId, file, (fraction) => { bar.value = fraction; });
  item.abort = abort;
  queued.push(item);
  promise.then((attachment) => {
    item.state = "done";
    item.attachment = attachment;
  }, (err) => {
    if (err.code === "aborted") {
      queued = queued.filter((q) => q !== item);
      return;
    }
    item.state = "failed";
    item.error = err.message;
    // The server's own words for 413 and 415 say what was wrong with the file.
    byId("attach-error").textContent = `${file.name} was not uploaded: ${err.message}`;
  }).finally(render);
}

function render() {
  const list = byId("attach-list");
  list.replaceChildren(...queued.map((item) => el("li", { className: `upload ${item.state}` },
    el("span", { className: "upload-name" }, item.file.name),
    el("span", { className: "upload-size" }, fileSize(item.file.size)),
    item.state === "uploading" ? item.bar : null,
    item.state === "failed" ? el("span", { className: "upload-failed" }, "failed") : null,
    item.state === "done" ? el("span", { className: "upload-done" }, "ready") : null,
    el("button", {
      type: "button", className: "quiet", attrs: { "aria-label": `Remove ${item.file.name}` },
      onclick: () => removeItem(item),
    }, "×"))));
  list.hidden = queued.length === 0;
  changed();
}

function removeItem(item) {
  if (item.state === "uploading") item.abort();
  queued = queued.filter((q) => q !== item);
  render();
}

/** Whether an upload is still under way (sending waits for it). */
export function uploading() {
  return queued.some((item) => item.state === "uploading");
}

/** The ids of the uploaded files, to send with the next message; clears the composer's files. */
export function takeAttachments() {
  const ids = queued.filter((item) => item.state === "done").map((item) => item.attachment.id);
  queued = queued.filter((item) => item.state === "uploading");
  byId("attach-error").textContent = "";
  render();
  return ids;
}

/** Leaving a room drops what was queued for it (an upload no message carries is swept by the server). */
export function clearAttachments() {
  for (const item of queued) if (item.state === "uploading") item.abort();
  queued = [];
  byId("attach-error").textContent = "";
  render();
}

// ------------------------------------------------------------------ in messages

/** The attachments of a message: previews for images, download chips for the rest. */
export function attachmentNodes(message) {
  const items = message.attachments || [];
  if (!items.length) return null;
  return el("div", { className: "attachments" }, ...items.map((a) => (a.content_type.startsWith("image/") ? preview(a) : chip(a))));
}

function preview(attachment) {
  const img = el("img", { alt: attachment.filename, className: "preview-image", decoding: "async" });
  const button = el("button", {
    type: "button", className: "preview loading",
    attrs: { "aria-label": `Open image ${attachment.filename}` },
    onclick: () => openViewer(attachment),
  }, img);
  attachmentUrl(attachment.url).then((url) => {
    img.src = url;
    button.classList.remove("loading");
  }, () => {
    button.classList.remove("loading");
    button.classList.add("broken");
    button.replaceChildren(el("span", {}, `${attachment.filename} (could not be loaded)`));
  });
  return button;
}

function chip(attachment) {
  return el("button", {
    type: "button", className: "file-chip",
    attrs: { "aria-label": `Download ${attachment.filename}, ${fileSize(attachment.size)}` },
    onclick: (event) => download(attachment, event.currentTarget),
  },
  el("span", { className: "file-icon", attrs: { "aria-hidden": "true" } }, "📄"),
  el("span", { className: "file-name" }, attachment.filename),
  el("span", { className: "file-size" }, fileSize(attachment.size)));
}

async function download(attachment, button) {
  button.classList.add("loading");
  try {
    const url = await attachmentUrl(attachment.url);
    const link = el("a", { href: url, download: attachment.filename, hidden: true });
    document.body.append(link);
    link.click();
    link.remove();
  } catch (err) {
    byId("composer-error").textContent = `Could not download ${attachment.filename}: ${err.message}`;
  } finally {
    button.classList.remove("loading");
  }
}

async function openViewer(attachment) {
  const viewer = byId("image-viewer");
  const img = byId("image-viewer-img");
  byId("image-viewer-name").textContent = attachment.filename;
  img.alt = attachment.filename;
  try {
    img.src = await attachmentUrl(attachment.url);
  } catch (err) {
    return;
  }
  viewer.showModal();
}
