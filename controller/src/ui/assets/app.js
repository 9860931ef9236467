// @ts-check
// The dashboard's shell: sign-in, who is signed in with which role, a hash
// router (#/fleet, #/agents/<id>, #/experiments, #/experiments/<id>, #/new, #/templates),
// the live-update connection, and the refresh of whatever page is shown
// when the controller says something changed.

import { get, signOut, token } from "/ui/api.js";
import { scopeText, setWhoami } from "/ui/access.js";
import { h, replace, sleep } from "/ui/dom.js";
import { Live } from "/ui/live.js";
import * as signin from "/ui/views/signin.js";
import * as fleet from "/ui/views/fleet.js";
import * as agent from "/ui/views/agent.js";
import * as experiments from "/ui/views/experiments.js";
import * as experiment from "/ui/views/experiment.js";
import * as create from "/ui/views/create.js";
import * as templates from "/ui/views/templates.js";

/**
 * What the shell gives a page: `flash` a message, `navigate` to a hash;
 * the sign-in page also gets `signedIn`, with whom the token signs in as.
 * @typedef {object} Ctx
 * @property {(text: string, kind?: "ok" | "error") => void} flash
 * @property {(hash: string) => void} navigate
 * @property {(who: import("/ui/api.js").WhoAmI) => void} [signedIn]
 */

/**
 * A mounted page: `refresh` when the controller says something changed,
 * `unmount` when the user leaves it.
 * @typedef {{ refresh?: () => Promise<unknown>, unmount?: () => void }} Instance
 */

/**
 * A page module: `mount(root, params, ctx)` fills `root`; `params` are the
 * route's captured groups.
 * @typedef {{ mount: (root: HTMLElement, params: string[], ctx: Ctx) => Instance }} View
 */

/** @type {{ re: RegExp, view: View, nav: string, title: string }[]} */
const routes = [
  { re: /^#\/fleet$/, view: fleet, nav: "fleet", title: "Fleet" },
  { re: /^#\/agents\/([^/?]+)$/, view: agent, nav: "fleet", title: "Agent" },
  { re: /^#\/experiments$/, view: experiments, nav: "experiments", title: "Experiments" },
  { re: /^#\/experiments\/([^/?]+)$/, view: experiment, nav: "experiments", title: "Experiment" },
  { re: /^#\/new(?:\?(.*))?$/, view: create, nav: "new", title: "New experiment" },
  { re: /^#\/templates$/, view: templates, nav: "templates", title: "Templates" },
];

const main = document.getElementById("main");
const topbar = document.getElementById("topbar");
const banner = document.getElementById("banner");
const conn = document.getElementById("conn");
const whoBox = document.getElementById("who");
const flashBox = document.getElementById("flash");

/** @type {{ view: View, instance: Instance, root: HTMLElement } | null} */
let current = null;
/** @type {Live | null} */
let live = null;

/**
 * A short message in the corner (an action's outcome).
 * @param {string} text
 * @param {"ok" | "error"} [kind]
 */
export function flash(text, kind = "ok") {
  const p = h("p", { class: kind === "error" ? "error" : "" }, text);
  flashBox.append(p);
  setTimeout(() => p.remove(), kind === "error" ? 12000 : 7000);
}

/** @type {Ctx} */
const ctx = {
  flash,
  navigate(hash) {
    if (location.hash === hash) route();
    else location.hash = hash;
  },
};

/**
 * @param {string} state
 * @param {string} text
 */
function setConn(state, text) {
  conn.className = "conn " + state;
  conn.textContent = text;
}

// ---- who is signed in ---------------------------------------------------------

/**
 * Keep the principal (the pages' controls follow its role) and show it in
 * the header: "ana · operator · team=payments".
 * @param {import("/ui/api.js").WhoAmI} who
 */
function signedInAs(who) {
  setWhoami(who);
  const scope = scopeText(who);
  replace(
    whoBox,
    h("strong", { id: "who-name" }, who.name),
    " · ",
    h("span", { id: "who-role" }, who.role),
    scope ? h("span", { class: "scope", id: "who-scope" }, " · ", scope) : null,
  );
  whoBox.title =
    `Signed in as ${who.name} (by ${who.method}), ${who.role}: may ${who.permissions.join(", ")}; ` +
    (scope ? `limited to ${scope}` : "the whole fleet");
}

/**
 * Ask again who is signed in (the role may have changed on the server). On
 * a failure the principal stays as it was: the API still decides, and the
 * page shows its refusals.
 */
async function refreshWho() {
  try {
    signedInAs(await get("/whoami"));
  } catch (e) {
    if (e.status !== 401) console.warn("whoami failed:", e);
  }
}

// ---- refreshing the page shown -------------------------------------------

let refreshing = false;
let again = false;
let lastRefresh = 0;
const MIN_GAP_MS = 700;

async function refresh() {
  if (refreshing) {
    again = true;
    return;
  }
  refreshing = true;
  try {
    const wait = lastRefresh + MIN_GAP_MS - Date.now();
    if (wait > 0) await sleep(wait);
    lastRefresh = Date.now();
    const c = current;
    if (c && c.instance && c.instance.refresh) await c.instance.refresh();
  } catch (e) {
    if (e.status !== 401) console.warn("refresh failed:", e);
  } finally {
    refreshing = false;
    if (again) {
      again = false;
      refresh();
    }
  }
}

// ---- routing -----------------------------------------------------------------

function unmount() {
  if (current && current.instance && current.instance.unmount) current.instance.unmount();
  current = null;
}

function route() {
  if (!token()) {
    showSignIn();
    return;
  }
  const hash = location.hash || "#/fleet";
  const match = routes.map((r) => ({ r, m: hash.match(r.re) })).find((x) => x.m);
  if (!match) {
    location.replace("#/fleet");
    return;
  }
  unmount();
  topbar.hidden = false;
  for (const a of /** @type {NodeListOf<HTMLElement>} */ (topbar.querySelectorAll("[data-nav]"))) {
    if (a.dataset.nav === match.r.nav) a.setAttribute("aria-current", "page");
    else a.removeAttribute("aria-current");
  }
  const root = h("div", { class: "page" });
  replace(main, root);
  document.title = match.r.title + " · Phoenix";
  const instance = match.r.view.mount(root, match.m.slice(1), ctx) || {};
  current = { view: match.r.view, instance, root };
  // Keyboard and screen-reader users land on the new page's heading.
  const heading = root.querySelector("h1");
  if (heading) {
    heading.setAttribute("tabindex", "-1");
    heading.focus({ preventScroll: true });
  }
  window.scrollTo(0, 0);
  startLive();
}

/** @param {string} [message] */
function showSignIn(message) {
  unmount();
  stopLive();
  topbar.hidden = true;
  banner.hidden = true;
  const root = h("div", { class: "page" });
  replace(main, root);
  document.title = "Sign in · Phoenix";
  current = {
    view: signin,
    instance: signin.mount(root, [message], {
      ...ctx,
      signedIn(who) {
        signedInAs(who);
        // A new hash routes through hashchange; the same one routes here.
        if (!location.hash || location.hash === "#/" || location.hash === "#") location.hash = "#/fleet";
        else route();
      },
    }),
    root,
  };
}

// ---- live updates --------------------------------------------------------------

function startLive() {
  if (live) return;
  live = new Live({
    onChange: refresh,
    onState(state, info) {
      if (state === "live") {
        banner.hidden = true;
        setConn("live", "Live");
        // Back after an outage (a controller restart): look at everything again.
        if (info.recovered) {
          flash("Reconnected to the controller.");
          refreshWho();
          refresh();
        }
      } else if (state === "down") {
        setConn("down", "Reconnecting…");
        banner.textContent = `Lost the connection to the controller; reconnecting… (next try in ${Math.round(info.retryIn / 1000)} s). What you see may be out of date.`;
        banner.hidden = false;
      } else if (state === "connecting") {
        setConn("", "Connecting…");
      } else if (state === "unauthorized") {
        window.dispatchEvent(new CustomEvent("phoenix:unauthorized"));
      }
    },
  });
  live.start();
}

function stopLive() {
  if (live) live.stop();
  live = null;
}

// ---- start -------------------------------------------------------------------

window.addEventListener("hashchange", () => {
  if (token()) route();
});

window.addEventListener("phoenix:forbidden", refreshWho);

window.addEventListener("phoenix:unauthorized", () => {
  signOut();
  showSignIn("The controller refused the token (signed out). Sign in again with the API token.");
});

document.getElementById("signout").addEventListener("click", () => {
  signOut();
  showSignIn("Signed out.");
});

// The skip link focuses the content instead of changing the route.
document.getElementById("skip").addEventListener("click", (e) => {
  e.preventDefault();
  main.focus();
});

async function boot() {
  if (!token()) {
    showSignIn();
    return;
  }
  // A token from this tab's session: check it is still good, and whom it
  // signs in as.
  for (let delay = 1000; ; delay = Math.min(delay * 2, 10000)) {
    try {
      signedInAs(await get("/whoami"));
      break;
    } catch (e) {
      if (e.status === 401) return; // signed out by the handler
      banner.textContent = "The controller does not answer; retrying…";
      banner.hidden = false;
      await sleep(delay);
    }
  }
  banner.hidden = true;
  route();
}

boot();
