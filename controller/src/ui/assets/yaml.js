// @ts-check
// The experiment definition the create form writes. Strings are written as
// JSON strings, which YAML reads as double-quoted scalars (so a regex or a
// name can never change the structure); an inline base config is a block
// literal when it can be one.

/** @type {(v: unknown) => string} */
export const q = (v) => JSON.stringify(String(v));

/**
 * An inline base config as a YAML value: a block literal when it can be one.
 * @param {string} text
 * @param {number} indent
 */
function block(text, indent) {
  const body = String(text).replace(/\s+$/, "");
  const lines = body.split("\n");
  const first = lines.find((l) => l.trim() !== "") || "";
  // A literal block guesses its indentation from the first line: one that
  // starts with a space, or a tab anywhere, goes as a quoted string.
  if (/^\s/.test(first) || body.includes("\t") || body.includes("\r")) return " " + q(body + "\n");
  const pad = " ".repeat(indent);
  return " |\n" + lines.map((l) => (l.trim() === "" ? "" : pad + l)).join("\n");
}

/**
 * The fraction a percentage field means, or null when empty (what is not a
 * number is passed on as text, for the API to refuse by name).
 * @param {string | null | undefined} text
 * @returns {number | string | null}
 */
export function fraction(text) {
  const t = String(text ?? "").trim();
  if (t === "") return null;
  const v = Number(t);
  return Number.isFinite(v) ? Number((v / 100).toFixed(6)) : t;
}

/**
 * @param {string | null | undefined} text
 * @returns {number | string | null}
 */
function number(text) {
  const t = String(text ?? "").trim();
  if (t === "") return null;
  const v = Number(t);
  return Number.isFinite(v) ? v : t;
}

/**
 * `k=v, k=v` → [[k, v]] (and the pieces that are not k=v).
 * @param {string} text
 * @returns {{ pairs: [string, string][], bad: string[] }}
 */
export function parseLabels(text) {
  /** @type {[string, string][]} */
  const pairs = [];
  /** @type {string[]} */
  const bad = [];
  for (const part of String(text).split(",").map((p) => p.trim()).filter(Boolean)) {
    const i = part.indexOf("=");
    if (i <= 0) bad.push(part);
    else pairs.push([part.slice(0, i).trim(), part.slice(i + 1).trim()]);
  }
  return { pairs, bad };
}

/** @type {(text: string, sep: string | RegExp) => string[]} */
export const listOf = (text, sep) =>
  String(text)
    .split(sep)
    .map((x) => x.trim())
    .filter(Boolean);

/** @type {(v: number | string) => string} */
const scalar = (v) => (typeof v === "number" ? String(v) : q(v));

/**
 * The create form's fields, as text.
 * @typedef {object} FormState
 * @property {string} name
 * @property {string} description
 * @property {"labels" | "hosts"} targetKind
 * @property {string} labels
 * @property {string} hosts
 * @property {string} base "inline", a template name, or "" (the baseline's template)
 * @property {string} baseYaml
 * @property {string} baseline a template name, or "" (everything)
 * @property {{ template: string, mode: string }[]} candidates
 * @property {string} critical one regex a line
 * @property {string} minSeries
 * @property {string} minBytes
 * @property {string} minCoverage
 * @property {string} minFidelity
 * @property {string} minConservation share of the baseline's process CPU kept
 * @property {string} maxCpu
 * @property {string} interval
 * @property {string} warmup
 * @property {string} duration
 * @property {boolean} autoPromote
 */

/**
 * The form's state → the definition's YAML.
 * @param {FormState} f
 */
export function definitionYaml(f) {
  const out = [];
  out.push(`name: ${q(f.name)}`);
  if (f.description.trim()) out.push(`description: ${q(f.description.trim())}`);
  out.push("targets:");
  if (f.targetKind === "hosts") {
    const hosts = listOf(f.hosts, /[\s,]+/);
    if (hosts.length === 0) out.push("  hosts: []");
    else {
      out.push("  hosts:");
      for (const host of hosts) out.push(`    - ${q(host)}`);
    }
  } else {
    const { pairs } = parseLabels(f.labels);
    if (pairs.length === 0) out.push("  labels: {}");
    else {
      out.push("  labels:");
      for (const [k, v] of pairs) out.push(`    ${q(k)}: ${q(v)}`);
    }
  }
  if (f.base === "inline") {
    out.push("base:");
    out.push("  yaml:" + block(f.baseYaml, 4));
  } else if (f.base) {
    out.push("base:");
    out.push(`  template: ${q(f.base)}`);
  }
  if (f.baseline) {
    out.push("baseline:");
    out.push(`  template: ${q(f.baseline)}`);
  } else {
    out.push("# baseline: everything, unprocessed and exported (the default)");
  }
  if (f.candidates.length === 0) out.push("candidates: []");
  else {
    out.push("candidates:");
    for (const c of f.candidates) {
      out.push(`  - template: ${q(c.template)}`);
      out.push(`    mode: ${c.mode === "export" ? "export" : "shadow"}`);
    }
  }
  const critical = listOf(f.critical, "\n");
  if (critical.length === 0) out.push("critical_processes: []");
  else {
    out.push("critical_processes:");
    for (const re of critical) out.push(`  - ${q(re)}`);
  }
  out.push(`interval: ${q(f.interval.trim())}`);
  out.push(`warmup: ${q(f.warmup.trim())}`);
  out.push(`duration: ${q(f.duration.trim())}`);
  const criteria = [
    ["min_series_reduction", fraction(f.minSeries)],
    ["min_bytes_reduction", fraction(f.minBytes)],
    ["min_critical_coverage", fraction(f.minCoverage)],
    ["min_topn_fidelity", fraction(f.minFidelity)],
    ["min_cpu_conservation", fraction(f.minConservation)],
    ["max_cpu_overhead_percent", number(f.maxCpu)],
  ];
  out.push("criteria:");
  for (const [k, v] of criteria) {
    if (v !== null) out.push(`  ${k}: ${scalar(v)}`);
    else if (k === "min_critical_coverage") out.push(`  ${k}: null   # no coverage criterion`);
    else if (k === "min_cpu_conservation") out.push(`  ${k}: null   # no conservation criterion`);
  }
  if (f.autoPromote) out.push("auto_promote: true");
  return out.join("\n") + "\n";
}
