// Building DOM nodes. User text only ever goes in through textContent / text nodes:
// nothing here parses HTML, so a message body cannot become markup.

/**
 * Create an element. `props` sets properties (className, type, …) and `attrs` attributes;
 * children are nodes or strings, and strings become text nodes.
 */
export function el(tag, props = {}, ...children) {
  const node = document.createElement(tag);
  const { attrs, dataset, ...rest } = props;
  Object.assign(node, rest);
  for (const [name, value] of Object.entries(attrs || {})) node.setAttribute(name, value);
  for (const [name, value] of Object.entries(dataset || {})) node.dataset[name] = value;
  for (const child of children) {
    if (child === null || child === undefined || child === false) continue;
    node.append(typeof child === "string" ? document.createTextNode(child) : child);
  }
  return node;
}

/** Replace all children of `node` with `children`. */
export function replaceChildren(node, ...children) {
  node.replaceChildren(...children.filter((c) => c !== null && c !== undefined && c !== false));
}

export function byId(id) {
  return document.getElementById(id);
}

/** A user's name as people read it. */
export function nameOf(user) {
  if (!user) return "someone";
  return user.display_name || user.username;
}

const timeFormat = new Intl.DateTimeFormat(undefined, { hour: "2-digit", minute: "2-digit" });
const dateFormat = new Intl.DateTimeFormat(undefined, { month: "short", day: "numeric", hour: "2-digit", minute: "2-digit" });

/** A short time: "14:05" today, "Jan 8, 14:05" otherwise. */
export function shortTime(iso) {
  if (!iso) return "";
  const when = new Date(iso);
  const now = new Date();
  return when.toDateString() === now.toDateString() ? timeFormat.format(when) : dateFormat.format(when);
}

/** A random id for idempotent sends (PROTOCOL §4 client_id). */
export function randomId() {
  if (crypto.randomUUID) return crypto.randomUUID();
  const bytes = crypto.getRandomValues(new Uint8Array(16));
  return Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join("");
}
