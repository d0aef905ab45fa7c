// idnode's web console: a client of the node's REST API, nothing more (deploy/CONSOLE.md).
// Plain modern JavaScript modules, no build step, no library: the page's Content-Security-Policy
// allows scripts and styles from this origin only, and no inline ones. This module routes.
import { ApiError, session, signOut, state } from "./api.js";
import { viewEdit, viewNew } from "./form.js";
import { h, message, show, startView } from "./dom.js";
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
      state.flash = `Signed out: ${err.shown}`;
      return;
    }
    const shown = err instanceof ApiError ? err.shown : String(err);
    show(h("h1", {}, "Something went wrong"), message("error", shown, "view-error"));
  } finally {
    if (id === state.renderId) document.body.dataset.ready = "yes";
  }
}

document.getElementById("signout").addEventListener("click", signOut);
window.addEventListener("hashchange", render);
render();
