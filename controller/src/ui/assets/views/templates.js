// @ts-check
// The templates in the controller's --templates-dir: what each keeps and
// drops and the reductions measured (their header comment), and the YAML.

import { enc, get } from "/ui/api.js";
import { guard } from "/ui/access.js";
import { h, pageHead, replace } from "/ui/dom.js";
import { shortHash } from "/ui/format.js";

/** @typedef {import("/ui/api.js").Template} Template */
/** @typedef {{ label: string | null, text: string }} Paragraph */

/** @param {HTMLElement} root */
export function mount(root) {
  const grid = h("div", { class: "template-grid", id: "templates" }, h("p", { class: "empty" }, "Loading the templates…"));
  replace(
    root,
    pageHead({ title: "Templates", sub: "Complete, validated pipeline configs: push one to agents, or compare them in an experiment." }),
    grid,
  );
  let dead = false;
  (async () => {
    /** @type {Template[]} */
    let list;
    try {
      list = (await get("/templates")).templates;
      list = await Promise.all(list.map((t) => get("/templates/" + enc(t.name))));
    } catch (e) {
      if (!dead) replace(grid, h("p", { class: "error-text" }, "Could not load the templates: " + e.message));
      return;
    }
    if (dead) return;
    if (list.length === 0) {
      replace(grid, h("p", { class: "empty" }, "The templates directory (--templates-dir) holds no *.yaml file."));
      return;
    }
    replace(grid, list.map(card));
  })();
  return {
    unmount() {
      dead = true;
    },
  };
}

/** @param {Template} t */
function card(t) {
  const { title, paragraphs } = headerOf(t.content || "", t.name);
  return h(
    "article",
    { class: "card template-card", "data-template": t.name, "aria-labelledby": "tpl-" + t.name },
    h("h2", { id: "tpl-" + t.name }, t.name),
    title ? h("p", { class: "desc" }, title) : null,
    stats(paragraphs),
    h(
      "div",
      { class: "header-comment" },
      paragraphs.map((p) =>
        h(
          "p",
          { class: /^measured/i.test(p.label || p.text) ? "measured" : null },
          p.label ? [h("strong", null, p.label), " "] : null,
          p.text,
        ),
      ),
    ),
    h(
      "div",
      { class: "meta" },
      h("span", null, "hash ", h("span", { class: "mono", title: t.hash }, shortHash(t.hash))),
      guard(h("a", { href: "#/new?candidate=" + enc(t.name) }, "Try it as a candidate"), "experiments.write"),
    ),
    h("details", null, h("summary", null, "YAML"), h("pre", { class: "yaml" }, t.content || "")),
  );
}

/**
 * The measured figures of the "Measured" paragraph, as headline numbers.
 * @param {Paragraph[]} paragraphs
 */
function stats(paragraphs) {
  const measured = paragraphs.find((p) => /^measured/i.test(p.label || p.text));
  if (!measured) return null;
  const text = measured.text;
  const out = [];
  const series = text.match(/(\d+(?:\.\d+)?)% fewer series/);
  if (series) out.push(["fewer series", series[1] + "%"]);
  const critical = text.match(/critical processes kept individually: (\d+) of (\d+)/);
  if (critical) out.push(["critical processes kept", `${critical[1]} of ${critical[2]}`]);
  const topn = text.match(/top 10[^:]*kept individually: (\d+(?:\.\d+)?)%/) || text.match(/(\d+(?:\.\d+)?)% of the baseline's\s+top 10/);
  if (topn) out.push(["of the top 10 kept", topn[1] + "%"]);
  if (out.length === 0) return null;
  return h(
    "dl",
    { class: "stats", "aria-label": "Measured" },
    out.map(([label, value]) => h("div", null, h("dt", null, label), h("dd", null, value))),
  );
}

/**
 * The header comment: its first line (`# name: what it is`) and the
 * paragraphs after it, "Keeps:", "Drops:", "Measured …" with their labels.
 * @param {string} content
 * @param {string} name
 */
function headerOf(content, name) {
  const lines = [];
  for (const line of content.split("\n")) {
    if (!line.startsWith("#")) break;
    lines.push(line.replace(/^#\s?/, ""));
  }
  let title = lines.shift() || "";
  if (title.startsWith(name + ":")) title = title.slice(name.length + 1).trim();
  /** @type {Paragraph[]} */
  const paragraphs = [];
  /** @type {Paragraph | null} */
  let current = null;
  for (const raw of lines) {
    const line = raw.trimEnd();
    if (line.trim() === "") {
      current = null;
      continue;
    }
    const continuation = /^\s/.test(line) && current;
    const m = !continuation && line.match(/^([A-Z][A-Za-z -]{1,20}):\s*(.*)$/);
    if (m) {
      current = { label: m[1] + ":", text: m[2] };
      paragraphs.push(current);
    } else if (current) {
      current.text += (current.text ? " " : "") + line.trim();
    } else {
      current = { label: null, text: line.trim() };
      paragraphs.push(current);
    }
  }
  return { title, paragraphs };
}
