// Building the page: elements, links between views, the shared tables and pickers.
// Text goes in as text nodes, never as HTML: a handle or a value cannot become markup.
// What the node holds (handles, values, identities) is marked translate="no": it is shown as
// stored, in whatever language it was written, and the browser's translator leaves it alone.
import { t } from "./i18n.js";

let asked = null; // the location.hash of the view being built

export function h(tag, attrs, ...children) {
  const el = document.createElement(tag);
  setAttrs(el, attrs);
  for (const child of children.flat(Infinity)) {
    if (child !== null && child !== undefined && child !== false) el.append(child);
  }
  return el;
}

export function svg(tag, attrs, ...children) {
  const el = document.createElementNS("http://www.w3.org/2000/svg", tag);
  setAttrs(el, attrs);
  for (const child of children.flat(Infinity)) if (child !== null && child !== undefined) el.append(child);
  return el;
}

function setAttrs(el, attrs) {
  for (const [key, value] of Object.entries(attrs || {})) {
    if (value === false || value === null || value === undefined) continue;
    el.setAttribute(key, value === true ? "" : String(value));
  }
}

export function startView() {
  asked = location.hash;
}

// The view's content, unless the user has moved on while it loaded.
export function show(...children) {
  if (location.hash === asked) document.getElementById("view").replaceChildren(...children.flat());
}

export function message(kind, text, id) {
  return h("p", { class: kind, id, role: kind === "error" ? "alert" : "status" }, text);
}

export function link(hash, text, attrs) {
  return h("a", { href: hash, ...attrs }, text);
}

// Data as the node holds it, inside a text of the console's (a handle in a sentence).
export function data(text, tag) {
  return h(tag || "span", { translate: "no" }, text);
}

export function route(view, params) {
  const query = new URLSearchParams(params || {}).toString();
  return `#/${view}${query ? "?" + query : ""}`;
}

export function prefixSelect(prefixes, chosen, id) {
  return h(
    "select",
    { id, name: "prefix" },
    prefixes.map((p) => h("option", { value: p, selected: p === chosen, translate: "no" }, p)),
  );
}

export function chosenPrefix(params, prefixes) {
  const asked = params.get("prefix");
  return asked && prefixes.includes(asked) ? asked : prefixes[0];
}

export function needPrefixes(prefixes, title) {
  if (prefixes.length) return false;
  show(h("h1", {}, title), message("muted", t("prefix.none")));
  return true;
}

export function shownData(value) {
  const data = value.data;
  if (data && typeof data === "object" && "format" in data) {
    return typeof data.value === "string" ? data.value : JSON.stringify(data.value);
  }
  return typeof data === "string" ? data : JSON.stringify(data);
}

// A key's JSON names its type beside the bytes (HS_PUBKEY); PEM text, as the SDKs store it, is shown as text.
// Only the table shows it so: forms edit the data as shownData gives it.
function tableData(value) {
  const data = value.data;
  if (!data || typeof data !== "object" || !data.keyType || typeof data.value !== "string") return shownData(value);
  let text = data.value;
  try {
    const decoded = atob(data.value);
    if (decoded.startsWith("-----BEGIN")) text = decoded.trim();
  } catch {
    // not base64: shown as it came
  }
  return `${data.keyType}: ${text}`;
}

const VALUE_COLUMNS = ["values.index", "values.type", "values.data", "values.ttl"];

export function valuesTable(values) {
  return h(
    "table",
    { class: "values" },
    h("thead", {}, h("tr", {}, VALUE_COLUMNS.map((id) => h("th", {}, t(id))))),
    h(
      "tbody",
      {},
      values.map((v) =>
        h(
          "tr",
          { "data-index": v.index },
          h("td", {}, String(v.index)),
          h("td", { translate: "no" }, v.type),
          h("td", { class: "data", translate: "no" }, tableData(v)),
          h("td", {}, v.ttl === undefined ? "" : String(v.ttl)),
        ),
      ),
    ),
  );
}
