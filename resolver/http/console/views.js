// The views that read: sign-in, dashboard, browsing and search, one identifier, audit log, resolution.
import { ApiError, api, discoverPrefixes, enc, ensurePrefixes, handlePath, keep, pool, session, state } from "./api.js";
import { CHART_DAYS, barChart } from "./chart.js";
import { chosenPrefix, data, h, link, message, needPrefixes, prefixSelect, route, show, valuesTable } from "./dom.js";
import { dateTime, day, known, num, t, tx } from "./i18n.js";

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
  const button = h("button", { id: "signin-submit", type: "submit" }, t("signin.submit"));
  const form = h(
    "form",
    { class: "card narrow", id: "signin-form" },
    h("h1", {}, t("signin.title")),
    h("p", { class: "muted" }, t("signin.intro")),
    h("label", {}, t("signin.identity"), identity),
    h("label", {}, t("signin.secret"), secret),
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
  if (!(err instanceof ApiError)) return t("signin.unreachable", { detail: err.message });
  if (err.status === 429) {
    return err.retryAfter ? t("signin.throttled", { seconds: err.retryAfter }) : t("signin.throttledSoon");
  }
  if (err.code === 403 || err.code === 402) return t("signin.wrong", { reason: err.shown });
  return t("signin.failed", { reason: err.shown });
}

// Dashboard -----------------------------------------------------------------------------------

export async function viewDashboard() {
  const prefixes = await ensurePrefixes();
  if (!prefixes.length) {
    show(h("h1", {}, t("dashboard.title")), message("muted", t("dashboard.noPrefix")));
    return;
  }
  const stats = new Map();
  const shown = state.admin ? [{ path: "/api/stats" }] : prefixes.map((p) => ({ path: `/api/stats?prefix=${enc(p)}` }));
  await pool(shown, 4, async ({ path }) => {
    for (const entry of (await api("GET", path)).prefixes) stats.set(entry.prefix, entry);
  });
  const cards = prefixes.map((prefix) => prefixCard(prefix, stats.get(prefix)));
  show(h("h1", {}, t("dashboard.title")), h("div", { class: "cards" }, cards));
}

function prefixCard(prefix, stat) {
  const count = stat ? stat.handles : 0;
  const perDay = stat ? stat.registrationsPerDay : {};
  return h(
    "section",
    { class: "card prefix-card", "data-prefix": prefix },
    h("h2", {}, prefix),
    h("p", { class: "count-line" }, tx("dashboard.count", { count, shown: h("span", { class: "count" }, num(count)) })),
    h("h3", {}, t("dashboard.perDay", { days: CHART_DAYS })),
    barChart(perDay),
    h(
      "p",
      { class: "actions" },
      link(route("handles", { prefix }), t("dashboard.browse")),
      link(route("new", { prefix }), t("action.newIdentifier")),
      link(route("upload", { prefix }), t("action.upload")),
      link(route("audit", { prefix }), t("action.audit")),
    ),
  );
}

// Browsing and searching ---------------------------------------------------------------------

export async function viewHandles(params) {
  const prefixes = await ensurePrefixes();
  if (needPrefixes(prefixes, t("handles.title"))) return;
  const prefix = chosenPrefix(params, prefixes);
  const query = params.get("q") || "";
  const select = prefixSelect(prefixes, prefix, "browse-prefix");
  const search = h("input", { id: "search", name: "q", type: "search", value: query });
  search.placeholder = t("handles.searchHint");
  const form = h(
    "form",
    { class: "toolbar", id: "search-form" },
    h("label", {}, t("field.prefix"), select),
    h("label", { class: "grow" }, t("handles.search"), search),
    h("button", { type: "submit" }, t("handles.searchButton")),
    link(route("new", { prefix }), t("action.newIdentifier"), { class: "button" }),
  );
  form.addEventListener("submit", (event) => {
    event.preventDefault();
    location.hash = route("handles", { prefix: select.value, ...(search.value ? { q: search.value } : {}) });
  });
  select.addEventListener("change", () => form.requestSubmit());
  const results = h("div", { id: "handle-results" }, message("muted", t("page.loading")));
  show(h("h1", {}, t("handles.title")), form, results);
  if (query) await searchHandles(results, prefix, query);
  else await browseHandles(results, prefix, [""]);
}

async function browseHandles(results, prefix, cursors) {
  const cursor = cursors[cursors.length - 1];
  const page = await api("GET", `/api/handles?prefix=${enc(prefix)}&pageSize=${PAGE_SIZE}&cursor=${enc(cursor)}`);
  const start = (cursors.length - 1) * PAGE_SIZE;
  const summary = page.handles.length
    ? t("handles.summary", { from: start + 1, to: start + page.handles.length, total: Number(page.totalCount) })
    : t("handles.empty");
  const pager = (text, attrs) => h("button", { type: "button", class: "quiet", ...attrs }, text);
  const back = pager(t("handles.previous"), { disabled: cursors.length === 1 });
  const next = pager(t("handles.next"), { id: "next-page", disabled: !page.nextCursor });
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
  const said = { count: found.length, query: data(query), read, total };
  results.replaceChildren(
    h("p", { class: "muted", id: "handle-summary" }, tx(read < total ? "handles.foundPartial" : "handles.found", said)),
    handleList(found),
    h("p", {}, link(route("handle", { h: exact }), tx("handles.openDirectly", { handle: data(exact) }))),
  );
}

function handleList(handles) {
  return h(
    "ul",
    { class: "handles", id: "handle-list" },
    handles.map((handle) => h("li", {}, link(route("handle", { h: handle }), handle, { translate: "no" }))),
  );
}

// One identifier --------------------------------------------------------------------------------
// The record a view shows, or null once the node's refusal is on the page.
export async function loadRecord(handle) {
  try {
    return await api("GET", handlePath(handle));
  } catch (err) {
    if (!(err instanceof ApiError)) throw err;
    const refused = message("error", t("error.refused", { reason: err.shown }), "view-error");
    show(h("h1", { translate: "no" }, handle), refused);
    return null;
  }
}

export async function viewHandle(params) {
  const handle = params.get("h") || "";
  const record = await loadRecord(handle);
  if (record === null) return;
  const problem = h("p", { class: "error", id: "delete-error", role: "alert", hidden: true });
  const remove = h("button", { type: "button", class: "danger", id: "delete" }, t("handle.delete"));
  remove.addEventListener("click", async () => {
    if (remove.dataset.armed !== "yes") {
      remove.dataset.armed = "yes";
      remove.textContent = t("handle.confirmDelete", { handle });
      return;
    }
    try {
      await api("DELETE", handlePath(handle));
      state.flash = t("handle.deleted", { handle });
      location.hash = route("handles", { prefix: handle.split("/")[0] });
    } catch (err) {
      problem.textContent = t("error.refused", { reason: err.shown || err.message });
      problem.hidden = false;
    }
  });
  show(
    h("h1", { id: "record-handle", translate: "no" }, record.handle),
    h(
      "p",
      { class: "actions" },
      link(route("edit", { h: record.handle }), t("handle.edit"), { class: "button", id: "edit" }),
      remove,
      link(route("resolve", { h: record.handle }), t("handle.resolvePublic")),
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
  if (needPrefixes(prefixes, t("audit.title"))) return;
  const prefix = chosenPrefix(params, prefixes);
  const since = params.get("since") || daysAgo(7);
  const limit = params.get("limit") || "1000";
  const select = prefixSelect(prefixes, prefix, "audit-prefix");
  const sinceInput = h("input", { id: "audit-since", type: "date", value: since });
  const limitSelect = h(
    "select",
    { id: "audit-limit" },
    ["100", "1000", "10000"].map((n) => h("option", { value: n, selected: n === limit }, num(Number(n)))),
  );
  const form = h(
    "form",
    { class: "toolbar" },
    h("label", {}, t("field.prefix"), select),
    h("label", {}, t("audit.since"), sinceInput),
    h("label", {}, t("audit.limit"), limitSelect),
    h("button", { type: "submit" }, t("audit.show")),
  );
  form.addEventListener("submit", (event) => {
    event.preventDefault();
    location.hash = route("audit", { prefix: select.value, since: sinceInput.value, limit: limitSelect.value });
  });
  const epoch = Date.parse(since + "T00:00:00Z") / 1000;
  const path = `/api/audit?prefix=${enc(prefix)}&since=${Number.isFinite(epoch) ? epoch : 0}&limit=${enc(limit)}`;
  const entries = (await api("GET", path)).entries;
  const shownSince = day(since, "long");
  const note =
    entries.length >= Number(limit)
      ? t("audit.truncated", { limit: Number(limit), since: shownSince })
      : t("audit.summary", { count: entries.length, since: shownSince });
  const summary = h("p", { class: "muted", id: "audit-summary" }, note);
  show(h("h1", {}, t("audit.title")), form, summary, auditTable(entries.reverse()));
}

const AUDIT_COLUMNS = [
  "audit.time",
  "audit.identity",
  "audit.address",
  "audit.operation",
  "audit.handle",
  "audit.result",
];

// The node's name of an operation, in words when the console knows it, else as the node wrote it.
function operation(name) {
  if (known(`op.${name}`)) return t(`op.${name}`);
  const single = name.replace(/^batch_/, "");
  return single !== name && known(`op.${single}`) ? t("op.batch", { op: t(`op.${single}`) }) : data(name);
}

// A refusal's code and the node's message, as it sent it.
function refusal(entry) {
  return [String(entry.responseCode), " ", data(entry.message || "")];
}

function auditTable(entries) {
  return h(
    "table",
    { class: "audit", id: "audit-table" },
    h(
      "thead",
      {},
      h("tr", {}, AUDIT_COLUMNS.map((id) => h("th", {}, t(id)))),
    ),
    h(
      "tbody",
      {},
      entries.map((e) =>
        h(
          "tr",
          { class: e.responseCode === 1 ? "" : "refused" },
          h("td", { class: "time" }, h("time", { datetime: e.time }, dateTime(e.time))),
          h("td", { translate: "no" }, e.identity),
          h("td", { translate: "no" }, e.address),
          h("td", { "data-op": e.operation }, operation(e.operation)),
          h("td", { translate: "no" }, e.handle),
          h("td", { "data-code": e.responseCode }, e.responseCode === 1 ? t("audit.ok") : refusal(e)),
        ),
      ),
    ),
  );
}

// Resolve -------------------------------------------------------------------------------------

export async function viewResolve(params) {
  const asked = params.get("h") || "";
  const input = h("input", { id: "resolve-handle", name: "h", value: asked, required: true });
  input.placeholder = "88.118.8/JXDY2106023"; // a handle, in every language
  const mine = h("input", { id: "resolve-auth", type: "checkbox", checked: params.get("as") === "me" });
  const form = h(
    "form",
    { class: "toolbar", id: "resolve-form" },
    h("label", { class: "grow" }, t("resolve.identifier"), input),
    session() ? h("label", { class: "inline" }, mine, " ", t("resolve.mine")) : null,
    h("button", { type: "submit", id: "resolve-submit" }, t("resolve.submit")),
  );
  form.addEventListener("submit", (event) => {
    event.preventDefault();
    location.hash = route("resolve", { h: input.value.trim(), ...(mine.checked ? { as: "me" } : {}) });
  });
  const result = h("div", { id: "resolve-result" });
  show(h("h1", {}, t("resolve.title")), form, result);
  if (!asked) return;
  try {
    const record = await api("GET", handlePath(asked), { auth: mine.checked });
    result.replaceChildren(h("h2", { translate: "no" }, record.handle), valuesTable(record.values));
  } catch (err) {
    if (!(err instanceof ApiError)) throw err;
    result.replaceChildren(message("error", t("resolve.answered", { reason: err.shown }), "resolve-error"));
  }
}
