// A new experiment, in a few steps, from the templates. The form writes
// the YAML definition (shown, and editable: once edited by hand, the YAML
// wins); every change is checked by POST /api/v1/experiments/validate, the
// API's own validator, and each error is shown next to its field.

import { author, enc, get, post } from "/ui/api.js";
import { debounce, h, pageHead, replace } from "/ui/dom.js";
import { shortHash } from "/ui/format.js";
import { definitionYaml, listOf, parseLabels } from "/ui/yaml.js";
import { matchingAgents } from "/ui/views/experiment.js";

const EXAMPLE_BASE = `receivers:
  procfs: {}
exporters:
  file: { path: ./out/experiment.jsonl }
service:
  pipelines:
    metrics: { receivers: [procfs], exporters: [file] }
`;

// The field an API error names → the form's error slot.
const FIELD_SLOTS = {
  name: "f-name",
  description: "f-description",
  critical_processes: "f-critical",
  "criteria.min_series_reduction": "f-min-series",
  "criteria.min_bytes_reduction": "f-min-bytes",
  "criteria.min_critical_coverage": "f-min-coverage",
  "criteria.min_topn_fidelity": "f-min-fidelity",
  "criteria.max_cpu_overhead_percent": "f-max-cpu",
  interval: "f-interval",
  warmup: "f-warmup",
  duration: "f-duration",
};

export function mount(root, [query], ctx) {
  const params = new URLSearchParams(query || "");
  let dead = false;
  replace(
    root,
    pageHead({ title: "New experiment", sub: "Loading the templates…" }),
  );
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

function build(root, templates, params, ctx) {
  const slots = new Map(); // slot id → { input, error }

  /** A labelled field with a hint and an error slot. */
  function field(id, label, input, hint, slot = id) {
    const error = h("p", { class: "field-error", id: "err-" + slot, role: "alert" });
    const hintEl = hint ? h("span", { class: "hint", id: "hint-" + id }, hint) : null;
    input.id = id;
    input.setAttribute("aria-describedby", [hint ? "hint-" + id : null, "err-" + slot].filter(Boolean).join(" "));
    slots.set(slot, { input, error });
    return h("div", { class: "field" }, h("label", { for: id }, label), input, hintEl, error);
  }
  const text = (attrs = {}) => h("input", { type: "text", spellcheck: "false", ...attrs });
  const percent = (value) => h("input", { type: "number", min: "0", max: "100", step: "any", inputmode: "decimal", value });

  // 1. What and where.
  const name = text({ maxlength: "128", required: true, value: params.get("name") || "" });
  const description = h("textarea", { rows: "2", maxlength: "4096" });
  const byLabels = h("input", { type: "radio", name: "target-kind", id: "f-target-labels", value: "labels", checked: true });
  const byHosts = h("input", { type: "radio", name: "target-kind", id: "f-target-hosts", value: "hosts" });
  const labels = text({ placeholder: "env=staging, team=payments" });
  const hosts = text({ placeholder: "web-1, web-2" });
  const match = h("p", { class: "match", id: "match-count", role: "status", "aria-live": "polite" });
  const targetsError = h("p", { class: "field-error", id: "err-targets", role: "alert" });
  const labelsField = field("f-labels", "Labels", labels, "Online agents carrying all of these labels (key=value, comma-separated).", "f-labels");
  const hostsField = field("f-hosts", "Host names", hosts, "Online agents on these hosts (comma-separated).", "f-hosts");
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

  // 2. Variants.
  const option = (value, label) => h("option", { value }, label);
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
  const candidateRows = templates.map((t) => {
    const check = h("input", { type: "checkbox", id: "cand-" + t.name, value: t.name, checked: params.get("candidate") === t.name });
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
  });
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

  // 3. Critical processes.
  const critical = h("textarea", { rows: "3", spellcheck: "false", placeholder: "^(postgres|nginx|kubelet)$" });

  // 4. Criteria.
  const minSeries = percent("");
  const minBytes = percent("");
  const minCoverage = percent("100");
  const minFidelity = percent("");
  const maxCpu = h("input", { type: "number", min: "0", max: "100", step: "any", inputmode: "decimal" });

  // 5. Timing.
  const interval = text({ value: "10s" });
  const warmup = text({ value: "30s" });
  const duration = text({ value: "10m" });
  const autoPromote = h("input", { type: "checkbox", id: "f-auto-promote" });

  // 6. The YAML.
  const yaml = h("textarea", { id: "f-yaml", spellcheck: "false", "aria-describedby": "yaml-state validation" });
  const yamlLabel = h("label", { for: "f-yaml" }, "Definition (YAML)");
  const yamlState = h("span", { id: "yaml-state" }, "Written by the form.");
  const regenerate = h("button", { type: "button", class: "link", id: "regenerate", hidden: true }, "Rewrite it from the form");
  const validation = h("div", { class: "validation", id: "validation", role: "status", "aria-live": "polite" }, "Checking…");
  const startNow = h("input", { type: "checkbox", id: "f-start", checked: true });
  const createButton = h("button", { type: "submit", class: "primary", id: "create" }, "Create experiment");
  const submitError = h("p", { class: "field-error", id: "err-submit", role: "alert" });

  // One numbered step of the form: a card headed "n  title".
  const step = (n, title, ...children) =>
    h("section", { class: "card" }, h("h2", { class: "step-title" }, h("span", { class: "n", "aria-hidden": "true" }, String(n)), title), children);
  const row = (...children) => h("div", { class: "row" }, children);
  const form = h(
    "form",
    { class: "create-grid", id: "create-form", novalidate: true },
    h(
      "div",
      { class: "stack" },
      step(
        1,
        "Name and targets",
        field("f-name", "Name", name),
        field("f-description", "Description", description, "Optional: what you want to learn."),
        targetsSet,
      ),
      step(
        2,
        "Baseline and candidates",
        row(
          field("f-baseline", "Baseline", baselineSelect, "What the candidates are compared with."),
          field("f-base", "Receivers and exporters", baseSelect, "Where the experiment's data goes (each variant becomes a pipeline of this config)."),
        ),
        baseYamlField,
        candidatesSet,
      ),
      step(
        3,
        "Critical processes",
        field("f-critical", "Processes that must stay visible", critical, "One regex on the executable name per line. A candidate hiding one fails (and its guardrail stops the experiment)."),
      ),
      step(
        4,
        "Success criteria",
        h("p", { class: "muted small" }, "Each is judged on its confidence interval; leave a box empty for no criterion."),
        row(
          field("f-min-series", "Min series reduction (%)", minSeries),
          field("f-min-bytes", "Min bytes reduction (%)", minBytes),
          field("f-min-coverage", "Min critical coverage (%)", minCoverage),
          field("f-min-fidelity", "Min top-N fidelity (%)", minFidelity),
          field("f-max-cpu", "Max CPU overhead (% of a core)", maxCpu),
        ),
      ),
      step(
        5,
        "Timing",
        row(
          field("f-interval", "Interval", interval, "The agents' scrape interval (at least 1s)."),
          field("f-warmup", "Warm-up", warmup, "Not measured after the deploy."),
          field("f-duration", "Duration", duration, "The measured window: 30s, 10m, 1h, 7d…"),
        ),
        h("label", { class: "check", for: "f-auto-promote" }, autoPromote, "Promote the winner automatically when the verdict is a success"),
      ),
    ),
    h(
      "div",
      { class: "yaml-side" },
      step(
        6,
        "Review and create",
        h("div", { class: "yaml-state" }, yamlLabel, h("span", null, yamlState, " ", regenerate)),
        yaml,
        validation,
        h("div", { class: "submit-row" }, h("label", { class: "check", for: "f-start" }, startNow, "Start it now"), createButton),
        submitError,
      ),
    ),
  );
  replace(
    root,
    pageHead({
      title: "New experiment",
      sub: "Compare candidate pipelines from the templates with a baseline on real agents, then let the verdict decide.",
    }),
    form,
  );
  slots.set("f-yaml", { input: yaml, error: h("p") });

  // ---- the form's state → YAML ----------------------------------------------

  let yamlEdited = false;
  // Errors show on the fields the user has been to (all of them after a
  // create attempt, or once the YAML is edited by hand): an empty form is
  // not a wall of red.
  const touched = new Set();
  let showAll = false;
  const slotOfInput = (el) => {
    if (!el || !el.id) return null;
    if (el === labels || el === hosts || el === byLabels || el === byHosts) return "targets";
    if (el.id.startsWith("cand-") || el.id.startsWith("mode-")) return "candidates";
    if (el === baseYaml) return "f-base";
    return el.id;
  };
  const state = () => ({
    name: name.value,
    description: description.value,
    targetKind: byHosts.checked ? "hosts" : "labels",
    labels: labels.value,
    hosts: hosts.value,
    base: baseSelect.value.startsWith("tpl:") ? baseSelect.value.slice(4) : baseSelect.value,
    baseYaml: baseYaml.value,
    baseline: baselineSelect.value,
    candidates: candidateRows.filter((c) => c.check.checked).map((c) => ({ template: c.t.name, mode: c.mode.value })),
    critical: critical.value,
    minSeries: minSeries.value,
    minBytes: minBytes.value,
    minCoverage: minCoverage.value,
    minFidelity: minFidelity.value,
    maxCpu: maxCpu.value,
    interval: interval.value,
    warmup: warmup.value,
    duration: duration.value,
    autoPromote: autoPromote.checked,
  });

  function onFormChange(e) {
    if (e && e.target === yaml) return;
    if (e) {
      const slot = slotOfInput(e.target);
      if (slot) touched.add(slot);
      if (slot === "targets") touched.add("f-labels");
    }
    hostsField.hidden = !byHosts.checked;
    labelsField.hidden = byHosts.checked;
    baseYamlField.hidden = baseSelect.value !== "inline";
    for (const c of candidateRows) c.row.classList.toggle("checked", c.check.checked);
    if (!yamlEdited) yaml.value = definitionYaml(state());
    checkLabels();
    validate();
    if (e && (e.target === labels || e.target === hosts || e.target === byLabels || e.target === byHosts)) updateMatch();
  }
  form.addEventListener("input", onFormChange);
  form.addEventListener("change", onFormChange);
  yaml.addEventListener("input", () => {
    if (!yamlEdited) {
      yamlEdited = true;
      showAll = true;
      yamlState.textContent = "Edited by hand: the YAML wins, the form no longer writes it.";
      regenerate.hidden = false;
    }
    validate();
  });
  regenerate.addEventListener("click", () => {
    yamlEdited = false;
    yamlState.textContent = "Written by the form.";
    regenerate.hidden = true;
    yaml.value = definitionYaml(state());
    validate();
    updateMatch();
  });

  // ---- checks ----------------------------------------------------------------

  function checkLabels() {
    const slot = slots.get("f-labels");
    const { bad } = parseLabels(labels.value);
    if (!byHosts.checked && bad.length) {
      slot.error.textContent = bad.map((b) => `“${b}” is not key=value`).join("; ");
      labels.setAttribute("aria-invalid", "true");
    } else {
      slot.error.textContent = "";
      labels.removeAttribute("aria-invalid");
    }
  }

  function clearErrors() {
    for (const [key, { input, error }] of slots) {
      if (key === "f-labels") continue;
      error.textContent = "";
      input.removeAttribute("aria-invalid");
    }
  }

  /** Where an error about `f` (e.g. `candidates[0].template`) goes. */
  function slotOf(f) {
    if (FIELD_SLOTS[f]) return FIELD_SLOTS[f];
    if (f.startsWith("critical_processes")) return "f-critical";
    if (f === "targets" || f.startsWith("targets.")) return "targets";
    if (f === "base" || f.startsWith("base.")) return baseSelect.value === "inline" ? "f-base-yaml" : "f-base";
    if (f === "baseline" || f.startsWith("baseline.")) return "f-baseline";
    const m = f.match(/^candidates\[(\d+)\]/);
    if (m) {
      const chosen = candidateRows.filter((c) => c.check.checked);
      const c = !yamlEdited ? chosen[Number(m[1])] : null;
      return c ? "cand-" + c.t.name : "candidates";
    }
    if (f === "candidates") return "candidates";
    return null;
  }

  /** Shown next to their fields; what is left is returned: [general, waiting]. */
  function showErrors(errors) {
    clearErrors();
    const general = [];
    const waiting = [];
    for (const e of errors) {
      const slot = slotOf(e.field || "");
      const visible =
        showAll ||
        touched.has(slot) ||
        (slot && slot.startsWith("cand-") && touched.has("candidates")) ||
        (slot === "f-base-yaml" && touched.has("f-base"));
      if (slot && slots.has(slot) && !visible) {
        waiting.push(e);
      } else if (slot && slots.has(slot)) {
        const { input, error } = slots.get(slot);
        const prefix = slot.startsWith("cand-") || slot === "f-critical" ? `${e.field}: ` : "";
        error.textContent = (error.textContent ? error.textContent + "\n" : "") + prefix + e.message;
        input.setAttribute("aria-invalid", "true");
      } else {
        general.push(e);
      }
    }
    return [general, waiting];
  }

  let vseq = 0;
  let lastValid = null;
  const validate = debounce(async () => {
    const mine = ++vseq;
    let r;
    try {
      r = await post("/experiments/validate", { definition: yaml.value });
    } catch (e) {
      if (mine !== vseq) return;
      validation.className = "validation invalid";
      validation.dataset.valid = "false";
      replace(validation, "Could not check the definition: " + e.message);
      return;
    }
    if (mine !== vseq) return;
    lastValid = r.valid ? r : null;
    if (r.valid) {
      clearErrors();
      validation.className = "validation valid";
      validation.dataset.valid = "true";
      replace(
        validation,
        h("strong", null, "Valid. "),
        `Variants: ${r.variants.join(", ")}. ${r.matching_agents.length} online agent(s) match now.`,
        h("details", null, h("summary", null, "The agent config it deploys"), h("pre", { class: "yaml" }, r.config)),
      );
      if (yamlEdited) showMatch(r.matching_agents.map((id) => ({ id })));
    } else {
      const [general, waiting] = showErrors(r.errors || []);
      const shown = r.errors.length - waiting.length - general.length;
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
  }, 350);

  function showMatch(agents) {
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

  let mseq = 0;
  const updateMatch = debounce(async () => {
    if (yamlEdited) {
      if (lastValid) showMatch(lastValid.matching_agents.map((id) => ({ id })));
      return;
    }
    const mine = ++mseq;
    const s = state();
    const targets =
      s.targetKind === "hosts" ? { hosts: listOf(s.hosts, /[\s,]+/) } : { labels: Object.fromEntries(parseLabels(s.labels).pairs) };
    if (!(targets.hosts && targets.hosts.length) && Object.keys(targets.labels || {}).length === 0) {
      match.className = "match muted";
      match.dataset.count = "";
      match.textContent = "Give labels or host names to select agents.";
      return;
    }
    try {
      const agents = await matchingAgents(targets);
      if (mine === mseq) showMatch(agents);
    } catch (e) {
      if (mine === mseq) match.textContent = "Could not count the matching agents: " + e.message;
    }
  }, 300);

  // ---- create ------------------------------------------------------------------

  form.addEventListener("submit", async (e) => {
    e.preventDefault();
    createButton.disabled = true;
    submitError.textContent = "";
    try {
      let created;
      try {
        created = await post("/experiments", { definition: yaml.value, author: author() });
      } catch (err) {
        if (err.status === 400 && err.body && Array.isArray(err.body.errors)) {
          showAll = true;
          const [general] = showErrors(err.body.errors);
          submitError.textContent = err.message + (general.length ? ": " + general.map((x) => (x.field ? `${x.field}: ` : "") + x.message).join("; ") : " (see the fields above)");
          const first = form.querySelector("[aria-invalid='true']");
          if (first) first.scrollIntoView({ block: "center" });
        } else {
          submitError.textContent = err.message;
        }
        return;
      }
      if (startNow.checked) {
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
    } finally {
      createButton.disabled = false;
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

/** A template's description without its leading `name:`. */
function describe(t) {
  const d = t.description || "";
  const i = d.indexOf(": ");
  const short = i > 0 && d.slice(0, i) === t.name ? d.slice(i + 2) : d;
  return short + (t.hash ? ` (${shortHash(t.hash).slice(0, 8)})` : "");
}
