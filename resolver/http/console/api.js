// The node's REST API with this tab's credentials, and which prefixes they administer.
import { t } from "./i18n.js";

const BASE = location.pathname.replace(/console\/[^/]*$/, ""); // the node's root, wherever it is mounted
const KEY_IDENTITY = "idnode.console.identity";
const KEY_SECRET = "idnode.console.secret";

export const state = { prefixes: null, listed: [], admin: false, flash: null, renderId: 0 };

export class ApiError extends Error {
  constructor(status, body, retryAfter) {
    super(body && body.message ? body.message : `HTTP ${status}`);
    this.status = status;
    this.code = body ? body.responseCode : undefined;
    this.retryAfter = retryAfter;
  }

  // The node's message as it sent it (never translated: it may be the node's or SNMS's own
  // words), with the HTTP status and the Handle response code.
  get shown() {
    const status = String(this.status);
    if (this.code === undefined) return t("error.http", { message: this.message, status });
    return t("error.httpCode", { message: this.message, status, code: String(this.code) });
  }
}

export function session() {
  const identity = sessionStorage.getItem(KEY_IDENTITY);
  const secret = sessionStorage.getItem(KEY_SECRET);
  return identity && secret !== null ? { identity, secret } : null;
}

// HTTP Basic as handle.net wants it: the identity percent-encoded (":" as %3A), UTF-8.
function basic(identity, secret) {
  const user = encodeURIComponent(identity).replace(/%2F/gi, "/");
  let binary = "";
  for (const byte of new TextEncoder().encode(`${user}:${secret}`)) binary += String.fromCharCode(byte);
  return "Basic " + btoa(binary);
}

export async function api(method, path, options) {
  const { body, auth = true, credentials } = options || {};
  const headers = { Accept: "application/json" };
  const who = credentials || (auth ? session() : null);
  if (who) headers.Authorization = basic(who.identity, who.secret);
  if (body !== undefined) headers["Content-Type"] = "application/json";
  const response = await fetch(BASE + path.replace(/^\//, ""), {
    method,
    headers,
    body: body === undefined ? undefined : JSON.stringify(body),
    cache: "no-store",
    credentials: "omit", // never the browser's own HTTP auth cache: only what this tab holds
  });
  const text = await response.text();
  let data = null;
  try {
    data = text ? JSON.parse(text) : null;
  } catch {
    data = null;
  }
  if (!response.ok) throw new ApiError(response.status, data, response.headers.get("Retry-After"));
  return data;
}

// A path under `root` whose segments reach the node exactly as given. Each is percent-encoded
// whole ("%", "?", "#" and "/" inside it too). A segment that is "." or ".." would be removed by
// the browser's URL parser, and so would "%2E" and "%2E%2E" (WHATWG URL counts them as dot
// segments), so it is joined to its neighbour by "%2F" instead of "/": the node decodes either
// to "/" (deploy/CONSOLE.md, "Dot segments").
export function apiPath(root, segments) {
  const dot = (segment) => segment === "." || segment === "..";
  let path = "";
  segments.forEach((segment, i) => {
    const glued = i > 0 && (dot(segment) || dot(segments[i - 1]));
    path += (glued ? "%2F" : "/") + encodeURIComponent(segment);
  });
  return root + path;
}

export function handlePath(handle) {
  return apiPath("/api/handles", handle.split("/"));
}

export function enc(text) {
  return encodeURIComponent(text);
}

// Signing in and "your prefixes" --------------------------------------------------------------

function identityPrefix(identity) {
  const match = /^\d+:0\.NA\/(.+)$/i.exec(identity.trim());
  return match ? match[1] : null;
}

// Yours: the node admin's are all the node serves; anyone else's are the prefixes of
// GET /api/prefixes whose statistics GET /api/stats?prefix= shows to these credentials
// (the list handles right on the prefix), the one named by a 300:0.NA/P identity asked first.
export async function discoverPrefixes(credentials) {
  const listed = (await api("GET", "/api/prefixes", { auth: false })).prefixes;
  try {
    await api("GET", "/api/stats", { credentials });
    return { admin: true, listed, prefixes: listed };
  } catch (err) {
    if (!(err instanceof ApiError && err.code === 401)) throw err; // wrong secret, throttled, node down
  }
  const own = identityPrefix(credentials.identity);
  const order = [...listed].sort((a, b) => (b === own) - (a === own));
  const mine = new Set();
  await pool(order, 4, async (prefix) => {
    try {
      await api("GET", `/api/stats?prefix=${enc(prefix)}`, { credentials });
      mine.add(prefix);
    } catch (err) {
      if (!(err instanceof ApiError && err.status === 403 && err.code === 401)) throw err;
    }
  });
  return { admin: false, listed, prefixes: listed.filter((p) => mine.has(p)) };
}

// Signed in: the credentials stay in this tab's sessionStorage (gone when it closes), never in localStorage.
export function keep(credentials, found) {
  sessionStorage.setItem(KEY_IDENTITY, credentials.identity);
  sessionStorage.setItem(KEY_SECRET, credentials.secret);
  remember(found);
}

function remember(found) {
  state.prefixes = found.prefixes;
  state.listed = found.listed;
  state.admin = found.admin;
}

export async function pool(items, width, work) {
  const queue = [...items];
  const lane = async () => {
    while (queue.length) await work(queue.shift());
  };
  await Promise.all(Array.from({ length: Math.min(width, queue.length) }, lane));
}

export async function ensurePrefixes() {
  if (state.prefixes === null) remember(await discoverPrefixes(session()));
  return state.prefixes;
}

export function signOut() {
  sessionStorage.removeItem(KEY_IDENTITY);
  sessionStorage.removeItem(KEY_SECRET);
  state.prefixes = null;
  state.admin = false;
  location.hash = "#/signin";
}
