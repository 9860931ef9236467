// @ts-check
// A new experiment, in a few steps, from the templates. The form writes
// the YAML definition (shown, and editable: once edited by hand, the YAML
// wins); every change is checked by POST /api/v1/experiments/validate, the
// API's own validator, and each error is shown next to its field. A role
// that may not create experiments may still write and check one.

import { author, enc, get, post } from "/ui/api.js";
import { guard, refusal } from "/ui/access.js";
import { debounce, h, pageHead, replace } from "/ui/dom.js";
import { shortHash } from "/ui/format.js";
import { definitionYaml, listOf, parseLabels } from "/ui/yaml.js";
import { matchingAgents } from "/ui/views/experiment.js";

/** @typedef {import("/ui/api.js").Agent} Agent */
/** @typedef {import("/ui/api.js").FieldError} FieldError */
/** @typedef {import("/ui/api.js").Template} Template */
/** @typedef {import("/ui/api.js").Validation} Validation */
/** @typedef {import("/ui/app.js").Ctx} Ctx */
/** @typedef {import("/ui/dom.js").Child} Child */
/** @typedef {import("/ui/yaml.js").FormState} FormState */

/**
 * Where a field's errors go: the input marked invalid, the text under it.
 * @typedef {Map<string, { input: HTMLElement, error: HTMLElement }>} Slots
 */

/**
 * What the user did so far, which decides what the form shows.
 * @typedef {object} Progress
 * @property {boolean} yamlEdited the YAML was edited by hand: it wins over the form
 * @property {boolean} showAll errors show on every field (after a create attempt)
 * @property {Set<string>} touched the slots of the fields the user has been to
 * @property {Validation | null} lastValid the last valid check of the YAML
 */

const EXAMPLE_BASE = `receivers:
  procfs: {}
exporters:
  file: { path: ./out/experiment.jsonl }
service:
  pipelines:
    metrics: { receivers: [procfs], exporters: [file] }
`;

// The field an API error names → the form's error slot.
/** @type {Record<string, string>} */
const FIELD_SLOTS = {
  name: "f-name",
  description: "f-description",
  critical_processes: "f-critical",
  "criteria.min_series_reduction": "f-min-series",
  "criteria.min_bytes_reduction": "f-min-bytes",
  "criteria.min_critical_coverage": "f-min-coverage",
  "criteria.min_topn_fidelity": "f-min-fidelity",
  "criteria.min_cpu_conservation": "f-min-conservation",
  "criteria.max_cpu_overhead_percent": "f-max-cpu",
  interval: "f-interval",
  warmup: "f-warmup",
  duration: "f-duration",
};

/**
 * @param {HTMLElement} root
 * @param {string[]} params the query: `name=` and `candidate=` prefill the form
 * @param {Ctx} ctx
 */
export function mount(root, [query], ctx) {
  const params = new URLSearchParams(query || "");
  let dead = false;
  replace(
    root,
    pageHead({ title: "New experiment", sub: "Loading the templates…" }),
  );
  /** @type {import("/ui/app.js").Instance} */
  let instance = { refresh: async () => {} };
  get("/templates")
    .then((r) => {
      if (!dead) instance = build(root, r.templates, params, ctx);
    })
    .catch((e) => {
      if (!dead) root.append(h("p", { class: "error-text" }, "Could not load the templates: " + e.message));
    });
  return {
    refresh: () => instance.refresh(),
    unmount() {
      dead = true;
      if (instance.unmount) instance.unmount();
    },
  };
}

// ---- the form's fields ---------------------------------------------------------

/**
 * A labelled field with a hint and an error slot.
 * @param {Slots} slots
 * @param {string} id
 * @param {string} label
 * @param {HTMLElement} input
 * @param {string} [hint]
 * @param {string} [slot]
 */
function field(slots, id, label, input, hint, slot = id) {
  const error = h("p", { class: "field-error", id: "err-" + slot, role: "alert" });
  const hintEl = hint ? h("span", { class: "hint", id: "hint-" + id }, hint) : null;
  input.id = id;
  input.setAttribute("aria-describedby", [hint ? "hint-" + id : null, "err-" + slot].filter(Boolean).join(" "));
  slots.set(slot, { input, error });
  return h("div", { class: "field" }, h("label", { for: id }, label), input, hintEl, error);
}

/** @param {Record<string, unknown>} [attrs] */
const textInput = (attrs = {}) => h("input", { type: "text", spellcheck: "false", ...attrs });
/** @param {string} value */
const percentInput = (value) => h("input", { type: "number", min: "0", max: "100", step: "any", inputmode: "decimal", value });
/**
 * @param {string} value
 * @param {string} label
 */
const option = (value, label) => h("option", { value }, label);

/**
 * One numbered step of the form: a card headed "n  title".
 * @param {number} n
 * @param {string} title
 * @param {Child[]} children
 */
const step = (n, title, ...children) =>
  h("section", { class: "card" }, h("h2", { class: "step-title" }, h("span", { class: "n", "aria-hidden": "true" }, String(n)), title), children);
/** @param {Child[]} children */
const row = (...children) => h("div", { class: "row" }, children);

/**
 * 1. What and where.
 * @param {Slots} slots
 * @param {URLSearchParams} params
 */
function targetsStep(slots, params) {
  const name = textInput({ maxlength: "128", required: true, value: params.get("name") || "" });
  const description = h("textarea", { rows: "2", maxlength: "4096" });
  const byLabels = h("input", { type: "radio", name: "target-kind", id: "f-target-labels", value: "labels", checked: true });
  const byHosts = h("input", { type: "radio", name: "target-kind", id: "f-target-hosts", value: "hosts" });
  const labels = textInput({ placeholder: "env=staging, team=payments" });
  const hosts = textInput({ placeholder: "web-1, web-2" });
  const match = h("p", { class: "match", id: "match-count", role: "status", "aria-live": "polite" });
  const targetsError = h("p", { class: "field-error", id: "err-targets", role: "alert" });
  const labelsField = field(slots, "f-labels", "Labels", labels, "Online agents carrying all of these labels (key=value, comma-separated).", "f-labels");
  const hostsField = field(slots, "f-hosts", "Host names", hosts, "Online agents on these hosts (comma-separated).", "f-hosts");
  hostsField.hidden = true;
  const targetsSet = h(
    "fieldset",
    { id: "targets" },
    h("legend", null, "Target agents"),
    h(
      "div",
      { class: "inline-radios" },
      h("label", { class: "check", for: "f-target-labels" }, byLabels, "by labels"),
      h("label", { class: "check", for: "f-target-hosts" }, byHosts, "by host names"),
    ),
    labelsField,
    hostsField,
    match,
    targetsError,
  );
  slots.set("targets", { input: targetsSet, error: targetsError });
  const section = step(
    1,
    "Name and targets",
    field(slots, "f-name", "Name", name),
    field(slots, "f-description", "Description", description, "Optional: what you want to learn."),
    targetsSet,
  );
  return { section, name, description, byLabels, byHosts, labels, hosts, match, labelsField, hostsField };
}

/**
 * 2. Variants: the baseline, where the data goes, the candidates.
 * @param {Slots} slots
 * @param {Template[]} templates
 * @param {URLSearchParams} params
 */
function variantsStep(slots, templates, params) {
  // By default the experiment writes to a file on each agent: it needs no
  // backend and binds no port, so it runs anywhere (pick a template to send
  // to your OTLP backend instead).
  const baseSelect = h(
    "select",
    { value: "inline" },
    option("inline", "Inline YAML (below): a local file by default"),
    option("", "The baseline's template, else the agent's default config"),
    templates.map((t) => option("tpl:" + t.name, `${t.name} (its receivers and exporters)`)),
  );
  const baseYaml = h("textarea", { rows: "7", spellcheck: "false" });
  baseYaml.value = EXAMPLE_BASE;
  const baseYamlField = field(
    slots,
    "f-base-yaml",
    "Base config (inline)",
    baseYaml,
    "An agent config whose receivers, exporters and telemetry settings the experiment uses; its pipelines are replaced by the variants.",
    "f-base-yaml",
  );
  baseYamlField.hidden = true;
  const baselineSelect = h(
    "select",
    null,
    option("", "Everything: every process, unprocessed (exported)"),
    templates.map((t) => option(t.name, t.name)),
  );
  const candidateRows = templates.map((t) => candidateRow(slots, t, params.get("candidate") === t.name));
  const candidatesError = h("p", { class: "field-error", id: "err-candidates", role: "alert" });
  const candidatesSet = h(
    "fieldset",
    { id: "candidates" },
    h("legend", null, "Candidates"),
    h("p", { class: "muted small" }, "Pick 1 to 8 templates to compare with the baseline. Shadow: measured, sent nowhere; export: also sent to the exporters."),
    h("div", { class: "candidate-list" }, candidateRows.map((c) => c.row)),
    candidatesError,
  );
  slots.set("candidates", { input: candidatesSet, error: candidatesError });
  const section = step(
    2,
    "Baseline and candidates",
    row(
      field(slots, "f-baseline", "Baseline", baselineSelect, "What the candidates are compared with."),
      field(slots, "f-base", "Receivers and exporters", baseSelect, "Where the experiment's data goes (each variant becomes a pipeline of this config)."),
    ),
    baseYamlField,
    candidatesSet,
  );
  return { section, baseSelect, baseYaml, baseYamlField, baselineSelect, candidateRows };
}

/**
 * A template to tick as a candidate, with its mode.
 * @param {Slots} slots
 * @param {Template} t
 * @param {boolean} checked
 */
function candidateRow(slots, t, checked) {
  const check = h("input", { type: "checkbox", id: "cand-" + t.name, value: t.name, checked });
  const mode = h(
    "select",
    { id: "mode-" + t.name, "aria-label": `Mode of ${t.name}`, title: "shadow: measured, sent nowhere; export: also sent to the base's exporters" },
    option("shadow", "shadow"),
    option("export", "export"),
  );
  const error = h("p", { class: "field-error", id: "err-cand-" + t.name, role: "alert" });
  const row = h(
    "div",
    { class: "candidate-opt", id: "cand-row-" + t.name },
    check,
    h("label", { for: "cand-" + t.name, class: "mono" }, t.name),
    mode,
    h("span", { class: "desc" }, describe(t)),
    error,
  );
  check.setAttribute("aria-describedby", "err-cand-" + t.name);
  slots.set("cand-" + t.name, { input: row, error });
  return { t, check, mode, row };
}

/**
 * 3. Critical processes.
 * @param {Slots} slots
 */
function criticalStep(slots) {
  const critical = h("textarea", { rows: "3", spellcheck: "false", placeholder: "^(postgres|nginx|kubelet)$" });
  const section = step(
    3,
    "Critical processes",
    field(slots, "f-critical", "Processes that must stay visible", critical, "One regex on the executable name per line. A candidate hiding one fails (and its guardrail stops the experiment)."),
  );
  return { section, critical };
}

/**
 * 4. Criteria.
 * @param {Slots} slots
 */
function criteriaStep(slots) {
  const minSeries = percentInput("");
  const minBytes = percentInput("");
  const minCoverage = percentInput("100");
  const minFidelity = percentInput("");
  // The controller's default: a candidate that drops a busy process fails.
  const minConservation = percentInput("75");
  const maxCpu = h("input", { type: "number", min: "0", max: "100", step: "any", inputmode: "decimal" });
  const section = step(
    4,
    "Success criteria",
    h("p", { class: "muted small" }, "Each is judged on its confidence interval; leave a box empty for no criterion."),
    row(
      field(slots, "f-min-series", "Min series reduction (%)", minSeries),
      field(slots, "f-min-bytes", "Min bytes reduction (%)", minBytes),
      field(slots, "f-min-coverage", "Min critical coverage (%)", minCoverage),
      field(slots, "f-min-fidelity", "Min top-N fidelity (%)", minFidelity),
      field(slots, "f-min-conservation", "Min CPU conservation (%)", minConservation),
      field(slots, "f-max-cpu", "Max CPU overhead (% of a core)", maxCpu),
    ),
  );
  return { section, minSeries, minBytes, minCoverage, minFidelity, minConservation, maxCpu };
}

/**
 * 5. Timing.
 * @param {Slots} slots
 */
function timingStep(slots) {
  const interval = textInput({ value: "10s" });
  const warmup = textInput({ value: "30s" });
  const duration = textInput({ value: "10m" });
  const autoPromote = h("input", { type: "checkbox", id: "f-auto-promote" });
  const section = step(
    5,
    "Timing",
    row(
      field(slots, "f-interval", "Interval", interval, "The agents' scrape interval (at least 1s)."),
      field(slots, "f-warmup", "Warm-up", warmup, "Not measured after the deploy."),
      field(slots, "f-duration", "Duration", duration, "The measured window: 30s, 10m, 1h, 7d…"),
    ),
    h("label", { class: "check", for: "f-auto-promote" }, autoPromote, "Promote the winner automatically when the verdict is a success"),
  );
  return { section, interval, warmup, duration, autoPromote };
}

/**
 * 6. The YAML, its check, and the create button.
 * @param {Slots} slots
 */
function reviewStep(slots) {
  const yaml = h("textarea", { id: "f-yaml", spellcheck: "false", "aria-describedby": "yaml-state validation" });
  const yamlLabel = h("label", { for: "f-yaml" }, "Definition (YAML)");
  const yamlState = h("span", { id: "yaml-state" }, "Written by the form.");
  const regenerate = h("button", { type: "button", class: "link", id: "regenerate", hidden: true }, "Rewrite it from the form");
  const validation = h("div", { class: "validation", id: "validation", role: "status", "aria-live": "polite" }, "Checking…");
  const startNow = h("input", { type: "checkbox", id: "f-start", checked: true });
  const createButton = guard(h("button", { type: "submit", class: "primary", id: "create" }, "Create experiment"), "experiments.write");
  const submitError = h("p", { class: "field-error", id: "err-submit", role: "alert" });
  const section = step(
    6,
    "Review and create",
    h("div", { class: "yaml-state" }, yamlLabel, h("span", null, yamlState, " ", regenerate)),
    yaml,
    validation,
    h("div", { class: "submit-row" }, h("label", { class: "check", for: "f-start" }, startNow, "Start it now"), createButton),
    submitError,
  );
  slots.set("f-yaml", { input: yaml, error: h("p") });
  return { section, yaml, yamlState, regenerate, validation, startNow, createButton, submitError };
}

/**
 * Every step, and the form holding them.
 * @param {Template[]} templates
 * @param {URLSearchParams} params
 */
function createForm(templates, params) {
  /** @type {Slots} */
  const slots = new Map();
  const targets = targetsStep(slots, params);
  const variants = variantsStep(slots, templates, params);
  const critical = criticalStep(slots);
  const criteria = criteriaStep(slots);
  const timing = timingStep(slots);
  const review = reviewStep(slots);
  const form = h(
    "form",
    { class: "create-grid", id: "create-form", novalidate: true },
    h("div", { class: "stack" }, targets.section, variants.section, critical.section, criteria.section, timing.section),
    h("div", { class: "yaml-side" }, review.section),
  );
  return { form, slots, ...targets, ...variants, ...critical, ...criteria, ...timing, ...review };
}

/** @typedef {ReturnType<typeof createForm>} Form */

// ---- the form's state → YAML ----------------------------------------------

/**
 * @param {Form} f
 * @returns {FormState}
 */
function formState(f) {
  return {
    name: f.name.value,
    description: f.description.value,
    targetKind: f.byHosts.checked ? "hosts" : "labels",
    labels: f.labels.value,
    hosts: f.hosts.value,
    base: f.baseSelect.value.startsWith("tpl:") ? f.baseSelect.value.slice(4) : f.baseSelect.value,
    baseYaml: f.baseYaml.value,
    baseline: f.baselineSelect.value,
    candidates: f.candidateRows.filter((c) => c.check.checked).map((c) => ({ template: c.t.name, mode: c.mode.value })),
    critical: f.critical.value,
    minSeries: f.minSeries.value,
    minBytes: f.minBytes.value,
    minCoverage: f.minCoverage.value,
    minFidelity: f.minFidelity.value,
    minConservation: f.minConservation.value,
    maxCpu: f.maxCpu.value,
    interval: f.interval.value,
    warmup: f.warmup.value,
    duration: f.duration.value,
    autoPromote: f.autoPromote.checked,
  };
}

/**
 * @param {Form} f
 * @param {EventTarget} el
 */
const isTargetInput = (f, el) => el === f.labels || el === f.hosts || el === f.byLabels || el === f.byHosts;

/**
 * The error slot of the input the user changed.
 * @param {Form} f
 * @param {EventTarget | null} target
 */
function slotOfInput(f, target) {
  const el = /** @type {HTMLElement | null} */ (target);
  if (!el || !el.id) return null;
  if (isTargetInput(f, el)) return "targets";
  if (el.id.startsWith("cand-") || el.id.startsWith("mode-")) return "candidates";
  if (el === f.baseYaml) return "f-base";
  return el.id;
}

/**
 * Show what the form's choices hide or highlight.
 * @param {Form} f
 */
function showChoices(f) {
  f.hostsField.hidden = !f.byHosts.checked;
  f.labelsField.hidden = f.byHosts.checked;
  f.baseYamlField.hidden = f.baseSelect.value !== "inline";
  for (const c of f.candidateRows) c.row.classList.toggle("checked", c.check.checked);
}

// ---- checks ----------------------------------------------------------------

/**
 * The labels are checked here, as typed: the API would only say the
 * targets are wrong.
 * @param {Form} f
 */
function checkLabels(f) {
  const slot = f.slots.get("f-labels");
  const { bad } = parseLabels(f.labels.value);
  if (!f.byHosts.checked && bad.length) {
    slot.error.textContent = bad.map((b) => `“${b}” is not key=value`).join("; ");
    f.labels.setAttribute("aria-invalid", "true");
  } else {
    slot.error.textContent = "";
    f.labels.removeAttribute("aria-invalid");
  }
}

/**
 * Every slot's error but the labels' (checked here, not by the API).
 * @param {Slots} slots
 */
function clearErrors(slots) {
  for (const [key, { input, error }] of slots) {
    if (key === "f-labels") continue;
    error.textContent = "";
    input.removeAttribute("aria-invalid");
  }
}

/**
 * Where an error about `name` (e.g. `candidates[0].template`) goes.
 * @param {Form} f
 * @param {boolean} yamlEdited candidates are only known by index when the form wrote the YAML
 * @param {string} name
 */
function slotOf(f, yamlEdited, name) {
  if (FIELD_SLOTS[name]) return FIELD_SLOTS[name];
  if (name.startsWith("critical_processes")) return "f-critical";
  if (name === "targets" || name.startsWith("targets.")) return "targets";
  if (name === "base" || name.startsWith("base.")) return f.baseSelect.value === "inline" ? "f-base-yaml" : "f-base";
  if (name === "baseline" || name.startsWith("baseline.")) return "f-baseline";
  const m = name.match(/^candidates\[(\d+)\]/);
  if (m) {
    const chosen = f.candidateRows.filter((c) => c.check.checked);
    const c = !yamlEdited ? chosen[Number(m[1])] : null;
    return c ? "cand-" + c.t.name : "candidates";
  }
  if (name === "candidates") return "candidates";
  return null;
}

/**
 * Whether an error in `slot` shows now: on the fields the user has been to.
 * @param {Progress} progress
 * @param {string | null} slot
 */
function visibleSlot(progress, slot) {
  return (
    progress.showAll ||
    progress.touched.has(slot) ||
    (slot && slot.startsWith("cand-") && progress.touched.has("candidates")) ||
    (slot === "f-base-yaml" && progress.touched.has("f-base"))
  );
}

/**
 * Shown next to their fields; what is left is returned: [general, waiting].
 * @param {Form} f
 * @param {Progress} progress
 * @param {FieldError[]} errors
 * @returns {[FieldError[], FieldError[]]}
 */
function showErrors(f, progress, errors) {
  clearErrors(f.slots);
  const general = [];
  const waiting = [];
  for (const e of errors) {
    const slot = slotOf(f, progress.yamlEdited, e.field || "");
    if (slot && f.slots.has(slot) && !visibleSlot(progress, slot)) {
      waiting.push(e);
    } else if (slot && f.slots.has(slot)) {
      const { input, error } = f.slots.get(slot);
      const prefix = slot.startsWith("cand-") || slot === "f-critical" ? `${e.field}: ` : "";
      error.textContent = (error.textContent ? error.textContent + "\n" : "") + prefix + e.message;
      input.setAttribute("aria-invalid", "true");
    } else {
      general.push(e);
    }
  }
  return [general, waiting];
}

/**
 * A valid definition: its variants, how many agents match, the config.
 * @param {HTMLElement} validation
 * @param {Validation} r
 */
function showValid(validation, r) {
  validation.className = "validation valid";
  validation.dataset.valid = "true";
  replace(
    validation,
    h("strong", null, "Valid. "),
    `Variants: ${r.variants.join(", ")}. ${r.matching_agents.length} online agent(s) match now.`,
    h("details", null, h("summary", null, "The agent config it deploys"), h("pre", { class: "yaml" }, r.config)),
  );
}

/**
 * How many problems (those shown at their fields, and the others listed),
 * and what is still to fill in.
 * @param {HTMLElement} validation
 * @param {number} total every error the API reported
 * @param {FieldError[]} general those with no field on the form
 * @param {FieldError[]} waiting those on fields the user has not been to
 */
function showInvalid(validation, total, general, waiting) {
  const shown = total - waiting.length - general.length;
  validation.className = "validation " + (shown || general.length ? "invalid" : "pending");
  validation.dataset.valid = "false";
  const todo = [...new Set(waiting.map((e) => (e.field || "").replace(/[[.].*$/, "")))];
  replace(
    validation,
    shown || general.length ? h("strong", null, `${shown + general.length} problem(s)`) : h("strong", null, "Not complete yet."),
    shown ? " Shown next to their fields." : "",
    todo.length ? ` Still to fill in: ${todo.join(", ").replaceAll("_", " ")}.` : "",
    general.length ? h("ul", null, general.map((e) => h("li", null, e.field ? `${e.field}: ${e.message}` : e.message))) : null,
  );
}

/**
 * @param {HTMLElement} validation
 * @param {Error} e
 */
function showCheckFailed(validation, e) {
  validation.className = "validation invalid";
  validation.dataset.valid = "false";
  replace(validation, "Could not check the definition: " + e.message);
}

/**
 * The online agents the targets match now.
 * @param {HTMLElement} match
 * @param {{ id: string, host_name?: string }[]} agents
 */
function showMatch(match, agents) {
  match.className = "match" + (agents.length === 0 ? " none" : "");
  match.dataset.count = String(agents.length);
  if (agents.length === 0) {
    match.textContent = "No online agent matches now: starting it would fail.";
    return;
  }
  const names = agents.map((a) => (a.host_name ? `${a.id} (${a.host_name})` : a.id));
  replace(
    match,
    h("strong", null, `${agents.length} online agent${agents.length === 1 ? "" : "s"} match`),
    ": ",
    names.slice(0, 8).join(", "),
    names.length > 8 ? ` and ${names.length - 8} more` : "",
  );
}

/**
 * The form's targets as the API's selector.
 * @param {FormState} s
 * @returns {import("/ui/api.js").Selector}
 */
function selectorOf(s) {
  return s.targetKind === "hosts" ? { hosts: listOf(s.hosts, /[\s,]+/) } : { labels: Object.fromEntries(parseLabels(s.labels).pairs) };
}

// ---- the page ------------------------------------------------------------------

/**
 * The form, wired: each change rewrites the YAML (unless edited by hand),
 * checks it, and counts the matching agents.
 * @param {HTMLElement} root
 * @param {Template[]} templates
 * @param {URLSearchParams} params
 * @param {Ctx} ctx
 */
function build(root, templates, params, ctx) {
  const f = createForm(templates, params);
  const refused = refusal("experiments.write");
  replace(
    root,
    pageHead({
      title: "New experiment",
      sub: refused
        ? `You may write a definition here and check it; creating it ${refused}.`
        : "Compare candidate pipelines from the templates with a baseline on real agents, then let the verdict decide.",
    }),
    f.form,
  );

  // Errors show on the fields the user has been to (all of them after a
  // create attempt, or once the YAML is edited by hand): an empty form is
  // not a wall of red.
  /** @type {Progress} */
  const progress = { yamlEdited: false, showAll: false, touched: new Set(), lastValid: null };

  /** @param {Event} [e] */
  function onFormChange(e) {
    if (e && e.target === f.yaml) return;
    if (e) {
      const slot = slotOfInput(f, e.target);
      if (slot) progress.touched.add(slot);
      if (slot === "targets") progress.touched.add("f-labels");
    }
    showChoices(f);
    if (!progress.yamlEdited) f.yaml.value = definitionYaml(formState(f));
    checkLabels(f);
    validate();
    if (e && isTargetInput(f, e.target)) updateMatch();
  }

  let vseq = 0;
  const validate = debounce(async () => {
    const mine = ++vseq;
    /** @type {Validation} */
    let r;
    try {
      r = await post("/experiments/validate", { definition: f.yaml.value });
    } catch (e) {
      if (mine === vseq) showCheckFailed(f.validation, e);
      return;
    }
    if (mine !== vseq) return;
    progress.lastValid = r.valid ? r : null;
    if (r.valid) {
      clearErrors(f.slots);
      showValid(f.validation, r);
      if (progress.yamlEdited) showMatch(f.match, r.matching_agents.map((id) => ({ id })));
    } else {
      const [general, waiting] = showErrors(f, progress, r.errors || []);
      showInvalid(f.validation, r.errors.length, general, waiting);
    }
  }, 350);

  let mseq = 0;
  const updateMatch = debounce(async () => {
    if (progress.yamlEdited) {
      if (progress.lastValid) showMatch(f.match, progress.lastValid.matching_agents.map((id) => ({ id })));
      return;
    }
    const mine = ++mseq;
    const targets = selectorOf(formState(f));
    if (!(targets.hosts && targets.hosts.length) && Object.keys(targets.labels || {}).length === 0) {
      f.match.className = "match muted";
      f.match.dataset.count = "";
      f.match.textContent = "Give labels or host names to select agents.";
      return;
    }
    try {
      const agents = await matchingAgents(targets);
      if (mine === mseq) showMatch(f.match, agents);
    } catch (e) {
      if (mine === mseq) f.match.textContent = "Could not count the matching agents: " + e.message;
    }
  }, 300);

  f.form.addEventListener("input", onFormChange);
  f.form.addEventListener("change", onFormChange);
  f.yaml.addEventListener("input", () => {
    if (!progress.yamlEdited) {
      progress.yamlEdited = true;
      progress.showAll = true;
      f.yamlState.textContent = "Edited by hand: the YAML wins, the form no longer writes it.";
      f.regenerate.hidden = false;
    }
    validate();
  });
  f.regenerate.addEventListener("click", () => {
    progress.yamlEdited = false;
    f.yamlState.textContent = "Written by the form.";
    f.regenerate.hidden = true;
    f.yaml.value = definitionYaml(formState(f));
    validate();
    updateMatch();
  });
  f.form.addEventListener("submit", async (e) => {
    e.preventDefault();
    f.createButton.disabled = true;
    f.submitError.textContent = "";
    try {
      await createExperiment(f, progress, ctx);
    } finally {
      // Enabled again only if the role still allows it (a refusal may
      // have just told otherwise).
      guard(f.createButton, "experiments.write");
    }
  });

  onFormChange();
  updateMatch();
  return {
    refresh: async () => updateMatch(),
    unmount() {
      validate.cancel();
      updateMatch.cancel();
    },
  };
}

/**
 * Create the experiment, start it if asked, and open its page; a refusal
 * is shown at the fields it names.
 * @param {Form} f
 * @param {Progress} progress
 * @param {Ctx} ctx
 */
async function createExperiment(f, progress, ctx) {
  /** @type {import("/ui/api.js").Experiment} */
  let created;
  try {
    created = await post("/experiments", { definition: f.yaml.value, author: author() });
  } catch (err) {
    if (err.status === 400 && err.body && Array.isArray(err.body.errors)) {
      progress.showAll = true;
      const [general] = showErrors(f, progress, err.body.errors);
      f.submitError.textContent = err.message + (general.length ? ": " + general.map((x) => (x.field ? `${x.field}: ` : "") + x.message).join("; ") : " (see the fields above)");
      const first = f.form.querySelector("[aria-invalid='true']");
      if (first) first.scrollIntoView({ block: "center" });
    } else {
      f.submitError.textContent = err.message;
    }
    return;
  }
  if (f.startNow.checked) {
    try {
      await post(`/experiments/${enc(created.id)}/start`, { author: author() });
      ctx.flash(`Created and started “${created.name}” (${created.id}).`);
    } catch (err) {
      ctx.flash(`Created ${created.id}, but it did not start: ${err.message}`, "error");
    }
  } else {
    ctx.flash(`Created “${created.name}” as a draft (${created.id}); start it from its page.`);
  }
  ctx.navigate("#/experiments/" + enc(created.id));
}

/**
 * A template's description without its leading `name:`.
 * @param {Template} t
 */
function describe(t) {
  const d = t.description || "";
  const i = d.indexOf(": ");
  const short = i > 0 && d.slice(0, i) === t.name ? d.slice(i + 2) : d;
  return short + (t.hash ? ` (${shortHash(t.hash).slice(0, 8)})` : "");
}
