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

// Text that can turn the words around it: direction controls (embeddings and overrides
// U+202A–U+202E, isolates U+2066–U+2069, the marks U+200F and U+061C) and right-to-left letters.
const BIDI = /[\u0590-\u08ff\ufb1d-\ufdff\ufe70-\ufefe\u061c\u200f\u202a-\u202e\u2066-\u2069\u{10800}-\u{10fff}\u{1e800}-\u{1efff}]/u;
const PDF = "\u202c";
const PDI = "\u2069";

/**
 * Someone's text to be set among other words (a name in "Alice is typing…", "Alice: hello",
 * "Alice (@alice)"), as a Unicode bidi isolate: a name that leaves a right-to-left override
 * (U+202E) open, or is written right to left, cannot reorder what follows it ("…gnipyt si",
 * a handle read backwards). Its own unmatched closers are dropped (they would end the isolate
 * early) and what it leaves open is closed. Text with none of these comes back as it is.
 */
export function isolate(text) {
  if (!BIDI.test(text)) return text;
  const open = [];  // the closer each control still open needs, innermost last
  let inner = "";
  for (const ch of text) {
    if ("\u202a\u202b\u202d\u202e".includes(ch)) {
      open.push(PDF);
    } else if ("\u2066\u2067\u2068".includes(ch)) {
      open.push(PDI);
    } else if (ch === PDF) {
      if (open.at(-1) !== PDF) continue;  // closes nothing the name opened: dropped
      open.pop();
    } else if (ch === PDI) {
      if (!open.includes(PDI)) continue;
      open.splice(open.lastIndexOf(PDI));  // an isolate's end closes what it holds too
    }
    inner += ch;
  }
  return `\u2068${inner}${open.reverse().join("")}${PDI}`;
}

/** A user's name as people read it. */
export function nameOf(user) {
  if (!user) return "someone";
  return isolate(user.display_name || user.username);
}

/** A name with the handle, "Carol Diaz (@carol)", but a name that is the handle only once: "carol". */
export function fullName(user) {
  const name = user.display_name || user.username;
  return name === user.username ? isolate(name) : `${isolate(name)} (@${isolate(user.username)})`;
}

const plurals = new Intl.PluralRules("en");

/** "1 member", "2 members": `forms` is {one, other} with the count put in place of "#". */
export function plural(count, one, other = `${one}s`) {
  return `${count} ${plurals.select(count) === "one" ? one : other}`;
}

/** A file size as people read it: "512 bytes", "14 KB", "64.1 KB", "3.2 MB" (a size just over a limit never reads as the limit). */
export function fileSize(bytes) {
  if (bytes < 1024) return plural(bytes, "byte");
  const [amount, unit] = bytes < 1024 * 1024 ? [bytes / 1024, "KB"] : [bytes / (1024 * 1024), "MB"];
  const shown = amount < 100 ? (Math.ceil(amount * 10) / 10).toFixed(1).replace(/\.0$/, "") : String(Math.ceil(amount));
  return `${shown} ${unit}`;
}

const timeFormat = new Intl.DateTimeFormat(undefined, { hour: "2-digit", minute: "2-digit" });
const dateFormat = new Intl.DateTimeFormat(undefined, { month: "short", day: "numeric", hour: "2-digit", minute: "2-digit" });
const fullFormat = new Intl.DateTimeFormat(undefined, { dateStyle: "full", timeStyle: "medium" });
const dayFormat = new Intl.DateTimeFormat(undefined, { weekday: "long", month: "long", day: "numeric", year: "numeric" });

/** A short time: "14:05" today, "Jan 8, 14:05" otherwise. */
export function shortTime(iso) {
  if (!iso) return "";
  const when = new Date(iso);
  const now = new Date();
  return when.toDateString() === now.toDateString() ? timeFormat.format(when) : dateFormat.format(when);
}

/** The whole date and time, for a tooltip: "Wednesday, 2 December 2026 at 07:05:12". */
export function fullTime(iso) {
  return iso ? fullFormat.format(new Date(iso)) : "";
}

/** Relative to now: "just now", "5 min ago", "3 h ago", then the clock time (day separators say the day). */
export function relativeTime(iso, now = Date.now()) {
  const when = new Date(iso);
  const seconds = Math.max(0, (now - when.getTime()) / 1000);
  if (seconds < 45) return "just now";
  if (seconds < 3600) return `${Math.max(1, Math.round(seconds / 60))} min ago`;
  if (seconds < 6 * 3600) return `${Math.round(seconds / 3600)} h ago`;
  return timeFormat.format(when);
}

/** The local calendar day of a timestamp, as a key. */
export function dayKey(iso) {
  return new Date(iso).toDateString();
}

/** "Today", "Yesterday" or the full date, for a day separator. */
export function dayLabel(iso) {
  const key = dayKey(iso);
  const today = new Date();
  if (key === today.toDateString()) return "Today";
  const yesterday = new Date(today.getFullYear(), today.getMonth(), today.getDate() - 1);
  if (key === yesterday.toDateString()) return "Yesterday";
  return dayFormat.format(new Date(iso));
}

export { randomId } from "/sdk/roomcast.js";
