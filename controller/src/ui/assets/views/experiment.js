// One experiment: where it is in its lifecycle, the verdict per criterion
// with its confidence interval, the monthly cost of each variant, the KPIs
// over time per variant, the latest interval side by side, its targets and
// history, and the actions (start, promote, roll back, stop), each
// confirmed with what it will do to which agents.

import { author, enc, get, post } from "/ui/api.js";
import { confirmDialog, h, pageHead, replace, table, th } from "/ui/dom.js";
import { legend, lineChart } from "/ui/charts.js";
import {
  DASH,
  ago,
  bytes,
  clock,
  compact,
  core,
  dateTime,
  isNum,
  money,
  num,
  parseTime,
  pct,
  shortHash,
  span,
  tone,
  words,
} from "/ui/format.js";

const KPIS = [
  { key: "series_reduction", label: "Series reduction", fmt: (v) => pct(v) },
  { key: "datapoints_reduction", label: "Datapoints reduction", fmt: (v) => pct(v) },
  { key: "bytes_reduction", label: "Bytes reduction", fmt: (v) => pct(v) },
  { key: "critical_coverage", label: "Critical coverage", fmt: (v) => pct(v) },
  { key: "topn_fidelity", label: "Top-N fidelity", fmt: (v) => pct(v) },
  { key: "cpu_overhead_percent", label: "CPU overhead (% of a core)", fmt: (v) => (isNum(v) ? v.toFixed(3) + "%" : DASH) },
];

const big = new Intl.NumberFormat(undefined, { notation: "compact", maximumFractionDigits: 1 });
const REPORT_EVERY_MS = 4000;
const ACTIVE = ["pending", "deploying", "running", "analyzing"];
const HAS_DEPLOYED = ["deploying", "running", "analyzing", "succeeded", "failed"];

export function mount(root, [rawId], ctx) {
  const id = decodeURIComponent(rawId);
  const path = "/experiments/" + enc(id);
  let data = null; // { exp, results, report, agents }
  let dead = false;

  const name = h("span", { id: "exp-name" }, id);
  const stateBadge = h("span", { class: "badge big", id: "exp-state" }, "…");
  const sub = h("p", { class: "sub", id: "exp-sub" });
  const reason = h("p", { class: "reason", id: "exp-reason" });
  const buttons = {
    start: h("button", { type: "button", class: "primary", id: "action-start", hidden: true }, "Start…"),
    promote: h("button", { type: "button", class: "primary", id: "action-promote", hidden: true }, "Promote…"),
    rollback: h("button", { type: "button", class: "danger", id: "action-rollback", hidden: true }, "Roll back…"),
    stop: h("button", { type: "button", class: "danger", id: "action-stop", hidden: true }, "Stop…"),
  };
  buttons.start.addEventListener("click", () => act(startDialog));
  buttons.promote.addEventListener("click", () => act(promoteDialog));
  buttons.rollback.addEventListener("click", () => act(rollbackDialog));
  buttons.stop.addEventListener("click", () => act(stopDialog));

  const progress = h("section", { class: "card", id: "exp-progress", "aria-label": "Progress" });
  const verdict = h("section", { class: "card", id: "verdict", "aria-labelledby": "verdict-h" });
  const cost = h("section", { class: "card", id: "cost", "aria-labelledby": "cost-h" });
  const chartsBody = h("div", { class: "charts", id: "charts" });
  const chartsLegend = h("div");
  const charts = h(
    "section",
    { class: "card", id: "charts-card", "aria-labelledby": "charts-h" },
    h("h2", { id: "charts-h" }, "Over time", h("span", { class: "muted small" }, "per interval, summed over the target agents")),
    chartsLegend,
    chartsBody,
  );
  const latest = h("section", { class: "card", id: "latest", "aria-labelledby": "latest-h" });
  const targets = h("section", { class: "card", id: "targets", "aria-labelledby": "targets-h" });
  const history = h("section", { class: "card", id: "history", "aria-labelledby": "history-h" });
  const config = h("section", { class: "card", id: "config", "aria-labelledby": "config-h" });
  const loadError = h("p", { class: "error-text", id: "exp-error", role: "alert" });

  replace(
    root,
    pageHead({
      crumbs: [h("a", { href: "#/experiments" }, "Experiments"), " / ", h("span", { class: "mono" }, id)],
      title: [name, stateBadge],
      sub,
      actions: [buttons.start, buttons.promote, buttons.rollback, buttons.stop],
    }),
    loadError,
    progress,
    h("div", { class: "detail-grid" }, h("div", { class: "stack" }, verdict, cost), charts),
    h("div", { class: "stack", id: "below" }, latest, targets),
    h("div", { class: "two-col" }, history, config),
  );
  replace(verdict, h("h2", { id: "verdict-h" }, "Verdict"), h("p", { class: "muted" }, "Loading…"));

  const ticker = setInterval(() => {
    if (data) renderProgress();
  }, 1000);

  // While it runs, the report is an interim verdict computed on each
  // request (a bootstrap): asked for at most every few seconds, and at
  // once when the state changes.
  let reportAt = 0;
  async function load() {
    let exp, results, report, agents;
    try {
      [exp, results, agents] = await Promise.all([get(path), get(path + "/results"), get("/agents").then((r) => r.agents)]);
      const stale = !data || data.exp.state !== exp.state || (!data.report.final && Date.now() - reportAt > REPORT_EVERY_MS);
      if (stale) {
        report = await get(path + "/report");
        reportAt = Date.now();
      } else {
        report = data.report;
      }
    } catch (e) {
      if (dead) return;
      loadError.textContent = e.status === 404 ? `No experiment ${id} on this controller.` : "Could not refresh: " + e.message;
      return;
    }
    if (dead) return;
    loadError.textContent = "";
    data = { exp, results, report, agents: new Map(agents.map((a) => [a.id, a])) };
    render();
  }

  function render() {
    const { exp } = data;
    name.textContent = exp.name;
    stateBadge.textContent = words(exp.state);
    stateBadge.className = `badge big ${tone(exp.state)}`;
    stateBadge.dataset.state = exp.state;
    replace(
      sub,
      exp.description ? [exp.description, " · "] : null,
      "by ",
      exp.author,
      ", created ",
      h("span", { title: dateTime(exp.created_at) }, ago(exp.created_at)),
    );
    buttons.start.hidden = exp.state !== "draft";
    buttons.promote.hidden = exp.state !== "succeeded";
    buttons.rollback.hidden = !["succeeded", "failed", "promoted"].includes(exp.state);
    buttons.stop.hidden = !["draft", "pending", "deploying", "running"].includes(exp.state);
    renderProgress();
    renderVerdict();
    renderCost();
    renderCharts();
    renderLatest();
    renderTargets();
    renderHistory();
    if (!config.dataset.done) renderConfig();
  }

  // ---- lifecycle ----------------------------------------------------------

  function renderProgress() {
    const { exp } = data;
    const passed = (exp.transitions || []).map((t) => t.to);
    const ahead = {
      draft: ["pending", "deploying", "running", "analyzing", "verdict"],
      pending: ["deploying", "running", "analyzing", "verdict"],
      deploying: ["running", "analyzing", "verdict"],
      running: ["analyzing", "verdict"],
      analyzing: ["verdict"],
      succeeded: ["promoted or rolled back"],
    }[exp.state] || [];
    const steps = h(
      "ol",
      { class: "steps", "aria-label": "Lifecycle" },
      passed.map((s, i) => {
        const last = i === passed.length - 1;
        const cls = last ? (tone(s) === "bad" ? "failed" : "current") : "done";
        return h("li", { class: cls, "aria-current": last ? "step" : null }, words(s));
      }),
      ahead.map((s) => h("li", null, words(s))),
    );
    const now = Date.now();
    const running = parseTime(exp.running_at);
    const from = parseTime(exp.measure_from);
    const ends = parseTime(exp.ends_at);
    let bar = null;
    let line = null;
    if (exp.state === "draft") {
      line = "Not started. Start deploys it to the target agents.";
    } else if (exp.state === "pending") {
      line = exp.start_at ? `Deploys at ${dateTime(exp.start_at)} (${ago(exp.start_at)}).` : "Deploying now.";
    } else if (exp.state === "deploying") {
      const t = exp.targets || [];
      const applied = t.filter((x) => x.runs_experiment).length;
      line = `Deploying: ${applied} of ${t.length} target(s) run the experiment config.`;
      bar = h("progress", { max: String(Math.max(t.length, 1)), value: String(applied) });
    } else if (from && ends) {
      if (now < from) {
        line = `Warm-up: measuring starts in ${span(from - now)} (at ${clock(from)}).`;
        bar = h("progress", { max: String(from - (running || from - 1)), value: String(Math.max(0, now - (running || now))) });
      } else if (now < ends && exp.state === "running") {
        line = `Measuring: ${span(now - from)} of ${span(ends - from)}; the verdict at ${clock(ends)}.`;
        bar = h("progress", { max: String(ends - from), value: String(now - from) });
      } else {
        line = `Window ${clock(from)} – ${clock(ends)} (${span(ends - from)})${exp.finished_at ? `; finished ${ago(exp.finished_at)}` : ""}.`;
      }
    }
    // The reason of the current state, unless the verdict below says it.
    const why = exp.reason && exp.reason !== (data.report && data.report.recommendation) ? exp.reason : "";
    reason.textContent = why;
    replace(
      progress,
      steps,
      bar,
      line ? h("div", { class: "progress-line" }, h("span", { id: "exp-progress-text" }, line)) : null,
      why ? reason : null,
    );
  }

  // ---- verdict -----------------------------------------------------------------

  function renderVerdict() {
    const { report, exp } = data;
    const conf = Math.round((report.confidence || 0.95) * 100);
    const measured = (report.candidates || []).some((c) => c.paired_intervals > 0);
    verdict.dataset.final = String(!!report.final);
    verdict.dataset.verdict = measured ? report.verdict : "";
    const head = h(
      "h2",
      { id: "verdict-h" },
      "Verdict",
      h(
        "span",
        { class: `badge ${report.final ? "ok" : "info"}`, title: report.final ? "Stored when the window ended" : "Computed on the data so far" },
        report.final ? "final" : "interim",
      ),
    );
    if (!measured) {
      replace(
        verdict,
        head,
        h(
          "p",
          { class: "muted" },
          ACTIVE.includes(exp.state) || exp.state === "draft"
            ? "No measurements yet: the verdict appears with the first intervals after the warm-up."
            : "Nothing was measured.",
        ),
      );
      return;
    }
    const winner = report.winner
      ? [" winner ", h("strong", { id: "verdict-winner" }, report.winner)]
      : report.verdict === "failed"
        ? [" no candidate passed"]
        : null;
    replace(
      verdict,
      head,
      h(
        "div",
        { class: "verdict-line" },
        h("span", { class: `badge big ${tone(report.verdict)}`, id: "verdict-word" }, report.final ? report.verdict : `${report.verdict} so far`),
        winner,
      ),
      h("p", { class: "recommendation", id: "recommendation" }, report.recommendation),
      h("div", { class: "candidates" }, (report.candidates || []).map((c) => {
        const byKpi = new Map((c.criteria || []).map((r) => [r.kpi, r]));
        const rows = KPIS.map((k) => {
          const est = c.kpis ? c.kpis[k.key] : null;
          const crit = byKpi.get(k.key);
          return h(
            "tr",
            { "data-kpi": k.key },
            h("td", null, k.label),
            h(
              "td",
              { class: "num" },
              h("strong", null, est ? k.fmt(est.value) : DASH),
              est ? h("span", { class: "sub ci", title: `${conf}% confidence interval` }, `[${k.fmt(est.low)}, ${k.fmt(est.high)}]`) : null,
            ),
            h("td", { class: "num" }, crit ? `${crit.op === ">=" ? "≥" : "≤"} ${k.fmt(crit.threshold)}` : h("span", { class: "muted" }, "reported")),
            h("td", null, crit ? h("span", { class: `badge ${tone(crit.outcome)}` }, words(crit.outcome)) : null),
          );
        });
        return h(
          "div",
          { class: "candidate", "data-candidate": c.name },
          h(
            "h3",
            null,
            c.name,
            h("span", { class: `badge ${tone(c.outcome)}` }, words(c.outcome)),
            h("span", { class: "muted small" }, `${num(c.paired_intervals)} paired intervals on ${c.agents} agent(s)`),
          ),
          table({ class: "criteria" }, [th("KPI"), th(`Value [${conf}% interval]`, "num"), th("Criterion", "num"), th("Outcome")], rows),
        );
      })),
    );
  }

  function renderCost() {
    const { report, exp } = data;
    const pricing = (exp.spec && exp.spec.pricing) || {};
    const variants = report.variants || [];
    const base = variants.find((v) => v.name === (data.results.baseline || "baseline"));
    const rows = variants.map((v) => {
      const saving = base && base.monthly_cost > 0 && v !== base ? 1 - v.monthly_cost / base.monthly_cost : null;
      return h(
        "tr",
        { "data-variant": v.name },
        h("td", null, v.name),
        h("td", { class: "num" }, isNum(v.monthly_datapoints) ? big.format(v.monthly_datapoints) : DASH),
        h("td", { class: "num" }, isNum(v.monthly_gb) ? v.monthly_gb.toFixed(v.monthly_gb < 10 ? 2 : 1) : DASH),
        h("td", { class: "num" }, h("strong", null, money(v.monthly_cost, report.currency))),
        h("td", { class: "num" }, saving === null ? (v === base ? "baseline" : DASH) : (saving >= 0 ? "−" : "+") + pct(Math.abs(saving), 0)),
      );
    });
    replace(
      cost,
      h("h2", { id: "cost-h" }, "Estimated monthly cost"),
      h(
        "p",
        { class: "muted small" },
        `${report.target_agents} target agent(s) for 30 days at the experiment's interval, at ${money(pricing.per_million_datapoints, report.currency)} per million datapoints and ${money(pricing.per_gb, report.currency)} per GB.`,
      ),
      variants.some((v) => v.intervals > 0)
        ? table({ id: "cost-table" }, [th("Variant"), th("Datapoints", "num"), th("GB", "num"), th("Cost", "num"), th("vs baseline", "num")], rows)
        : h("p", { class: "muted" }, "No measurements yet."),
    );
  }

  // ---- charts and the latest interval ------------------------------------------------

  function variantList() {
    const { exp, results } = data;
    const names = (exp.variants || []).map((v) => v.name);
    for (const n of Object.keys(results.variants || {})) if (!names.includes(n)) names.push(n);
    const baseline = results.baseline || "baseline";
    return names.map((n, i) => ({
      name: n,
      cls: "s" + (i % 9),
      baseline: n === baseline,
      info: (exp.variants || []).find((v) => v.name === n) || {},
      points: ((results.variants || {})[n] || []).map((p) => ({ ...p, t: parseTime(p.time) })),
    }));
  }

  function renderCharts() {
    const vs = variantList();
    const series = (key) => vs.map((v) => ({ ...v, points: v.points.map((p) => ({ t: p.t, v: p[key] })) }));
    const pctAxis = (v) => (v * 100).toFixed(0) + "%";
    replace(chartsLegend, legend(vs));
    replace(
      chartsBody,
      lineChart({ id: "chart-series", title: "Series", series: series("series"), format: compact }),
      lineChart({ id: "chart-datapoints", title: "Datapoints", series: series("datapoints"), format: compact }),
      lineChart({ id: "chart-bytes", title: "Bytes (raw OTLP)", series: series("bytes"), format: bytes }),
      lineChart({ id: "chart-coverage", title: "Critical coverage", series: series("critical_coverage"), format: pctAxis, min: 0, max: 1 }),
      lineChart({
        id: "chart-fidelity",
        title: "Top-N fidelity",
        series: series("topn_fidelity").filter((x) => !x.baseline),
        format: pctAxis,
        min: 0,
        max: 1,
      }),
      lineChart({
        id: "chart-cpu",
        title: "Agent overhead (CPU, % of a core)",
        series: series("cpu_overhead_percent"),
        format: (v) => (v < 1 ? v.toFixed(2) : v.toFixed(1)) + "%",
      }),
    );
  }

  function renderLatest() {
    const vs = variantList();
    const base = vs.find((v) => v.baseline);
    const times = (base && base.points.length ? base.points : vs.flatMap((v) => v.points)).map((p) => p.t);
    const head = h("h2", { id: "latest-h" }, "Latest interval, side by side");
    if (times.length === 0) {
      replace(latest, head, h("p", { class: "muted" }, "No interval measured yet."));
      return;
    }
    const at = Math.max(...times);
    const pick = (v) => v.points.find((p) => p.t === at) || v.points[v.points.length - 1];
    const b = base ? pick(base) : null;
    const delta = (v, key) => {
      if (!b || !v || !isNum(v[key]) || !isNum(b[key]) || b[key] === 0) return null;
      const d = v[key] / b[key] - 1;
      return h("span", { class: "sub" }, (d <= 0 ? "−" : "+") + pct(Math.abs(d), 0));
    };
    const rows = vs.map((v) => {
      const p = pick(v);
      const isBase = v === base;
      return h(
        "tr",
        { "data-variant": v.name },
        h(
          "td",
          null,
          h("span", { class: `swatch ${v.cls}${v.baseline ? " baseline" : ""}`, "aria-hidden": "true" }),
          " ",
          h("strong", null, v.name),
          h("span", { class: "sub" }, isBase ? "baseline" : v.info.mode || ""),
        ),
        h("td", { class: "num" }, p ? num(p.series) : DASH, isBase ? null : delta(p, "series")),
        h("td", { class: "num" }, p ? num(p.datapoints) : DASH, isBase ? null : delta(p, "datapoints")),
        h("td", { class: "num" }, p ? bytes(p.bytes) : DASH, isBase ? null : delta(p, "bytes")),
        h("td", { class: "num" }, p ? bytes(p.bytes_gzip) : DASH, isBase ? null : delta(p, "bytes_gzip")),
        h("td", { class: "num" }, p ? pct(p.critical_coverage) : DASH),
        h("td", { class: "num" }, p && !isBase ? pct(p.topn_fidelity) : DASH),
        h("td", { class: "num" }, p ? core(p.cpu_overhead_percent) : DASH),
        h("td", { class: "num" }, p ? String(p.agents) : DASH),
      );
    });
    replace(
      latest,
      head,
      h("p", { class: "muted small" }, `The interval at ${clock(at)}, summed over the agents that reported it; under each candidate figure, its difference from the baseline.`),
      table({ id: "latest-table" }, [
        th("Variant"),
        th("Series", "num"),
        th("Datapoints", "num"),
        th("Bytes", "num"),
        th("Gzipped", "num"),
        th("Critical coverage", "num"),
        th("Top-N fidelity", "num"),
        th("CPU per agent", "num"),
        th("Agents", "num"),
      ], rows),
    );
  }

  // ---- targets, history, config ---------------------------------------------------

  const host = (agentId) => {
    const a = data.agents.get(agentId);
    return a ? a.host_name : "";
  };

  function renderTargets() {
    const t = data.exp.targets || [];
    const head = h("h2", { id: "targets-h" }, "Target agents", h("span", { class: "muted small" }, String(t.length)));
    if (t.length === 0) {
      const sel = data.exp.spec && data.exp.spec.targets ? selectorText(data.exp.spec.targets) : "";
      replace(targets, head, h("p", { class: "muted" }, `Resolved when it deploys: the online agents with ${sel}.`));
      return;
    }
    replace(
      targets,
      head,
      table({ id: "targets-table" }, [th("Agent"), th("Status"), th("Running config"), th("Before the experiment")], t.map((x) =>
        h(
          "tr",
          { "data-agent": x.agent_id },
          h("td", null, h("span", { class: "mono" }, x.agent_id), h("span", { class: "sub" }, host(x.agent_id))),
          h("td", null, h("span", { class: `badge ${tone(x.status)}` }, x.status)),
          h(
            "td",
            null,
            h("span", { class: "mono", title: x.effective_hash }, shortHash(x.effective_hash)),
            h("span", { class: "sub" }, x.runs_experiment ? "the experiment config" : words(x.config_state)),
            x.config_error ? h("div", { class: "error-text small" }, x.config_error) : null,
          ),
          h("td", null, h("span", { class: "mono", title: x.previous_hash }, shortHash(x.previous_hash)), h("span", { class: "sub" }, previousText(x))),
        ),
      )),
    );
  }

  function renderHistory() {
    const list = [...(data.exp.transitions || [])].reverse();
    replace(
      history,
      h("h2", { id: "history-h" }, "History"),
      h(
        "ol",
        { class: "timeline", reversed: true },
        list.map((t) =>
          h(
            "li",
            null,
            h("span", { class: "when", title: dateTime(t.at) }, clock(t.at)),
            h(
              "span",
              { class: "what" },
              t.from ? [words(t.from), " → "] : null,
              h("strong", null, words(t.to)),
              h("span", { class: "muted" }, ` by ${t.actor}`),
              t.reason ? h("div", { class: "small muted" }, t.reason) : null,
            ),
          ),
        ),
      ),
    );
  }

  function renderConfig() {
    const { exp } = data;
    config.dataset.done = "1";
    replace(
      config,
      h("h2", { id: "config-h" }, "Configuration"),
      h(
        "details",
        null,
        h("summary", null, "The composed agent config (hash ", h("span", { class: "mono" }, shortHash(exp.config_hash)), "): every variant on one scrape"),
        h("pre", { class: "yaml" }, exp.config),
      ),
      h("details", null, h("summary", null, "The definition, as stored"), h("pre", { class: "code" }, JSON.stringify(exp.spec, null, 2))),
    );
  }

  // ---- actions -------------------------------------------------------------

  async function act(dialog) {
    if (!data) return;
    const done = await dialog();
    if (done) load();
  }

  const agentLine = (agentId, ...rest) => h("li", null, h("span", { class: "mono" }, agentId), host(agentId) ? ` (${host(agentId)})` : "", ...rest);

  function refusal(e) {
    return new Error(e.status ? `Refused (${e.status}): ${e.message}` : e.message);
  }

  function promoteDialog() {
    const { exp, report } = data;
    const t = exp.targets || [];
    const candidates = (report.candidates || []).map((c) => c.name);
    const baseline = data.results.baseline || "baseline";
    const chosen = report.winner || candidates[0] || baseline;
    const select = h(
      "select",
      { id: "promote-variant", value: chosen },
      (report.candidates || []).map((c) =>
        h("option", { value: c.name }, `${c.name} (${words(c.outcome)}${c.name === report.winner ? ", the winner" : ""})`),
      ),
      h("option", { value: baseline }, `${baseline} (the baseline)`),
    );
    const what = h("p", { id: "promote-what" });
    const describe = () =>
      replace(
        what,
        "Pushes a new config to the ",
        h("strong", null, `${t.length} target agent(s)`),
        " below: the ",
        h("strong", null, `“${select.value}”`),
        " pipeline alone, sent to the experiment's exporters, without the other variants and without the experiment block.",
      );
    select.addEventListener("change", describe);
    describe();
    return confirmDialog({
      title: `Promote a variant of “${exp.name}”`,
      confirmLabel: `Promote to ${t.length} agent(s)`,
      build(body) {
        body.append(
          h("div", { class: "field" }, h("label", { for: "promote-variant" }, "Variant"), select),
          what,
          h(
            "ul",
            { class: "agents" },
            t.map((x) =>
              agentLine(x.agent_id, h("span", { class: "muted" }, ` now runs ${shortHash(x.effective_hash)}${x.runs_experiment ? " (the experiment config)" : ""}, then the promoted config`)),
            ),
          ),
          h("p", { class: "muted small" }, "The experiment becomes promoted. Rolling it back later gives each agent what it ran before the experiment."),
        );
      },
      async onConfirm() {
        let r;
        try {
          r = await post(path + "/promote", { variant: select.value, author: author() });
        } catch (e) {
          throw refusal(e);
        }
        ctx.flash(capital(r.reason || `promoted “${select.value}”`) + ".");
      },
    });
  }

  function restoreList(t) {
    return h(
      "ul",
      { class: "agents" },
      t.map((x) => agentLine(x.agent_id, h("span", { class: "muted" }, " → ", previousText(x)))),
    );
  }

  function rollbackDialog() {
    const { exp } = data;
    const t = exp.targets || [];
    const reasonInput = h("input", { id: "rollback-reason", type: "text", placeholder: `rolled back by ${author()}`, maxlength: "1024" });
    return confirmDialog({
      title: `Roll back “${exp.name}”`,
      confirmLabel: `Roll back ${t.length} agent(s)`,
      danger: true,
      build(body) {
        body.append(
          h("p", null, "Each target agent gets back the config it ran before the experiment:"),
          restoreList(t),
          h("div", { class: "field" }, h("label", { for: "rollback-reason" }, "Reason ", h("span", { class: "hint" }, "(optional, kept in the history)")), reasonInput),
          h("p", { class: "muted small" }, `The experiment becomes rolled back${exp.state === "promoted" ? ", undoing the promotion" : ""}; this cannot be undone.`),
        );
      },
      async onConfirm() {
        let r;
        try {
          r = await post(path + "/rollback", { reason: reasonInput.value.trim() || undefined, author: author() });
        } catch (e) {
          throw refusal(e);
        }
        ctx.flash(capital(r.reason || "rolled back") + ".");
      },
    });
  }

  function stopDialog() {
    const { exp } = data;
    const t = exp.targets || [];
    const deployed = HAS_DEPLOYED.includes(exp.state) && t.length > 0;
    return confirmDialog({
      title: `Stop “${exp.name}”`,
      confirmLabel: "Stop the experiment",
      danger: true,
      build(body) {
        if (deployed) {
          body.append(h("p", null, "The experiment is cancelled, and each target agent gets back the config it ran before:"), restoreList(t));
        } else {
          body.append(h("p", null, `It is ${words(exp.state)}: nothing has been deployed, so no agent is touched. The experiment is cancelled.`));
        }
      },
      async onConfirm() {
        let r;
        try {
          r = await post(path + "/stop", { author: author() });
        } catch (e) {
          throw refusal(e);
        }
        ctx.flash(capital(r.reason || "stopped") + ".");
      },
    });
  }

  async function startDialog() {
    const { exp } = data;
    const sel = (exp.spec && exp.spec.targets) || {};
    let matching = [];
    try {
      matching = await matchingAgents(sel);
    } catch {
      matching = [];
    }
    return confirmDialog({
      title: `Start “${exp.name}”`,
      confirmLabel: "Start",
      build(body) {
        body.append(
          h(
            "p",
            null,
            `Deploys the experiment config (hash ${shortHash(exp.config_hash)}) ${exp.start_at ? `at ${dateTime(exp.start_at)}` : "now"} to the online agents with ${selectorText(sel)}: `,
            h("strong", null, `${matching.length} right now`),
            ".",
          ),
          matching.length
            ? h("ul", { class: "agents" }, matching.map((a) => agentLine(a.id, h("span", { class: "muted" }, ` now runs ${shortHash(a.config && a.config.effective_hash)}`))))
            : h("p", { class: "error-text" }, "No online agent matches now: the deploy would fail."),
          h("p", { class: "muted small" }, "Each agent keeps the config it runs now on record; a stop or rollback gives it back."),
        );
      },
      async onConfirm() {
        try {
          await post(path + "/start", { author: author() });
        } catch (e) {
          throw refusal(e);
        }
        ctx.flash("Started.");
      },
    });
  }

  load();
  return {
    refresh: load,
    unmount() {
      dead = true;
      clearInterval(ticker);
    },
  };
}

const capital = (s) => s.charAt(0).toUpperCase() + s.slice(1);

/** What a rollback gives a target back. */
function previousText(x) {
  switch (x.previous_source) {
    case "controller":
      return `its previous config ${shortHash(x.previous_hash)}, pushed again by the controller`;
    case "local":
      return `its own --config file (hash ${shortHash(x.previous_hash)}), re-read by the agent`;
    case "none":
      return "it reported no config before: left as it is";
    default:
      return x.previous_hash ? `its previous config ${shortHash(x.previous_hash)}` : "unknown";
  }
}

export function selectorText(targets) {
  if (targets.hosts && targets.hosts.length) return "host names " + targets.hosts.join(", ");
  const labels = Object.entries(targets.labels || {}).map(([k, v]) => `${k}=${v}`);
  return labels.length ? "labels " + labels.join(", ") : "no selector";
}

/** The online agents a selector matches now (as the API resolves it). */
export async function matchingAgents(targets) {
  if (targets.hosts && targets.hosts.length) {
    const all = (await get("/agents?status=online")).agents;
    return all.filter((a) => targets.hosts.includes(a.host_name));
  }
  const labels = Object.entries(targets.labels || {}).map(([k, v]) => `${k}=${v}`);
  if (labels.length === 0) return [];
  return (await get("/agents?status=online&label=" + enc(labels.join(",")))).agents;
}
