// Renders /openapi.json as plain HTML: no CDN, no framework, text only through textContent.
"use strict";

function el(tag, attrs, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs || {})) node.setAttribute(key, value);
  for (const child of children) {
    if (child === null || child === undefined) continue;
    node.append(child instanceof Node ? child : String(child));
  }
  return node;
}

function refName(ref) { return ref.split("/").pop(); }

// A compact, TypeScript-like description of a JSON schema; $refs become links.
function typeOf(schema) {
  if (!schema) return el("span", { class: "type" }, "any");
  if (schema.$ref) return el("a", { href: "#schema-" + refName(schema.$ref), class: "type" }, refName(schema.$ref));
  const variants = schema.anyOf || schema.oneOf;
  if (variants) {
    const out = el("span", { class: "type" });
    variants.forEach((variant, i) => { if (i) out.append(" | "); out.append(typeOf(variant)); });
    return out;
  }
  if (schema.enum) return el("span", { class: "type" }, schema.enum.map((v) => JSON.stringify(v)).join(" | "));
  if (schema.const !== undefined) return el("span", { class: "type" }, JSON.stringify(schema.const));
  if (schema.type === "array") return el("span", { class: "type" }, typeOf(schema.items), "[]");
  if (schema.type === "object" && !schema.properties) return el("span", { class: "type" }, "object");
  return el("span", { class: "type" }, schema.type || "object");
}

function limits(schema) {
  const parts = [];
  const inner = schema && schema.anyOf && schema.anyOf.find((variant) => variant.type !== "null");
  if (inner) schema = Object.assign({}, inner, schema);
  for (const key of ["minimum", "maximum", "minLength", "maxLength", "minItems", "maxItems", "pattern", "default"]) {
    if (schema && schema[key] !== undefined) parts.push(key + " " + JSON.stringify(schema[key]));
  }
  return parts.join(", ");
}

function fieldsTable(schema) {
  const required = new Set(schema.required || []);
  const table = el("table", {}, el("tr", {}, el("th", {}, "field"), el("th", {}, "type"), el("th", {}, "notes")));
  for (const [name, field] of Object.entries(schema.properties || {})) {
    const notes = [required.has(name) ? "required" : "", limits(field), field.description || ""].filter(Boolean);
    table.append(el("tr", {}, el("td", {}, el("code", {}, name)), el("td", {}, typeOf(field)), el("td", {}, notes.join("; "))));
  }
  return table;
}

// quart-schema inlines a route's own models (nested ones are $refs to components).
function schemaBlock(schema) {
  if (!schema || !schema.properties) return el("p", {}, typeOf(schema));
  const heading = el("p", {}, el("strong", {}, schema.title || "object"), schema.description ? " — " + schema.description : "");
  return el("div", {}, heading, fieldsTable(schema));
}

function operation(path, method, op) {
  const body = el("div");
  if (op.description) body.append(el("p", {}, op.description));
  const params = op.parameters || [];
  if (params.length) {
    const table = el("table", {}, el("tr", {}, el("th", {}, "parameter"), el("th", {}, "in"), el("th", {}, "type"), el("th", {}, "notes")));
    for (const p of params) {
      table.append(el("tr", {}, el("td", {}, el("code", {}, p.name)), el("td", {}, p.in), el("td", {}, typeOf(p.schema)),
        el("td", {}, [p.required ? "required" : "", limits(p.schema), p.description || ""].filter(Boolean).join("; "))));
    }
    body.append(el("h4", {}, "Parameters"), table);
  }
  const request = op.requestBody && op.requestBody.content && op.requestBody.content["application/json"];
  if (request) body.append(el("h4", {}, "Request body (JSON)"), schemaBlock(request.schema));
  const responses = el("table", {}, el("tr", {}, el("th", {}, "status"), el("th", {}, "body")));
  const shapes = new Map();
  for (const [status, response] of Object.entries(op.responses || {}).sort()) {
    const json = response.content && response.content["application/json"];
    const schema = json && json.schema;
    if (schema && schema.properties && schema.title) shapes.set(schema.title, schema);
    const label = schema ? (schema.title && schema.properties ? el("code", {}, schema.title) : typeOf(schema)) : "no body";
    responses.append(el("tr", {}, el("td", {}, status), el("td", {}, label)));
  }
  body.append(el("h4", {}, "Responses"), responses);
  for (const schema of shapes.values()) body.append(schemaBlock(schema));
  const summary = el("summary", {}, el("span", { class: "method " + method }, method), el("span", { class: "path" }, path),
    el("span", { class: "summary" }, op.summary || ""));
  return el("details", {}, summary, body);
}

async function main() {
  const spec = await (await fetch("/openapi.json")).json();
  document.getElementById("title").textContent = spec.info.title + " API " + spec.info.version;
  const operations = document.getElementById("operations");
  operations.replaceChildren();
  for (const [path, item] of Object.entries(spec.paths || {})) {
    for (const [method, op] of Object.entries(item)) operations.append(operation(path, method, op));
  }
  const schemas = document.getElementById("schemas");
  for (const [name, schema] of Object.entries((spec.components || {}).schemas || {})) {
    schemas.append(el("h3", { id: "schema-" + name }, name));
    if (schema.description) schemas.append(el("p", {}, schema.description));
    schemas.append(schema.properties ? fieldsTable(schema) : el("p", {}, typeOf(schema)));
  }
}

main().catch((error) => {
  document.getElementById("operations").textContent = "Could not load /openapi.json: " + error;
});
