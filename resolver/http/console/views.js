// The views that read: sign-in, dashboard, browsing and search, one identifier, audit log, resolution.
import { ApiError, api, discoverPrefixes, enc, ensurePrefixes, handlePath, keep, pool, session, state } from "./api.js";
import { CHART_DAYS, barChart } from "./chart.js";
import { chosenPrefix, h, link, message, needPrefixes, prefixSelect, route, show, valuesTable } from "./dom.js";

const PAGE_SIZE = 50;
const SEARCH_PAGE = 1000;
const SEARCH_MAX_PAGES = 50; // a search reads at most 50,000 identifiers

export function viewSignin() {
  const identity = h("input", {
    id: "signin-identity",
    name: "identity",
    required: true,
    autocomplete: "username",
    placeholder: "300:0.NA/88.118.8",
  });
  const secret = h("input", {
    id: "signin-secret",
    name: "secret",
    type: "password",
    required: true,
    autocomplete: "current-password",
  });
  const problem = h("p", { id: "signin-error", class: "error", role: "alert", hidden: true });
  const button = h("button", { id: "signin-submit", type: "submit" }, "Sign in");
  const form = h(
    "form",
    { class: "card narrow", id: "signin-form" },
    h("h1", {}, "Sign in"),
    h("p", { class: "muted" }, "With an identity of this node (index:handle) and its secret."),
    h("label", {}, "Identity", identity),
    h("label", {}, "Secret", secret),
    problem,
    button,
  );
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    const credentials = { identity: identity.value.trim(), secret: secret.value };
    problem.hidden = true;
    button.disabled = true;
    try {
      const found = await discoverPrefixes(credentials);
      keep(credentials, found);
      location.hash = "#/dashboard";
    } catch (err) {
      problem.textContent = signinProblem(err);
      problem.hidden = false;
    } finally {
      button.disabled = false;
    }
  });
  show(form);
  identity.focus();
}

function signinProblem(err) {
  if (!(err instanceof ApiError)) return `The node could not be reached: ${err.message}`;
  if (err.status === 429) return `Too many failed attempts; try again in ${err.retryAfter || "a few"} s.`;
  if (err.code === 403 || err.code === 402) return `Wrong identity or secret: ${err.shown}`;
  return `Sign-in failed: ${err.shown}`;
}

// Dashboard -----------------------------------------------------------------------------------

export async function viewDashboard() {
  const prefixes = await ensurePrefixes();
  if (!prefixes.length) {
    show(
      h("h1", {}, "Dashboard"),
      message("muted", "This identity administers no prefix on this node. Resolving identifiers still works."),
    );
    return;
  }
  const stats = new Map();
  const shown = state.admin ? [{ path: "/api/stats" }] : prefixes.map((p) => ({ path: `/api/stats?prefix=${enc(p)}` }));
  await pool(shown, 4, async ({ path }) => {
    for (const entry of (await api("GET", path)).prefixes) stats.set(entry.prefix, entry);
  });
  const cards = prefixes.map((prefix) => prefixCard(prefix, stats.get(prefix)));
  show(h("h1", {}, "Dashboard"), h("div", { class: "cards" }, cards));
}

function prefixCard(prefix, stat) {
  const count = stat ? stat.handles : 0;
  const perDay = stat ? stat.registrationsPerDay : {};
  return h(
    "section",
    { class: "card prefix-card", "data-prefix": prefix },
    h("h2", {}, prefix),
    h("p", { class: "count-line" }, h("span", { class: "count" }, count.toLocaleString("en")), " identifiers"),
    h("h3", {}, `Registrations per day, last ${CHART_DAYS} days`),
    barChart(perDay),
    h(
      "p",
      { class: "actions" },
      link(route("handles", { prefix }), "Browse"),
      link(route("new", { prefix }), "New identifier"),
      link(route("upload", { prefix }), "Upload"),
      link(route("audit", { prefix }), "Audit log"),
    ),
  );
}

// Browsing and searching ---------------------------------------------------------------------

export async function viewHandles(params) {
  const prefixes = await ensurePrefixes();
  if (needPrefixes(prefixes, "Identifiers")) return;
  const prefix = chosenPrefix(params, prefixes);
  const query = params.get("q") || "";
  const select = prefixSelect(prefixes, prefix, "browse-prefix");
  const search = h("input", { id: "search", name: "q", type: "search", value: query, placeholder: "part of a handle" });
  const form = h(
    "form",
    { class: "toolbar", id: "search-form" },
    h("label", {}, "Prefix", select),
    h("label", { class: "grow" }, "Search", search),
    h("button", { type: "submit" }, "Search"),
    link(route("new", { prefix }), "New identifier", { class: "button" }),
  );
  form.addEventListener("submit", (event) => {
    event.preventDefault();
    location.hash = route("handles", { prefix: select.value, ...(search.value ? { q: search.value } : {}) });
  });
  select.addEventListener("change", () => form.requestSubmit());
  const results = h("div", { id: "handle-results" }, message("muted", "Loading…"));
  show(h("h1", {}, "Identifiers"), form, results);
  if (query) await searchHandles(results, prefix, query);
  else await browseHandles(results, prefix, [""]);
}

async function browseHandles(results, prefix, cursors) {
  const cursor = cursors[cursors.length - 1];
  const page = await api("GET", `/api/handles?prefix=${enc(prefix)}&pageSize=${PAGE_SIZE}&cursor=${enc(cursor)}`);
  const start = (cursors.length - 1) * PAGE_SIZE;
  const summary = page.handles.length
    ? `${start + 1}–${start + page.handles.length} of ${Number(page.totalCount).toLocaleString("en")} identifiers`
    : "No identifiers under this prefix yet.";
  const back = h("button", { type: "button", class: "quiet", disabled: cursors.length === 1 }, "← Previous");
  const next = h("button", { type: "button", class: "quiet", id: "next-page", disabled: !page.nextCursor }, "Next →");
  back.addEventListener("click", () => browseHandles(results, prefix, cursors.slice(0, -1)));
  next.addEventListener("click", () => browseHandles(results, prefix, [...cursors, page.nextCursor]));
  results.replaceChildren(
    h("p", { class: "muted", id: "handle-summary" }, summary),
    handleList(page.handles),
    h("p", { class: "pager" }, back, next),
  );
}

// The REST API lists but does not search: the search reads the prefix's listing page by
// page and keeps the identifiers that contain the text (case-insensitively).
async function searchHandles(results, prefix, query) {
  const needle = query.toLowerCase();
  const found = [];
  let cursor = "";
  let read = 0;
  let total = 0;
  for (let pages = 0; pages < SEARCH_MAX_PAGES; pages++) {
    const page = await api("GET", `/api/handles?prefix=${enc(prefix)}&pageSize=${SEARCH_PAGE}&cursor=${enc(cursor)}`);
    total = Number(page.totalCount);
    read += page.handles.length;
    found.push(...page.handles.filter((handle) => handle.toLowerCase().includes(needle)));
    if (!page.nextCursor) break;
    cursor = page.nextCursor;
  }
  const exact = query.includes("/") ? query : `${prefix}/${query}`;
  const count = (n) => n.toLocaleString("en");
  const partial = read < total ? ` (searched the first ${count(read)} of ${count(total)})` : "";
  results.replaceChildren(
    h("p", { class: "muted", id: "handle-summary" }, `${found.length} found for “${query}”${partial}.`),
    handleList(found),
    h("p", {}, link(route("handle", { h: exact }), `Open ${exact} directly`)),
  );
}

function handleList(handles) {
  return h(
    "ul",
    { class: "handles", id: "handle-list" },
    handles.map((handle) => h("li", {}, link(route("handle", { h: handle }), handle))),
  );
}

// One identifier --------------------------------------------------------------------------------
// The record a view shows, or null once the node's refusal is on the page.
export async function loadRecord(handle) {
  try {
    return await api("GET", handlePath(handle));
  } catch (err) {
    if (!(err instanceof ApiError)) throw err;
    show(h("h1", {}, handle), message("error", `The node refused: ${err.shown}`, "view-error"));
    return null;
  }
}

export async function viewHandle(params) {
  const handle = params.get("h") || "";
  const record = await loadRecord(handle);
  if (record === null) return;
  const problem = h("p", { class: "error", id: "delete-error", role: "alert", hidden: true });
  const remove = h("button", { type: "button", class: "danger", id: "delete" }, "Delete…");
  remove.addEventListener("click", async () => {
    if (remove.dataset.armed !== "yes") {
      remove.dataset.armed = "yes";
      remove.textContent = `Really delete ${handle}?`;
      return;
    }
    try {
      await api("DELETE", handlePath(handle));
      state.flash = `Deleted ${handle}.`;
      location.hash = route("handles", { prefix: handle.split("/")[0] });
    } catch (err) {
      problem.textContent = `The node refused: ${err.shown || err.message}`;
      problem.hidden = false;
    }
  });
  show(
    h("h1", { id: "record-handle" }, record.handle),
    h(
      "p",
      { class: "actions" },
      link(route("edit", { h: record.handle }), "Edit", { class: "button", id: "edit" }),
      remove,
      link(route("resolve", { h: record.handle }), "Resolve as the public sees it"),
    ),
    problem,
    valuesTable(record.values),
  );
}

// Audit ---------------------------------------------------------------------------------------

function daysAgo(days) {
  const when = new Date(Date.now() - days * 86400000);
  return when.toISOString().slice(0, 10);
}

export async function viewAudit(params) {
  const prefixes = await ensurePrefixes();
  if (needPrefixes(prefixes, "Audit log")) return;
  const prefix = chosenPrefix(params, prefixes);
  const since = params.get("since") || daysAgo(7);
  const limit = params.get("limit") || "1000";
  const select = prefixSelect(prefixes, prefix, "audit-prefix");
  const sinceInput = h("input", { id: "audit-since", type: "date", value: since });
  const limitSelect = h(
    "select",
    { id: "audit-limit" },
    ["100", "1000", "10000"].map((n) => h("option", { value: n, selected: n === limit }, n)),
  );
  const form = h(
    "form",
    { class: "toolbar" },
    h("label", {}, "Prefix", select),
    h("label", {}, "Since", sinceInput),
    h("label", {}, "At most", limitSelect),
    h("button", { type: "submit" }, "Show"),
  );
  form.addEventListener("submit", (event) => {
    event.preventDefault();
    location.hash = route("audit", { prefix: select.value, since: sinceInput.value, limit: limitSelect.value });
  });
  const epoch = Date.parse(since + "T00:00:00Z") / 1000;
  const path = `/api/audit?prefix=${enc(prefix)}&since=${Number.isFinite(epoch) ? epoch : 0}&limit=${enc(limit)}`;
  const entries = (await api("GET", path)).entries;
  const note =
    entries.length >= Number(limit)
      ? `The first ${limit} entries since ${since} (the log is read oldest first): pick a later day to see newer ones.`
      : `${entries.length} entries since ${since} (UTC), newest first.`;
  const summary = h("p", { class: "muted", id: "audit-summary" }, note);
  show(h("h1", {}, "Audit log"), form, summary, auditTable(entries.reverse()));
}

function auditTable(entries) {
  return h(
    "table",
    { class: "audit", id: "audit-table" },
    h(
      "thead",
      {},
      h("tr", {}, ["Time", "Identity", "Address", "Operation", "Handle", "Result"].map((t) => h("th", {}, t))),
    ),
    h(
      "tbody",
      {},
      entries.map((e) =>
        h(
          "tr",
          { class: e.responseCode === 1 ? "" : "refused" },
          h("td", { class: "time" }, e.time.replace("T", " ")),
          h("td", {}, e.identity),
          h("td", {}, e.address),
          h("td", {}, e.operation),
          h("td", {}, e.handle),
          h("td", {}, e.responseCode === 1 ? "ok" : `${e.responseCode} ${e.message || ""}`),
        ),
      ),
    ),
  );
}

// Resolve -------------------------------------------------------------------------------------

export async function viewResolve(params) {
  const asked = params.get("h") || "";
  const input = h("input", { id: "resolve-handle", name: "h", value: asked, required: true });
  input.placeholder = "88.118.8/JXDY2106023";
  const mine = h("input", { id: "resolve-auth", type: "checkbox", checked: params.get("as") === "me" });
  const form = h(
    "form",
    { class: "toolbar", id: "resolve-form" },
    h("label", { class: "grow" }, "Identifier", input),
    session() ? h("label", { class: "inline" }, mine, " with my credentials") : null,
    h("button", { type: "submit", id: "resolve-submit" }, "Resolve"),
  );
  form.addEventListener("submit", (event) => {
    event.preventDefault();
    location.hash = route("resolve", { h: input.value.trim(), ...(mine.checked ? { as: "me" } : {}) });
  });
  const result = h("div", { id: "resolve-result" });
  show(h("h1", {}, "Resolve an identifier"), form, result);
  if (!asked) return;
  try {
    const record = await api("GET", handlePath(asked), { auth: mine.checked });
    result.replaceChildren(h("h2", {}, record.handle), valuesTable(record.values));
  } catch (err) {
    if (!(err instanceof ApiError)) throw err;
    result.replaceChildren(message("error", `The node answered: ${err.shown}`, "resolve-error"));
  }
}
