// @ts-check
// Small DOM helpers. Text always goes in as text nodes (never innerHTML),
// so nothing the API returns can inject markup.

const SVG_NS = "http://www.w3.org/2000/svg";

/**
 * Attributes of `h` and `s`: `on…` functions become listeners; `value`,
 * `checked` and `selected` are set as properties; null, undefined and false
 * leave an attribute out, true sets it empty.
 * @typedef {Record<string, any> | null} Attrs
 */

/**
 * What `h`, `s`, `append` and `replace` take as children: nodes, text,
 * numbers, nothing (null, undefined, false, ""), or arrays of those.
 * @typedef {Node | string | number | boolean | null | undefined | ChildList} Child
 * @typedef {Child[]} ChildList
 */

/**
 * @param {Element} el
 * @param {Attrs | undefined} attrs
 */
function setAttrs(el, attrs) {
  if (!attrs) return;
  for (const [k, v] of Object.entries(attrs)) {
    if (v === undefined || v === null || v === false) continue;
    if (k.startsWith("on") && typeof v === "function") {
      el.addEventListener(k.slice(2).toLowerCase(), v);
    } else if (k === "value" || k === "checked" || k === "selected") {
      // Set after the children (a select needs its options first).
    } else if (v === true) {
      el.setAttribute(k, "");
    } else {
      el.setAttribute(k, String(v));
    }
  }
}

/**
 * @template {Element} E
 * @param {E} el
 * @param {Child[]} children
 * @returns {E}
 */
export function append(el, children) {
  for (const c of /** @type {any[]} */ (children).flat(Infinity)) {
    if (c === null || c === undefined || c === false || c === "") continue;
    el.append(c instanceof Node ? c : String(c));
  }
  return el;
}

/**
 * h("a", {href: "#/x", class: "y", onclick: f}, "text", child, [more])
 * @template {keyof HTMLElementTagNameMap} K
 * @param {K} tag
 * @param {Attrs} [attrs]
 * @param {Child[]} children
 * @returns {HTMLElementTagNameMap[K]}
 */
export function h(tag, attrs, ...children) {
  const el = document.createElement(tag);
  setAttrs(el, attrs);
  append(el, children);
  if (attrs) {
    for (const k of ["value", "checked", "selected"]) {
      if (k in attrs && attrs[k] !== undefined && attrs[k] !== null) el[k] = attrs[k];
    }
  }
  return el;
}

/**
 * An SVG element (charts).
 * @param {string} tag
 * @param {Attrs} [attrs]
 * @param {Child[]} children
 * @returns {SVGElement}
 */
export function s(tag, attrs, ...children) {
  const el = document.createElementNS(SVG_NS, tag);
  setAttrs(el, attrs);
  append(el, children);
  return el;
}

/**
 * Replace every child of `el`.
 * @template {Element} E
 * @param {E} el
 * @param {Child[]} children
 * @returns {E}
 */
export function replace(el, ...children) {
  el.replaceChildren();
  return append(el, children);
}

/**
 * Replace `el`'s children on a live refresh without losing the keyboard
 * focus: the focused element's `data-key` is looked up again afterwards.
 */
/**
 * @template {Element} E
 * @param {E} el
 * @param {Child[]} children
 * @returns {E}
 */
export function rerender(el, ...children) {
  const active = document.activeElement;
  const key = active && el.contains(active) ? active.getAttribute("data-key") : null;
  replace(el, ...children);
  if (key) {
    const again = /** @type {HTMLElement | null} */ (el.querySelector(`[data-key="${CSS.escape(key)}"]`));
    if (again) again.focus({ preventScroll: true });
  }
  return el;
}

/** @type {(ms: number) => Promise<void>} */
export const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

/**
 * Call `f` once things have been quiet for `ms`.
 * @param {(...args: any[]) => unknown} f
 * @param {number} ms
 * @returns {((...args: any[]) => void) & { cancel: () => void }}
 */
export function debounce(f, ms) {
  /** @type {ReturnType<typeof setTimeout> | undefined} */
  let t;
  const d = (...args) => {
    clearTimeout(t);
    t = setTimeout(() => f(...args), ms);
  };
  d.cancel = () => clearTimeout(t);
  return d;
}

/**
 * A table in a horizontally scrolling wrapper.
 * @param {Attrs} attrs
 * @param {(Node | string)[]} head
 * @param {Child[]} rows
 */
export function table(attrs, head, rows) {
  return h(
    "div",
    { class: "table-wrap" },
    h(
      "table",
      attrs,
      h("thead", null, h("tr", null, head.map((c) => (c instanceof Node ? c : h("th", { scope: "col" }, c))))),
      h("tbody", null, rows),
    ),
  );
}

/**
 * A page's head: optional crumbs (a p.crumbs), the h1, the subtitle (text
 * for a p.sub, or an element the page updates later) and optional actions
 * (a div.actions on the right).
 * @param {{ title: Child, sub?: Child, crumbs?: Child, actions?: Child }} head
 */
export function pageHead({ title, sub, crumbs, actions }) {
  return h(
    "div",
    { class: "page-head" },
    h(
      "div",
      null,
      crumbs ? h("p", { class: "crumbs" }, crumbs) : null,
      h("h1", null, title),
      sub instanceof Node ? sub : h("p", { class: "sub" }, sub),
    ),
    actions ? h("div", { class: "actions" }, actions) : null,
  );
}

/**
 * A <th> with a class.
 * @type {(text: string, cls?: string) => HTMLTableCellElement}
 */
export const th = (text, cls) => h("th", { scope: "col", class: cls }, text);

/**
 * A modal confirmation: `build(body)` fills it; `onConfirm()` runs on the
 * confirm button and may throw (the message stays in the dialog). Escape
 * or Cancel closes it. Resolves true when confirmed and done.
 * @param {{ title: string, confirmLabel: string, danger?: boolean, build: (body: HTMLElement) => void, onConfirm: () => Promise<void> }} spec
 * @returns {Promise<boolean>}
 */
export function confirmDialog({ title, confirmLabel, danger = false, build, onConfirm }) {
  const dialog = /** @type {HTMLDialogElement} */ (document.getElementById("dialog"));
  const error = h("p", { class: "field-error", id: "dialog-error", role: "alert" });
  const body = h("div", { id: "dialog-body" });
  const cancel = h("button", { type: "button", id: "dialog-cancel" }, "Cancel");
  const confirm = h(
    "button",
    { type: "submit", id: "dialog-confirm", class: danger ? "danger solid" : "primary" },
    confirmLabel,
  );
  build(body);
  return new Promise((resolve) => {
    let done = false;
    const form = h(
      "form",
      {
        onsubmit: async (e) => {
          e.preventDefault();
          confirm.disabled = true;
          cancel.disabled = true;
          error.textContent = "";
          try {
            await onConfirm();
            done = true;
            dialog.close();
          } catch (err) {
            error.textContent = err.message || String(err);
          } finally {
            confirm.disabled = false;
            cancel.disabled = false;
          }
        },
      },
      h("h2", { id: "dialog-title" }, title),
      body,
      error,
      h("div", { class: "buttons" }, cancel, confirm),
    );
    cancel.addEventListener("click", () => dialog.close());
    dialog.addEventListener("close", () => resolve(done), { once: true });
    replace(dialog, form);
    dialog.showModal();
    cancel.focus();
  });
}
