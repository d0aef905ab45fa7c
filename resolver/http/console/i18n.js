// The console's language: the texts of messages.js in the language chosen, and numbers and
// dates formatted for it with Intl. The language is the one picked with the page's switch
// (kept in localStorage), else the first of the browser's languages the console speaks
// (zh, zh-TW or zh-HK → zh-CN; en-* → en), else English.
import { MESSAGES } from "./messages.js";

export const LANGUAGES = { "zh-CN": "简体中文", en: "English" }; // each named in itself
const KEY_LANGUAGE = "idnode.console.language";

let language = "en";
let locale = "en"; // for Intl: the browser's own English (en-GB, en-US…) when it has one

function spoken(tag) {
  if (/^zh(-|$)/i.test(tag)) return "zh-CN";
  if (/^en(-|$)/i.test(tag)) return "en";
  return null;
}

function browserLanguages() {
  return navigator.languages && navigator.languages.length ? navigator.languages : [navigator.language || "en"];
}

function picked() {
  try {
    const stored = localStorage.getItem(KEY_LANGUAGE);
    return stored in LANGUAGES ? stored : null;
  } catch {
    return null; // storage refused (a privacy setting): the browser's language then
  }
}

function use(chosen) {
  language = chosen;
  const own = browserLanguages().find((tag) => spoken(tag) === chosen);
  locale = chosen === "zh-CN" ? "zh-CN" : own || "en";
  document.documentElement.lang = chosen;
}

export function currentLanguage() {
  return language;
}

// The language at start: the one picked before, else the browser's.
export function startLanguage() {
  use(picked() || browserLanguages().map(spoken).find(Boolean) || "en");
}

// The switch in the page: used at once, and remembered in this browser.
export function pickLanguage(chosen) {
  if (!(chosen in LANGUAGES)) return;
  try {
    localStorage.setItem(KEY_LANGUAGE, chosen);
  } catch {
    // not remembered; still used in this page
  }
  use(chosen);
}

// Texts ------------------------------------------------------------------------------------------

function pattern(id, count) {
  const entry = MESSAGES[id];
  if (!entry) {
    console.error(`idnode i18n: no message "${id}"`);
    return id;
  }
  const text = entry[language] ?? entry.en;
  if (typeof text === "string") return text;
  const form = typeof count === "number" ? new Intl.PluralRules(locale).select(count) : "other";
  return text[form] ?? text.other;
}

function parts(id, params) {
  return pattern(id, params.count)
    .split(/\{(\w+)\}/)
    .map((part, n) => (n % 2 ? filled(id, part, params[part]) : part))
    .filter((part) => part !== "");
}

function filled(id, name, value) {
  if (value === undefined || value === null) {
    console.error(`idnode i18n: message "${id}" has no value for {${name}}`);
    return `{${name}}`;
  }
  return typeof value === "number" ? num(value) : value;
}

export function known(id) {
  return Object.hasOwn(MESSAGES, id);
}

// The text of message ``id`` in the current language, ``{name}`` replaced by ``params.name``.
export function t(id, params) {
  return parts(id, params || {}).join("");
}

// The same as strings and page elements, for h(): an element given as a parameter is put in
// as it is (a <code> in a sentence, a count in its own span).
export function tx(id, params) {
  return parts(id, params || {});
}

// Numbers and dates ------------------------------------------------------------------------------

export function num(value) {
  return new Intl.NumberFormat(locale).format(value);
}

export function percent(fraction) {
  return new Intl.NumberFormat(locale, { style: "percent", maximumFractionDigits: 0 }).format(fraction);
}

// A UTC day, "2026-11-27", as the language writes it: "long" (November 27, 2026 / 2026年11月27日)
// or "short" (Nov 27 / 11月27日).
export function day(isoDay, style) {
  const when = new Date(isoDay + "T00:00:00Z");
  if (Number.isNaN(when.getTime())) return isoDay;
  const options = style === "short" ? { month: "short", day: "numeric" } : { dateStyle: "long" };
  return new Intl.DateTimeFormat(locale, { ...options, timeZone: "UTC" }).format(when);
}

// A time the node gives ("2026-11-27T08:30:00Z") to the second, in UTC as the node counts days.
export function dateTime(iso) {
  const when = new Date(iso);
  if (Number.isNaN(when.getTime())) return iso;
  return new Intl.DateTimeFormat(locale, {
    year: "numeric",
    month: "2-digit",
    day: "2-digit",
    hour: "2-digit",
    minute: "2-digit",
    second: "2-digit",
    hourCycle: "h23",
    timeZone: "UTC",
  }).format(when);
}
