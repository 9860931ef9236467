// @ts-check
// Who is signed in (`GET /whoami`) and what the role may do. Every control
// that changes something is marked with the permission the API checks for
// it (`guard`, or `data-needs` in the page's HTML): the role lacking it
// finds the control disabled, its title saying why. The API decides in the
// end; this only spares the user a click that would be refused.

/** @typedef {import("/ui/api.js").Permission} Permission */
/** @typedef {import("/ui/api.js").WhoAmI} WhoAmI */

// The signed-in principal, once known.
/** @type {WhoAmI | null} */
let current = null;

/**
 * Keep the principal, and bring every guarded control on the page in line
 * with its role (it may have changed on the server).
 * @param {WhoAmI} who
 */
export function setWhoami(who) {
  current = who;
  const guarded = /** @type {NodeListOf<HTMLElement>} */ (document.querySelectorAll("[data-needs]"));
  guarded.forEach((el) => apply(el));
}

/** @param {Permission} permission */
const can = (permission) => !!current && current.permissions.includes(permission);

/**
 * Why the signed-in principal may not use what needs `permission`, or null
 * when it may: "needs the permission experiments.write (you are viewer)".
 * @param {Permission} permission
 */
export function refusal(permission) {
  if (can(permission)) return null;
  return `needs the permission ${permission} (${current ? "you are " + current.role : "not signed in"})`;
}

/**
 * Mark a control as needing `permission`: disabled, with the reason as its
 * title, while the role lacks it. The guard owns the control's title.
 * @template {HTMLButtonElement | HTMLAnchorElement} E
 * @param {E} el
 * @param {Permission} permission
 * @returns {E}
 */
export function guard(el, permission) {
  el.dataset.needs = permission;
  apply(el);
  return el;
}

/** @param {HTMLElement} el */
function apply(el) {
  const why = refusal(/** @type {Permission} */ (el.dataset.needs));
  if (el instanceof HTMLAnchorElement) {
    // A link cannot be disabled: without its href it goes nowhere, and
    // aria-disabled tells assistive technology so.
    if (why && el.hasAttribute("href")) {
      el.dataset.href = el.getAttribute("href");
      el.removeAttribute("href");
    } else if (!why && el.dataset.href !== undefined) {
      el.setAttribute("href", el.dataset.href);
      delete el.dataset.href;
    }
    if (why) el.setAttribute("aria-disabled", "true");
    else el.removeAttribute("aria-disabled");
  } else if (el instanceof HTMLButtonElement) {
    el.disabled = !!why;
  }
  if (why) el.title = why.charAt(0).toUpperCase() + why.slice(1);
  else el.removeAttribute("title");
}

/**
 * The scope in a few words ("team=payments · templates lean"), or "" for
 * the whole fleet.
 * @param {WhoAmI} who
 */
export function scopeText(who) {
  if (!who.scope) return "";
  const labels = Object.entries(who.scope.labels).map(([k, v]) => `${k}=${v}`);
  const templates = who.scope.templates ? ["templates " + (who.scope.templates.join(", ") || "none")] : [];
  return [...labels, ...templates].join(" · ");
}
