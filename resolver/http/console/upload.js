// Uploading a CSV or JSON-lines file as batches of POST /api/batch, with a progress bar.
import { api, ensurePrefixes } from "./api.js";
import { chosenPrefix, h, needPrefixes, prefixSelect, show } from "./dom.js";
import { percent, t, tx } from "./i18n.js";

const BATCH_LIMIT = 1000; // operations per POST /api/batch (the node takes 2,000)
const CSV_EXAMPLE = [
  "handle,1:URL,1001:HS_TEMPLATE,2000:productName,2001:made",
  'M3-0001,https://example.com/m3,motor@1.0,"Motor M3, 4 kW",2026-11-27',
].join("\n");
const JSON_EXAMPLE = '{"handle": "M3-0002", "values": [{"index": 1, "type": "URL", "data": "https://example.com/m3"}]}';
const cell = (text) => h("td", { translate: "no" }, text);
const code = (text) => h("code", { translate: "no" }, text);
const example = (text) => h("pre", { translate: "no" }, text);

// A file the page will not send, and why (in the console's words).
class FileProblem extends Error {
  constructor(id, params) {
    super(t(id, params));
  }
}

// RFC 4180: quoted fields may hold commas, quotes ("") and line breaks.
function parseCsv(text) {
  const rows = [];
  let row = [];
  let field = "";
  let quoted = false;
  for (let i = 0; i < text.length; i++) {
    const c = text[i];
    if (quoted) {
      if (c === '"' && text[i + 1] === '"') {
        field += '"';
        i++;
      } else if (c === '"') quoted = false;
      else field += c;
    } else if (c === '"' && field === "") quoted = true;
    else if (c === ",") {
      row.push(field);
      field = "";
    } else if (c === "\n" || c === "\r") {
      if (c === "\r" && text[i + 1] === "\n") i++;
      row.push(field);
      rows.push(row);
      row = [];
      field = "";
    } else field += c;
  }
  if (quoted) throw new FileProblem("file.quote");
  if (field !== "" || row.length) {
    row.push(field);
    rows.push(row);
  }
  return rows.filter((r) => r.length > 1 || r[0] !== "");
}

function fullHandle(handle, prefix) {
  return handle.includes("/") ? handle : `${prefix}/${handle}`;
}

function csvRecords(text, prefix) {
  const rows = parseCsv(text.replace(/^\uFEFF/, ""));
  if (!rows.length) throw new FileProblem("file.empty");
  const [header, ...body] = rows;
  if (header[0].trim().toLowerCase() !== "handle") throw new FileProblem("file.firstColumn", { handle: '"handle"' });
  const columns = header.slice(1).map((name, n) => {
    const match = /^\s*(\d+)\s*:\s*(\S.*?)\s*$/.exec(name);
    if (!match) throw new FileProblem("file.column", { n: n + 2, example: "2000:productName", name });
    return { index: Number(match[1]), type: match[2] };
  });
  return body.map((cells, n) => {
    if (cells.length !== header.length) {
      throw new FileProblem("file.cells", { n: n + 2, cells: cells.length, header: header.length });
    }
    if (!cells[0].trim()) throw new FileProblem("file.noHandle", { n: n + 2 });
    const values = [];
    columns.forEach((col, k) => {
      const data = cells[k + 1];
      if (data !== "") values.push({ index: col.index, type: col.type, data: { format: "string", value: data } });
    });
    return { handle: fullHandle(cells[0].trim(), prefix), values };
  });
}

function jsonLinesRecords(text, prefix) {
  const records = [];
  text.split(/\r?\n/).forEach((line, n) => {
    if (!line.trim()) return;
    let item;
    try {
      item = JSON.parse(line);
    } catch (err) {
      throw new FileProblem("file.notJson", { n: n + 1, detail: err.message }); // the browser's words
    }
    if (!item || typeof item.handle !== "string" || !Array.isArray(item.values)) {
      throw new FileProblem("file.shape", { n: n + 1, shape: '{"handle": "...", "values": [...]}' });
    }
    records.push({ handle: fullHandle(item.handle, prefix), values: item.values });
  });
  if (!records.length) throw new FileProblem("file.noRecords");
  return records;
}

function uploadFormats() {
  return h(
    "details",
    { class: "formats", open: true },
    h("summary", {}, t("upload.formats")),
    h("p", {}, tx("upload.csvFormat", { csv: h("strong", {}, "CSV"), header: code("handle,<index>:<type>,...") })),
    example(CSV_EXAMPLE),
    h(
      "p",
      {},
      tx("upload.jsonlFormat", {
        jsonl: h("strong", {}, t("upload.jsonlName")),
        shape: code('{"handle": ..., "values": [...]}'),
        put: code("PUT /api/handles"),
      }),
    ),
    example(JSON_EXAMPLE),
    h("p", {}, tx("upload.batches", { limit: BATCH_LIMIT, batch: code("POST /api/batch") })),
  );
}

export async function viewUpload(params) {
  const prefixes = await ensurePrefixes();
  if (needPrefixes(prefixes, t("upload.title"))) return;
  const select = prefixSelect(prefixes, chosenPrefix(params, prefixes), "upload-prefix");
  const file = h("input", { id: "upload-file", type: "file", required: true, accept: ".csv,.jsonl,.ndjson,.txt" });
  const ops = ["create", "replace"].map((o) => h("option", { value: o }, t(`upload.op.${o}`)));
  const op = h("select", { id: "upload-op" }, ops);
  const size = h("input", { id: "upload-batch", type: "number", min: 1, max: BATCH_LIMIT, value: BATCH_LIMIT });
  size.required = true;
  const progress = h("progress", { id: "upload-progress", max: 1, value: 0 });
  const status = h("p", { id: "upload-status", role: "status" });
  const failures = h("div", { id: "upload-failures" });
  const go = h("button", { type: "submit", id: "upload-submit" }, t("upload.submit"));
  const form = h(
    "form",
    { class: "card", id: "upload-form" },
    h(
      "div",
      { class: "row" },
      h("label", {}, t("field.prefix"), select),
      h("label", { class: "grow" }, t("upload.file"), file),
      h("label", {}, t("upload.operation"), op),
      h("label", {}, t("upload.perBatch"), size),
    ),
    go,
    h("div", { class: "progress-line" }, progress, h("span", { id: "upload-percent" }, percent(0))),
    status,
    failures,
  );
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    if (!form.reportValidity()) return;
    go.disabled = true;
    try {
      await upload(file.files[0], select.value, op.value, Number(size.value), { progress, status, failures });
    } finally {
      go.disabled = false;
    }
  });
  show(h("h1", {}, t("upload.title")), form, uploadFormats());
}

async function upload(file, prefix, op, size, ui) {
  ui.failures.replaceChildren();
  ui.progress.value = 0;
  document.getElementById("upload-percent").textContent = percent(0);
  let records;
  try {
    const text = await file.text();
    records = /\.csv$/i.test(file.name) ? csvRecords(text, prefix) : jsonLinesRecords(text, prefix);
  } catch (err) {
    ui.status.className = "error";
    ui.status.textContent = t("upload.nothingSent", { reason: err.message });
    return;
  }
  const batches = [];
  for (let n = 0; n < records.length; n += size) batches.push(records.slice(n, n + size));
  ui.progress.max = records.length;
  ui.status.className = "";
  const failed = [];
  let done = 0;
  for (const [n, batch] of batches.entries()) {
    ui.status.textContent = t("upload.sending", { n: n + 1, total: batches.length });
    const operations = batch.map((r) => ({ op, handle: r.handle, values: r.values }));
    try {
      const answer = await api("POST", "/api/batch", { body: { atomic: false, operations } });
      failed.push(...answer.results.filter((r) => r.responseCode !== 1));
    } catch (err) {
      ui.status.className = "error";
      const reason = err.shown || err.message;
      ui.status.textContent = t("upload.refused", { n: n + 1, total: batches.length, reason, done });
      showFailures(ui.failures, failed);
      return;
    }
    done += batch.length;
    ui.progress.value = done;
    document.getElementById("upload-percent").textContent = percent(done / records.length);
  }
  const written = records.length - failed.length;
  const total = batches.length;
  ui.status.textContent = t("upload.done", { sent: total, total, written, failed: failed.length });
  showFailures(ui.failures, failed);
}

const SHOWN_FAILURES = 200;
const FAILURE_COLUMNS = ["upload.handle", "upload.code", "upload.message"];

function showFailures(box, failed) {
  if (!failed.length) return;
  const rows = failed.slice(0, SHOWN_FAILURES).map((r) => [r.handle, String(r.responseCode), r.message || ""]);
  const more = failed.length - SHOWN_FAILURES;
  box.replaceChildren(
    h("h3", {}, t("upload.failed")),
    h(
      "table",
      { class: "failures" },
      h("thead", {}, h("tr", {}, FAILURE_COLUMNS.map((id) => h("th", {}, t(id))))),
      h("tbody", {}, rows.map((row) => h("tr", {}, row.map(cell)))),
    ),
    ...(more > 0 ? [h("p", { class: "muted" }, t("upload.more", { count: more }))] : []),
  );
}
