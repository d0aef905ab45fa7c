// Uploading a CSV or JSON-lines file as batches of POST /api/batch, with a progress bar.
import { api, ensurePrefixes } from "./api.js";
import { chosenPrefix, h, needPrefixes, prefixSelect, show } from "./dom.js";

const BATCH_LIMIT = 1000; // operations per POST /api/batch (the node takes 2,000)
const CSV_EXAMPLE = [
  "handle,1:URL,1001:HS_TEMPLATE,2000:productName,2001:made",
  'M3-0001,https://example.com/m3,motor@1.0,"Motor M3, 4 kW",2026-11-27',
].join("\n");
const cell = (text) => h("td", {}, text);

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
  if (quoted) throw new Error("a quoted field is not closed");
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
  if (!rows.length) throw new Error("the file is empty");
  const [header, ...body] = rows;
  if (header[0].trim().toLowerCase() !== "handle") throw new Error('the first column of the header must be "handle"');
  const columns = header.slice(1).map((name, n) => {
    const match = /^\s*(\d+)\s*:\s*(\S.*?)\s*$/.exec(name);
    if (!match) throw new Error(`header column ${n + 2} must be index:type, such as 2000:productName, not “${name}”`);
    return { index: Number(match[1]), type: match[2] };
  });
  return body.map((cells, n) => {
    if (cells.length !== header.length) {
      throw new Error(`line ${n + 2} has ${cells.length} cells, the header ${header.length}`);
    }
    if (!cells[0].trim()) throw new Error(`line ${n + 2} has no handle`);
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
      throw new Error(`line ${n + 1} is not JSON: ${err.message}`);
    }
    if (!item || typeof item.handle !== "string" || !Array.isArray(item.values)) {
      throw new Error(`line ${n + 1} must be {"handle": "...", "values": [...]}`);
    }
    records.push({ handle: fullHandle(item.handle, prefix), values: item.values });
  });
  if (!records.length) throw new Error("the file holds no records");
  return records;
}

function uploadFormats() {
  return h(
    "details",
    { class: "formats", open: true },
    h("summary", {}, "File formats"),
    h(
      "p",
      {},
      h("strong", {}, "CSV"),
      " (.csv, UTF-8): a header ",
      h("code", {}, "handle,<index>:<type>,..."),
      ", then one identifier per line; each cell is the value's text at that index and type, an empty cell no value. ",
      "A handle without “/” is put under the chosen prefix.",
    ),
    h("pre", {}, CSV_EXAMPLE),
    h(
      "p",
      {},
      h("strong", {}, "JSON lines"),
      " (.jsonl, any other name): one ",
      h("code", {}, '{"handle": ..., "values": [...]}'),
      " per line, the values as PUT /api/handles takes them.",
    ),
    h("pre", {}, '{"handle": "M3-0002", "values": [{"index": 1, "type": "URL", "data": "https://example.com/m3"}]}'),
    h(
      "p",
      {},
      `Records go in batches of up to ${BATCH_LIMIT} (POST /api/batch, not atomic): `,
      "a bad record fails alone and is listed; ",
      "“create” leaves an identical existing record as it is and fails on a different one, “replace” overwrites.",
    ),
  );
}

export async function viewUpload(params) {
  const prefixes = await ensurePrefixes();
  if (needPrefixes(prefixes, "Upload")) return;
  const select = prefixSelect(prefixes, chosenPrefix(params, prefixes), "upload-prefix");
  const file = h("input", { id: "upload-file", type: "file", required: true, accept: ".csv,.jsonl,.ndjson,.txt" });
  const op = h("select", { id: "upload-op" }, ["create", "replace"].map((o) => h("option", { value: o }, o)));
  const size = h("input", { id: "upload-batch", type: "number", min: 1, max: BATCH_LIMIT, value: BATCH_LIMIT });
  size.required = true;
  const progress = h("progress", { id: "upload-progress", max: 1, value: 0 });
  const status = h("p", { id: "upload-status", role: "status" });
  const failures = h("div", { id: "upload-failures" });
  const go = h("button", { type: "submit", id: "upload-submit" }, "Upload");
  const form = h(
    "form",
    { class: "card", id: "upload-form" },
    h(
      "div",
      { class: "row" },
      h("label", {}, "Prefix", select),
      h("label", { class: "grow" }, "File", file),
      h("label", {}, "Operation", op),
      h("label", {}, "Per batch", size),
    ),
    go,
    h("div", { class: "progress-line" }, progress, h("span", { id: "upload-percent" }, "0%")),
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
  show(h("h1", {}, "Upload identifiers"), form, uploadFormats());
}

async function upload(file, prefix, op, size, ui) {
  ui.failures.replaceChildren();
  ui.progress.value = 0;
  document.getElementById("upload-percent").textContent = "0%";
  let records;
  try {
    const text = await file.text();
    records = /\.csv$/i.test(file.name) ? csvRecords(text, prefix) : jsonLinesRecords(text, prefix);
  } catch (err) {
    ui.status.className = "error";
    ui.status.textContent = `Nothing was sent: ${err.message}.`;
    return;
  }
  const batches = [];
  for (let n = 0; n < records.length; n += size) batches.push(records.slice(n, n + size));
  ui.progress.max = records.length;
  ui.status.className = "";
  const failed = [];
  let done = 0;
  for (const [n, batch] of batches.entries()) {
    ui.status.textContent = `Sending batch ${n + 1} of ${batches.length}…`;
    const operations = batch.map((r) => ({ op, handle: r.handle, values: r.values }));
    try {
      const answer = await api("POST", "/api/batch", { body: { atomic: false, operations } });
      failed.push(...answer.results.filter((r) => r.responseCode !== 1));
    } catch (err) {
      ui.status.className = "error";
      const refusal = `Batch ${n + 1} of ${batches.length} was refused: ${err.shown || err.message}.`;
      ui.status.textContent = `${refusal} ${done} records were sent before it.`;
      showFailures(ui.failures, failed);
      return;
    }
    done += batch.length;
    ui.progress.value = done;
    document.getElementById("upload-percent").textContent = `${Math.round((100 * done) / records.length)}%`;
  }
  const written = records.length - failed.length;
  const sent = `${batches.length} of ${batches.length} batches`;
  ui.status.textContent = `Done: ${sent}, ${written} records written, ${failed.length} failed.`;
  showFailures(ui.failures, failed);
}

function showFailures(box, failed) {
  if (!failed.length) return;
  box.replaceChildren(
    ...[h("h3", {}, "Failed records"),
    h(
      "table",
      { class: "failures" },
      h("thead", {}, h("tr", {}, h("th", {}, "Handle"), h("th", {}, "Code"), h("th", {}, "Message"))),
      h(
        "tbody",
        {},
        failed.slice(0, 200).map((r) => h("tr", {}, [r.handle, String(r.responseCode), r.message || ""].map(cell))),
      ),
    ),
    failed.length > 200 ? h("p", { class: "muted" }, `… and ${failed.length - 200} more.`) : null].filter(Boolean),
  );
}
