// @ts-check
// Experiments: state and headline numbers of each, newest first.

import { enc, get } from "/ui/api.js";
import { guard } from "/ui/access.js";
import { h, pageHead, replace, rerender, table, th } from "/ui/dom.js";
import { DASH, ago, dateTime, pct, tone, words } from "/ui/format.js";

/** @typedef {import("/ui/api.js").Experiment} Experiment */

// Kept across visits to the page.
const filters = { state: "all" };
const STATES = ["draft", "pending", "deploying", "running", "analyzing", "succeeded", "failed", "promoting", "promoted", "rolled_back", "cancelled"];

/** @param {HTMLElement} root */
export function mount(root) {
  const stateSelect = h(
    "select",
    { id: "filter-state", value: filters.state },
    h("option", { value: "all" }, "All"),
    STATES.map((s) => h("option", { value: s }, words(s))),
  );
  const body = h("div", { id: "experiments-body" }, h("p", { class: "empty" }, "Loading experiments…"));
  stateSelect.addEventListener("change", () => {
    filters.state = stateSelect.value;
    load();
  });
  replace(
    root,
    pageHead({
      title: "Experiments",
      sub: "Candidates measured next to the baseline on real agents, judged against their criteria.",
      actions: guard(h("a", { class: "button primary", href: "#/new", id: "new-experiment" }, "New experiment"), "experiments.write"),
    }),
    h("div", { class: "toolbar" }, h("div", { class: "field" }, h("label", { for: "filter-state" }, "State"), stateSelect)),
    body,
  );

  let seq = 0;
  // A live refresh re-renders only when something changed (or the
  // relative times are getting old).
  let shown = "";
  let shownAt = 0;
  async function load() {
    const mine = ++seq;
    /** @type {Experiment[]} */
    let list;
    try {
      const q = filters.state === "all" ? "" : "?state=" + enc(filters.state);
      list = (await get("/experiments" + q)).experiments;
    } catch (e) {
      if (mine === seq) replace(body, h("p", { class: "error-text" }, "Could not load the experiments: " + e.message));
      return;
    }
    if (mine !== seq) return;
    const signature = filters.state + JSON.stringify(list);
    if (signature === shown && Date.now() - shownAt < 10000) return;
    shown = signature;
    shownAt = Date.now();
    if (list.length === 0) {
      replace(
        body,
        h(
          "p",
          { class: "empty" },
          filters.state === "all" ? "No experiment yet. " : "No experiment in this state. ",
          guard(h("a", { href: "#/new" }, "Create one from the templates"), "experiments.write"),
          ".",
        ),
      );
      return;
    }
    const rows = list.map((e) => {
      const head = e.headline || {};
      const cands = head.candidates || [];
      const perCandidate = (key) =>
        cands.length ? cands.map((c) => h("div", { class: "nowrap" }, `${c.name}: `, h("strong", null, pct(c[key])))) : DASH;
      return h(
        "tr",
        { "data-experiment": e.id, "data-state": e.state },
        h("td", null, h("a", { href: "#/experiments/" + enc(e.id), "data-key": e.id }, e.name), h("span", { class: "sub mono" }, e.id)),
        h(
          "td",
          null,
          h("span", { class: `badge ${tone(e.state)}` }, words(e.state)),
          e.reason ? h("span", { class: "sub", title: e.reason }, truncate(e.reason, 90)) : null,
        ),
        h(
          "td",
          null,
          (e.variants || []).map((v) =>
            h("div", { class: "nowrap" }, v.name, h("span", { class: "muted small" }, ` ${v.role === "baseline" ? "baseline" : v.mode}`)),
          ),
        ),
        h(
          "td",
          null,
          head.verdict ? h("span", { class: `badge ${tone(head.verdict)}` }, head.verdict) : h("span", { class: "muted" }, "not yet"),
          head.winner ? h("span", { class: "sub" }, "winner: " + head.winner) : null,
        ),
        h("td", { class: "num" }, perCandidate("series_reduction")),
        h("td", { class: "num" }, perCandidate("bytes_reduction")),
        h("td", { class: "num" }, perCandidate("critical_coverage")),
        h("td", { class: "nowrap", title: dateTime(e.created_at) }, ago(e.created_at), h("span", { class: "sub" }, "by " + e.author)),
        h(
          "td",
          { class: "nowrap", title: dateTime(e.finished_at || e.ends_at) },
          e.finished_at ? "ended " + ago(e.finished_at) : e.ends_at ? "ends " + ago(e.ends_at) : DASH,
        ),
      );
    });
    rerender(
      body,
      table({ id: "experiments-table" }, [
        th("Experiment"),
        th("State"),
        th("Variants"),
        th("Verdict"),
        th("Series saved", "num"),
        th("Bytes saved", "num"),
        th("Critical kept", "num"),
        th("Created"),
        th("Window"),
      ], rows),
    );
  }

  load();
  return { refresh: load };
}

/**
 * @param {string} s
 * @param {number} n
 */
function truncate(s, n) {
  return s.length > n ? s.slice(0, n - 1) + "…" : s;
}
