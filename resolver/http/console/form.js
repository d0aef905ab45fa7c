// Creating and editing an identifier with a form made from its prefix's template.
import { api, apiPath, enc, ensurePrefixes, handlePath, state } from "./api.js";
import { chosenPrefix, data, h, needPrefixes, prefixSelect, route, show, shownData } from "./dom.js";
import { known, t, tx } from "./i18n.js";
import { loadRecord } from "./views.js";

const TEMPLATE_INDEX = 1001;
const URL_INDEX = 1;

// The prefix and those above it that this node serves, nearest first.
function zonesOf(prefix) {
  const parts = prefix.split(".");
  const zones = parts.map((_, n) => parts.slice(0, parts.length - n).join("."));
  const served = (zone) => state.listed.some((p) => zone === p || zone.startsWith(p + "."));
  return zones.filter(served);
}

// The templates that apply under a prefix: its own and those of the prefixes above it
// (the node uses the nearest definition of a name), each version an option.
async function templatesFor(prefix) {
  const found = [];
  const seen = new Set();
  for (const zone of zonesOf(prefix)) {
    const listed = (await api("GET", apiPath("/api/templates", [zone]), { auth: false })).templates;
    for (const t of listed) {
      if (seen.has(t.name) && !found.some((f) => f.name === t.name && f.zone === zone)) continue;
      seen.add(t.name);
      found.push({ zone, name: t.name, version: t.version });
    }
  }
  return found;
}

async function templateFields(zone, name, version) {
  const versioned = version ? `?version=${enc(version)}` : "";
  return (await api("GET", apiPath("/api/templates", [zone, name]) + versioned, { auth: false })).fields;
}

// What a record's value at 1001 names: HS_TEMPLATE "name" or "name@version"; SNMS's TEMPLATE "version".
function templateReference(values) {
  const value = values.find((v) => v.index === TEMPLATE_INDEX);
  if (!value) return null;
  const text = shownData(value).trim();
  if (value.type.toUpperCase() === "TEMPLATE") return { name: "snms", version: text };
  if (value.type.toUpperCase() !== "HS_TEMPLATE") return null;
  const at = text.indexOf("@");
  return at < 0 ? { name: text, version: null } : { name: text.slice(0, at), version: text.slice(at + 1) || null };
}

function codePoints(text) {
  return [...text].length;
}

const NUMBER = /^\s*[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?\s*$/;
const DATE = /^\d{4}-\d{2}-\d{2}$/;
const DATETIME = /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}/;
const parses = (v) => !Number.isNaN(Date.parse(v));

// The node's checks of each data type (registry/templates.py), as near as JavaScript gets;
// a failed check names its message.
const CHECKS = {
  integer: (v) => /^[+-]?\d+$/.test(v) || "check.integer",
  number: (v) => (NUMBER.test(v) && Number.isFinite(Number(v))) || "check.number",
  date: (v) => (DATE.test(v) && parses(v)) || "check.date",
  datetime: (v) => (DATETIME.test(v) && parses(v)) || "check.datetime",
  url: (v) => {
    try {
      const url = new URL(v);
      return ((url.protocol === "http:" || url.protocol === "https:") && Boolean(url.host)) || "check.url";
    } catch {
      return "check.url";
    }
  },
};

// Everything the node would refuse in one field, said before anything is sent.
function fieldProblem(field, input) {
  const value = input.value;
  if (value === "") return field.required ? t("check.required") : null;
  if (!input.checkValidity()) return input.validationMessage; // the browser's words, in its language
  const length = codePoints(value);
  if (field.minLength !== undefined && length < field.minLength) return t("check.minLength", { min: field.minLength });
  if (field.maxLength !== undefined && length > field.maxLength) {
    return t("check.maxLength", { length, max: field.maxLength });
  }
  if (field.dataType === "enum") {
    return field.choices.includes(value) ? null : t("check.enum", { choices: field.choices.join(", ") });
  }
  const check = CHECKS[field.dataType];
  const verdict = check ? check(value) : true;
  return verdict === true ? null : t(verdict);
}

function fieldInput(field, value) {
  const id = `field-${field.index}`;
  const common = { id, name: id, required: field.required, "data-index": field.index };
  if (field.dataType === "enum") {
    return h(
      "select",
      common,
      h("option", { value: "" }, t(field.required ? "form.choose" : "form.none")),
      field.choices.map((c) => h("option", { value: c, selected: c === value, translate: "no" }, c)),
    );
  }
  // No maxlength attribute: the browser would cut a pasted value silently; the check says so instead.
  const types = { date: "date", url: "url", integer: "text", number: "text", datetime: "text" };
  return h("input", {
    ...common,
    type: types[field.dataType] || "text",
    value: value || "",
    minlength: field.minLength,
    inputmode: field.dataType === "integer" || field.dataType === "number" ? "decimal" : null,
    placeholder: field.dataType === "datetime" ? "2026-11-27T08:30:00Z" : null,
  });
}

// "index 2000 · productName · string · 1–16 characters · required": the value type as the
// template gives it, the rest in the console's words.
function fieldHint(field) {
  const parts = [t("form.hintIndex", { index: String(field.index) }), data(field.type, "code")];
  const dataType = `dataType.${field.dataType}`;
  parts.push(known(dataType) ? t(dataType) : data(field.dataType));
  if (field.minLength !== undefined || field.maxLength !== undefined) {
    parts.push(t("form.hintLength", { min: field.minLength ?? 0, max: field.maxLength ?? "∞" }));
  }
  if (field.required) parts.push(t("form.required"));
  return parts.flatMap((part, n) => (n ? [" · ", part] : [part]));
}

// The field's name exactly as the template gives it (SNMS's display name, often Chinese), else its type.
function fieldName(field) {
  return field.name || field.type;
}

// Whether a record's template reference (name, version or none: the latest) names template ``t``.
function names(reference, t) {
  return Boolean(reference) && reference.name === t.name && (reference.version || t.version) === t.version;
}

function required(field) {
  return field.required ? h("span", { class: "req", "aria-hidden": "true" }, " *") : null;
}

function text(index, type, value) {
  return { index, type, data: { format: "string", value } };
}

class RecordForm {
  constructor(options) {
    this.handle = options.handle; // null for a new identifier
    this.prefix = options.prefix;
    this.prefixes = options.prefixes;
    this.record = options.record; // the stored values when editing
    this.templates = [];
    this.fields = [];
    this.inputs = new Map();
    this.build();
  }

  build() {
    this.problem = h("p", { class: "error", id: "form-error", role: "alert", hidden: true });
    this.fieldBox = h("div", { class: "fields", id: "template-fields" });
    this.templateSelect = h("select", { id: "template", name: "template" });
    this.templateSelect.addEventListener("change", () => this.loadFields());
    const stored = this.record && this.record.find((v) => v.index === URL_INDEX);
    this.urlEditable = !stored || stored.type === "URL"; // else index 1 holds something else, kept as is
    this.url = h("input", { id: "field-1", name: "url", type: "url", value: this.storedText(URL_INDEX) });
    const head = [];
    if (this.handle === null) {
      this.prefixInput = prefixSelect(this.prefixes, this.prefix, "new-prefix");
      this.prefixInput.addEventListener("change", () => {
        this.prefix = this.prefixInput.value;
        this.loadTemplates();
      });
      this.suffix = h("input", { id: "suffix", name: "suffix", required: true, pattern: "\\S+" });
      this.suffix.placeholder = "M3-0001";
      const suffix = h("label", { class: "grow" }, t("form.suffix"), this.suffix);
      head.push(h("div", { class: "row" }, h("label", {}, t("field.prefix"), this.prefixInput), suffix));
    }
    this.submit = h("button", { type: "submit", id: "save" }, t(this.handle === null ? "form.create" : "form.save"));
    this.form = h(
      "form",
      { class: "card record-form", id: "record-form", novalidate: true },
      head,
      h("label", {}, t("form.template"), this.templateSelect),
      this.fieldBox,
      this.urlEditable ? h("label", {}, t("form.url"), this.url) : null,
      this.keptList(),
      this.problem,
      this.submit,
    );
    this.form.addEventListener("submit", (event) => {
      event.preventDefault();
      this.save();
    });
  }

  storedText(index) {
    const value = this.record && this.record.find((v) => v.index === index);
    return value ? shownData(value) : "";
  }

  // Values the form does not edit (HS_ADMIN, secrets, others): written back unchanged.
  keptValues() {
    if (!this.record) return [];
    const edited = new Set([TEMPLATE_INDEX, ...this.fields.map((f) => f.index)]);
    if (this.urlEditable) edited.add(URL_INDEX);
    return this.record.filter((v) => !edited.has(v.index));
  }

  keptList() {
    this.kept = h("p", { class: "muted", id: "kept-values" });
    return this.kept;
  }

  async loadTemplates() {
    this.templates = await templatesFor(this.prefix);
    const reference = this.record ? templateReference(this.record) : null;
    const options = [h("option", { value: "" }, t("form.noTemplate"))];
    this.templates.forEach((template, n) => {
      const label = `${template.name}@${template.version} (${template.zone})`;
      options.push(h("option", { value: String(n), selected: names(reference, template), translate: "no" }, label));
    });
    if (reference && !this.templates.some((template) => template.name === reference.name)) {
      const stored = t("form.asStored", { name: reference.name });
      options.push(h("option", { value: "stored", selected: true }, stored));
    }
    this.templateSelect.replaceChildren(...options);
    if (this.handle === null && this.templates.length && !reference) this.templateSelect.value = "0";
    await this.loadFields();
  }

  chosenTemplate() {
    const choice = this.templateSelect.value;
    return choice === "" || choice === "stored" ? null : this.templates[Number(choice)];
  }

  async loadFields() {
    const template = this.chosenTemplate();
    const entered = new Map([...this.inputs].map(([index, input]) => [index, input.value]));
    const fields = template ? await templateFields(template.zone, template.name, template.version) : [];
    this.fields = fields.filter((f) => f.state !== 0 || this.storedText(f.index)); // disabled: only if in use
    this.inputs = new Map();
    const rows = this.fields.map((field) => {
      const input = fieldInput(field, entered.get(field.index) ?? this.storedText(field.index));
      this.inputs.set(field.index, input);
      input.addEventListener("input", () => this.markField(field, input, false));
      return h(
        "div",
        { class: "field", "data-index": field.index },
        h("label", { for: input.id }, data(fieldName(field)), required(field)),
        input,
        h("small", { class: "hint" }, fieldHint(field)),
        h("small", { class: "field-error", id: `error-${field.index}`, hidden: true }),
      );
    });
    this.fieldBox.replaceChildren(...rows);
    const kept = this.keptValues().map((v) => `${v.index} ${v.type}`);
    this.kept.replaceChildren(...(kept.length ? tx("form.kept", { values: data(kept.join(", ")) }) : []));
  }

  markField(field, input, final) {
    const problem = fieldProblem(field, input);
    const shown = this.fieldBox.querySelector(`#error-${field.index}`);
    if (!final && !input.classList.contains("invalid")) return problem;
    input.classList.toggle("invalid", Boolean(problem));
    input.setAttribute("aria-invalid", problem ? "true" : "false");
    shown.replaceChildren(...(problem ? tx("form.fieldProblem", { field: data(fieldName(field)), problem }) : []));
    shown.hidden = !problem;
    return problem;
  }

  checkAll() {
    const problems = [];
    for (const field of this.fields) {
      const input = this.inputs.get(field.index);
      if (this.markField(field, input, true)) problems.push(input);
    }
    for (const input of [this.suffix, this.url]) {
      if (input && !input.checkValidity()) problems.push(input);
      if (input) input.classList.toggle("invalid", !input.checkValidity());
    }
    if (this.urlEditable && this.url.value && CHECKS.url(this.url.value) !== true) problems.push(this.url);
    return problems;
  }

  values() {
    const values = [...this.keptValues()];
    const template = this.chosenTemplate();
    const stored = this.record && this.record.find((v) => v.index === TEMPLATE_INDEX);
    if (template && names(this.record && templateReference(this.record), template)) {
      values.push(stored); // as the record names it, SNMS's TEMPLATE "version" included
    } else if (template) {
      values.push(text(TEMPLATE_INDEX, "HS_TEMPLATE", `${template.name}@${template.version}`));
    } else if (stored && this.templateSelect.value === "stored") {
      values.push(stored);
    }
    if (this.urlEditable && this.url.value) values.push(text(URL_INDEX, "URL", this.url.value));
    for (const field of this.fields) {
      const value = this.inputs.get(field.index).value;
      if (value !== "") values.push(text(field.index, field.type, value));
    }
    return values.sort((a, b) => a.index - b.index);
  }

  async save() {
    this.problem.hidden = true;
    const problems = this.checkAll();
    if (problems.length) {
      this.problem.textContent = t("form.fix", { count: problems.length });
      this.problem.hidden = false;
      problems[0].focus();
      return;
    }
    const handle = this.handle ?? `${this.prefix}/${this.suffix.value}`;
    const query = this.handle === null ? "?overwrite=false" : "";
    this.submit.disabled = true;
    try {
      await api("PUT", handlePath(handle) + query, { body: { values: this.values() } });
      state.flash = t(this.handle === null ? "form.created" : "form.saved", { handle });
      location.hash = route("handle", { h: handle });
    } catch (err) {
      this.problem.textContent = t("error.refused", { reason: err.shown || err.message });
      this.problem.hidden = false;
    } finally {
      this.submit.disabled = false;
    }
  }
}

export async function viewNew(params) {
  const prefixes = await ensurePrefixes();
  if (needPrefixes(prefixes, t("form.newTitle"))) return;
  const form = new RecordForm({ handle: null, prefix: chosenPrefix(params, prefixes), prefixes, record: null });
  await form.loadTemplates();
  show(h("h1", {}, t("form.newTitle")), form.form);
}

export async function viewEdit(params) {
  const record = await loadRecord(params.get("h") || "");
  if (record === null) return;
  const prefix = record.handle.split("/")[0];
  const form = new RecordForm({ handle: record.handle, prefix, prefixes: [prefix], record: record.values });
  await form.loadTemplates();
  show(h("h1", {}, tx("form.editTitle", { handle: data(record.handle) })), form.form);
}
