// idnode's web console: a client of the node's REST API, nothing more (deploy/CONSOLE.md).
// Plain modern JavaScript modules, no build step, no library: the page's Content-Security-Policy
// allows scripts and styles from this origin only, and no inline ones. This module routes.
import { ApiError, session, signOut, state } from "./api.js";
import { viewEdit, viewNew } from "./form.js";
import { h, message, show, startView } from "./dom.js";
import { LANGUAGES, currentLanguage, pickLanguage, startLanguage, t, tx } from "./i18n.js";
import { viewUpload } from "./upload.js";
import { viewAudit, viewDashboard, viewHandle, viewHandles, viewResolve, viewSignin } from "./views.js";

const VIEWS = {
  signin: viewSignin,
  dashboard: viewDashboard,
  handles: viewHandles,
  handle: viewHandle,
  new: viewNew,
  edit: viewEdit,
  upload: viewUpload,
  audit: viewAudit,
  resolve: viewResolve,
};
const PUBLIC_VIEWS = new Set(["signin", "resolve"]);

function parseHash() {
  const [name, query] = location.hash.replace(/^#\/?/, "").split(/\?(.*)/s);
  return { name: name || "dashboard", params: new URLSearchParams(query || "") };
}

function frame(name) {
  const who = session();
  document.getElementById("nav").hidden = !who;
  document.getElementById("who").hidden = !who;
  document.getElementById("signin-link").hidden = Boolean(who) || name === "signin";
  document.getElementById("who-identity").textContent = who ? who.identity : "";
  for (const a of document.querySelectorAll("#nav a")) a.classList.toggle("current", a.dataset.view === name);
  const flash = document.getElementById("flash");
  flash.textContent = state.flash || "";
  flash.hidden = !state.flash;
  state.flash = null;
}

async function render() {
  let { name, params } = parseHash();
  if (!(name in VIEWS)) name = "dashboard";
  if (!session() && !PUBLIC_VIEWS.has(name)) name = "signin";
  const id = ++state.renderId;
  startView();
  frame(name);
  document.body.dataset.view = name;
  document.body.dataset.ready = "no";
  try {
    await VIEWS[name](params);
  } catch (err) {
    if (id !== state.renderId) return;
    if (err instanceof ApiError && (err.code === 403 || err.status === 429) && session()) {
      // The secret changed or is being refused: only signing in again helps.
      signOut();
      state.flash = t("page.signedOut", { reason: err.shown });
      return;
    }
    const shown = err instanceof ApiError ? err.shown : String(err);
    show(h("h1", {}, t("page.failed")), message("error", shown, "view-error"));
  } finally {
    if (id === state.renderId) document.body.dataset.ready = "yes";
  }
}

// The page's own texts (index.html marks them with data-i18n), in the current language.
function translatePage() {
  document.title = t("page.title");
  for (const el of document.querySelectorAll("[data-i18n]")) el.textContent = t(el.dataset.i18n);
  for (const el of document.querySelectorAll("[data-i18n-label]")) {
    el.setAttribute("aria-label", t(el.dataset.i18nLabel));
  }
  document.getElementById("footer").replaceChildren(...tx("page.footer", { api: h("code", {}, "/api") }));
  const languages = Object.entries(LANGUAGES).map(([tag, name]) =>
    h("option", { value: tag, lang: tag, selected: tag === currentLanguage() }, name),
  );
  document.getElementById("language").replaceChildren(...languages);
}

// A language picked in the page: the frame and the view are drawn again in it (a form being
// filled in starts again).
function switchLanguage(event) {
  pickLanguage(event.target.value);
  translatePage();
  render();
}

startLanguage();
translatePage();
document.getElementById("language").addEventListener("change", switchLanguage);
document.getElementById("signout").addEventListener("click", signOut);
window.addEventListener("hashchange", render);
render();
