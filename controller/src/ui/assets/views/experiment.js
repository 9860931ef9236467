// @ts-check
// One experiment: where it is in its lifecycle, the verdict per criterion
// with its confidence interval, the monthly cost of each variant, the KPIs
// over time per variant, the latest interval side by side, its targets and
// history, and the actions (start, promote, roll back, stop), each
// confirmed with what it will do to which agents.

import { author, enc, get, post } from "/ui/api.js";
import { guard } from "/ui/access.js";
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

/** @typedef {import("/ui/api.js").Agent} Agent */
/** @typedef {import("/ui/api.js").Experiment} Experiment */
/** @typedef {import("/ui/api.js").Report} Report */
/** @typedef {import("/ui/api.js").Results} Results */
/** @typedef {import("/ui/api.js").ResultPoint} ResultPoint */
/** @typedef {import("/ui/api.js").Target} Target */
/** @typedef {import("/ui/api.js").Transition} Transition */
/** @typedef {import("/ui/api.js").Selector} Selector */
/** @typedef {import("/ui/api.js").CandidateReport} CandidateReport */
/** @typedef {import("/ui/api.js").VariantCost} VariantCost */
/** @typedef {import("/ui/app.js").Ctx} Ctx */
/** @typedef {import("/ui/dom.js").Child} Child */

/**
 * What the page shows, fetched together.
 * @typedef {{ exp: Experiment, results: Results, report: Report, agents: Map<string, Agent> }} Data
 */

/**
 * The page's state, shared by its renderers and its action dialogs.
 * @typedef {object} Page
 * @property {string} path the experiment's API path
 * @property {Data | null} data null until the first load
 * @property {Ctx} ctx
 * @property {() => void} reload
 */

/**
 * A variant with its points, as the charts and the latest interval read it.
 * @typedef {object} VariantLine
 * @property {string} name
 * @property {string} cls its colour class (s0…s8)
 * @property {boolean} baseline
 * @property {{ mode?: string }} info
 * @property {(ResultPoint & { t: number | null })[]} points
 */

/** @typedef {{ key: string, label: string, fmt: (v: unknown) => string }} Kpi */

/** @type {Kpi[]} */
const KPIS = [
  { key: "series_reduction", label: "Series reduction", fmt: (v) => pct(v) },
  { key: "datapoints_reduction", label: "Datapoints reduction", fmt: (v) => pct(v) },
  { key: "bytes_reduction", label: "Bytes reduction", fmt: (v) => pct(v) },
  { key: "critical_coverage", label: "Critical coverage", fmt: (v) => pct(v) },
  { key: "topn_fidelity", label: "Top-N fidelity", fmt: (v) => pct(v) },
  { key: "cpu_overhead_percent", label: "CPU overhead (% of a core)", fmt: (v) => (isNum(v) ? v.toFixed(3) + "%" : DASH) },
  // What dropping processes loses; a rollup keeps its members' share.
  { key: "cpu_conservation", label: "CPU conservation", fmt: (v) => pct(v) },
  { key: "memory_conservation", label: "Memory conservation", fmt: (v) => pct(v) },
];

/**
 * The action buttons, in the order they are shown, with the dialog that
 * confirms each.
 * @type {{ action: import("/ui/api.js").Action, label: string, cls: string, dialog: (page: Page) => Promise<boolean> }[]}
 */
const ACTIONS = [
  { action: "start", label: "Start…", cls: "primary", dialog: startDialog },
  { action: "promote", label: "Promote…", cls: "primary", dialog: promoteDialog },
  { action: "rollback", label: "Roll back…", cls: "danger", dialog: rollbackDialog },
  { action: "stop", label: "Stop…", cls: "danger", dialog: stopDialog },
];

const big = new Intl.NumberFormat(undefined, { notation: "compact", maximumFractionDigits: 1 });
const REPORT_EVERY_MS = 4000;
const ACTIVE = ["pending", "deploying", "running", "analyzing", "promoting"];
const HAS_DEPLOYED = ["deploying", "running", "analyzing", "succeeded", "failed", "promoting"];
// The states still ahead of each state, for the lifecycle steps.
/** @type {Record<string, string[]>} */
const AHEAD = {
  draft: ["pending", "deploying", "running", "analyzing", "verdict"],
  pending: ["deploying", "running", "analyzing", "verdict"],
  deploying: ["running", "analyzing", "verdict"],
  running: ["analyzing", "verdict"],
  analyzing: ["verdict"],
  succeeded: ["promoted or rolled back"],
  promoting: ["promoted"],
};

/**
 * @param {HTMLElement} root
 * @param {string[]} params the experiment's id, URL-encoded
 * @param {Ctx} ctx
 */
export function mount(root, [rawId], ctx) {
  const id = decodeURIComponent(rawId);
  /** @type {Page} */
  const page = { path: "/experiments/" + enc(id), data: null, ctx, reload: () => load() };
  const els = layout(root, id, page);
  let dead = false;

  const ticker = setInterval(() => {
    if (page.data) renderProgress(els, page.data);
  }, 1000);

  // While it runs, the report is an interim verdict computed on each
  // request (a bootstrap): asked for at most every few seconds, and at
  // once when the state changes.
  let reportAt = 0;
  async function load() {
    let data;
    try {
      const fetched = await fetchData(page.path, page.data, reportAt);
      data = fetched.data;
      if (fetched.reportFetched) reportAt = Date.now();
    } catch (e) {
      if (dead) return;
      els.loadError.textContent = e.status === 404 ? `No experiment ${id} on this controller.` : "Could not refresh: " + e.message;
      return;
    }
    if (dead) return;
    els.loadError.textContent = "";
    page.data = data;
    render(els, data);
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

/**
 * The experiment, its results and the agents; the report only when the
 * state changed or an interim one is older than REPORT_EVERY_MS.
 * @param {string} path
 * @param {Data | null} previous
 * @param {number} reportAt when the previous report was fetched
 * @returns {Promise<{ data: Data, reportFetched: boolean }>}
 */
async function fetchData(path, previous, reportAt) {
  const [exp, results, agents] = await Promise.all([get(path), get(path + "/results"), get("/agents").then((r) => r.agents)]);
  const stale = !previous || previous.exp.state !== exp.state || (!previous.report.final && Date.now() - reportAt > REPORT_EVERY_MS);
  const report = stale ? await get(path + "/report") : previous.report;
  /** @type {Agent[]} */
  const list = agents;
  return { data: { exp, results, report, agents: new Map(list.map((a) => [a.id, a])) }, reportFetched: stale };
}

/**
 * The page's frame, with the elements the renderers fill.
 * @param {HTMLElement} root
 * @param {string} id
 * @param {Page} page
 */
function layout(root, id, page) {
  const els = {
    name: h("span", { id: "exp-name" }, id),
    stateBadge: h("span", { class: "badge big", id: "exp-state" }, "…"),
    sub: h("p", { class: "sub", id: "exp-sub" }),
    reason: h("p", { class: "reason", id: "exp-reason" }),
    buttons: actionButtons(page),
    progress: h("section", { class: "card", id: "exp-progress", "aria-label": "Progress" }),
    verdict: h("section", { class: "card", id: "verdict", "aria-labelledby": "verdict-h" }),
    cost: h("section", { class: "card", id: "cost", "aria-labelledby": "cost-h" }),
    chartsBody: h("div", { class: "charts", id: "charts" }),
    chartsLegend: h("div"),
    latest: h("section", { class: "card", id: "latest", "aria-labelledby": "latest-h" }),
    targets: h("section", { class: "card", id: "targets", "aria-labelledby": "targets-h" }),
    history: h("section", { class: "card", id: "history", "aria-labelledby": "history-h" }),
    config: h("section", { class: "card", id: "config", "aria-labelledby": "config-h" }),
    loadError: h("p", { class: "error-text", id: "exp-error", role: "alert" }),
  };
  const charts = h(
    "section",
    { class: "card", id: "charts-card", "aria-labelledby": "charts-h" },
    h("h2", { id: "charts-h" }, "Over time", h("span", { class: "muted small" }, "per interval, summed over the target agents")),
    els.chartsLegend,
    els.chartsBody,
  );
  replace(
    root,
    pageHead({
      crumbs: [h("a", { href: "#/experiments" }, "Experiments"), " / ", h("span", { class: "mono" }, id)],
      title: [els.name, els.stateBadge],
      sub: els.sub,
      actions: [...els.buttons.values()],
    }),
    els.loadError,
    els.progress,
    h("div", { class: "detail-grid" }, h("div", { class: "stack" }, els.verdict, els.cost), charts),
    h("div", { class: "stack", id: "below" }, els.latest, els.targets),
    h("div", { class: "two-col" }, els.history, els.config),
  );
  replace(els.verdict, h("h2", { id: "verdict-h" }, "Verdict"), h("p", { class: "muted" }, "Loading…"));
  return els;
}

/** @typedef {ReturnType<typeof layout>} Elements */

/**
 * One hidden button per action, each opening its dialog; shown by the
 * experiment's state, enabled by the role.
 * @param {Page} page
 */
function actionButtons(page) {
  return new Map(
    ACTIONS.map(({ action, label, cls, dialog }) => {
      const button = guard(h("button", { type: "button", class: cls, id: "action-" + action, hidden: true }, label), "experiments.write");
      button.addEventListener("click", () => act(page, dialog));
      return [action, button];
    }),
  );
}

/**
 * @param {Elements} els
 * @param {Data} data
 */
function render(els, data) {
  const { exp } = data;
  renderTitle(els, exp);
  showActions(els.buttons, exp);
  renderProgress(els, data);
  renderVerdict(els.verdict, data);
  renderCost(els.cost, data);
  const variants = variantList(exp, data.results);
  renderCharts(els.chartsLegend, els.chartsBody, variants);
  renderLatest(els.latest, variants);
  renderTargets(els.targets, exp, data.agents);
  renderHistory(els.history, exp);
  // The config never changes: drawn once, so an open <details> stays open.
  if (!els.config.dataset.done) renderConfig(els.config, exp);
}

/**
 * The name, the state badge and who created it when.
 * @param {Elements} els
 * @param {Experiment} exp
 */
function renderTitle(els, exp) {
  els.name.textContent = exp.name;
  els.stateBadge.textContent = words(exp.state);
  els.stateBadge.className = `badge big ${tone(exp.state)}`;
  els.stateBadge.dataset.state = exp.state;
  replace(
    els.sub,
    exp.description ? [exp.description, " · "] : null,
    "by ",
    exp.author,
    ", created ",
    h("span", { title: dateTime(exp.created_at) }, ago(exp.created_at)),
  );
}

/**
 * Only the buttons of the actions its state allows, as the controller
 * lists them: the lifecycle's rules live there, not here.
 * @param {Map<import("/ui/api.js").Action, HTMLButtonElement>} buttons
 * @param {Experiment} exp
 */
function showActions(buttons, exp) {
  const allowed = exp.actions || [];
  for (const [action, button] of buttons) button.hidden = !allowed.includes(action);
}

// ---- lifecycle ----------------------------------------------------------

/**
 * @param {Elements} els
 * @param {Data} data
 */
function renderProgress(els, data) {
  const { exp } = data;
  const { line, bar } = progressNow(exp, Date.now());
  // The reason of the current state, unless the verdict below says it.
  const why = exp.reason && exp.reason !== (data.report && data.report.recommendation) ? exp.reason : "";
  els.reason.textContent = why;
  replace(
    els.progress,
    lifecycleSteps(exp),
    bar,
    line ? h("div", { class: "progress-line" }, h("span", { id: "exp-progress-text" }, line)) : null,
    why ? els.reason : null,
    exp.promotion ? wavesTable(exp.promotion) : null,
  );
}

/**
 * A promotion in waves: each wave's reach, agents, state and why.
 * @param {import("/ui/api.js").Promotion} p
 */
function wavesTable(p) {
  return h(
    "div",
    { id: "waves" },
    h(
      "h3",
      null,
      `Promotion of “${p.variant}” in waves`,
      h("span", { class: "muted small" }, ` each watched ${span(p.watch_ms)} after the warm-up; series may fall ${pct(p.max_series_drop)} below what was measured`),
    ),
    table(
      { class: "waves" },
      ["Wave", "Reach", "Agents", "State", "Watched until", "Why"],
      p.waves.map((w) =>
        h(
          "tr",
          { "data-state": w.state },
          h("td", null, String(w.number)),
          h("td", null, w.percent),
          h("td", { class: "mono small", title: w.agents.join(", ") }, String(w.agents.length)),
          h("td", null, h("span", { class: "badge " + tone(w.state) }, words(w.state))),
          h("td", null, w.watch_until ? clock(w.watch_until) : DASH),
          h("td", { class: "small" }, w.reason || DASH),
        ),
      ),
    ),
  );
}

/**
 * The states it went through (the last one current, or failed) and those
 * ahead.
 * @param {Experiment} exp
 */
function lifecycleSteps(exp) {
  // A note in the timeline (a candidate disqualified) keeps the state.
  const passed = (exp.transitions || []).filter((t) => t.from !== t.to).map((t) => t.to);
  const ahead = AHEAD[exp.state] || [];
  return h(
    "ol",
    { class: "steps", "aria-label": "Lifecycle" },
    passed.map((s, i) => {
      const last = i === passed.length - 1;
      const cls = last ? (tone(s) === "bad" ? "failed" : "current") : "done";
      return h("li", { class: cls, "aria-current": last ? "step" : null }, words(s));
    }),
    ahead.map((s) => h("li", null, words(s))),
  );
}

/**
 * Where it is at `now`, in words, and a progress bar through the deploy,
 * the warm-up or the measured window.
 * @param {Experiment} exp
 * @param {number} now
 * @returns {{ line: string | null, bar: HTMLProgressElement | null }}
 */
function progressNow(exp, now) {
  const running = parseTime(exp.running_at);
  const from = parseTime(exp.measure_from);
  const ends = parseTime(exp.ends_at);
  if (exp.state === "draft") {
    return { line: "Not started. Start deploys it to the target agents.", bar: null };
  }
  if (exp.state === "pending") {
    return { line: exp.start_at ? `Deploys at ${dateTime(exp.start_at)} (${ago(exp.start_at)}).` : "Deploying now.", bar: null };
  }
  if (exp.state === "deploying") {
    const t = exp.targets || [];
    const applied = t.filter((x) => x.runs_experiment).length;
    return {
      line: `Deploying: ${applied} of ${t.length} target(s) run the experiment config.`,
      bar: h("progress", { max: String(Math.max(t.length, 1)), value: String(applied) }),
    };
  }
  if (!(from && ends)) return { line: null, bar: null };
  if (now < from) {
    return {
      line: `Warm-up: measuring starts in ${span(from - now)} (at ${clock(from)}).`,
      bar: h("progress", { max: String(from - (running || from - 1)), value: String(Math.max(0, now - (running || now))) }),
    };
  }
  if (now < ends && exp.state === "running") {
    return {
      line: `Measuring: ${span(now - from)} of ${span(ends - from)}; the verdict at ${clock(ends)}.`,
      bar: h("progress", { max: String(ends - from), value: String(now - from) }),
    };
  }
  return {
    line: `Window ${clock(from)} – ${clock(ends)} (${span(ends - from)})${exp.finished_at ? `; finished ${ago(exp.finished_at)}` : ""}.`,
    bar: null,
  };
}

// ---- verdict -----------------------------------------------------------------

/**
 * @param {HTMLElement} section
 * @param {Data} data
 */
function renderVerdict(section, data) {
  const { report, exp } = data;
  const conf = Math.round((report.confidence || 0.95) * 100);
  const measured = (report.candidates || []).some((c) => c.paired_intervals > 0);
  section.dataset.final = String(!!report.final);
  section.dataset.verdict = measured ? report.verdict : "";
  const head = verdictHead(report);
  if (!measured) {
    replace(
      section,
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
    section,
    head,
    h(
      "div",
      { class: "verdict-line" },
      h("span", { class: `badge big ${tone(report.verdict)}`, id: "verdict-word" }, report.final ? report.verdict : `${report.verdict} so far`),
      winner,
    ),
    h("p", { class: "recommendation", id: "recommendation" }, report.recommendation),
    h("div", { class: "candidates" }, (report.candidates || []).map((c) => candidateCard(c, conf))),
  );
}

/**
 * "Verdict", and whether it is final or interim.
 * @param {Report} report
 */
function verdictHead(report) {
  return h(
    "h2",
    { id: "verdict-h" },
    "Verdict",
    h(
      "span",
      { class: `badge ${report.final ? "ok" : "info"}`, title: report.final ? "Stored when the window ended" : "Computed on the data so far" },
      report.final ? "final" : "interim",
    ),
  );
}

/**
 * A candidate's outcome, and every KPI with its interval and criterion.
 * @param {CandidateReport} c
 * @param {number} conf the confidence level, in percent
 */
function candidateCard(c, conf) {
  const byKpi = new Map((c.criteria || []).map((r) => [r.kpi, r]));
  const rows = KPIS.map((k) => kpiRow(k, c.kpis ? c.kpis[k.key] : null, byKpi.get(k.key), conf));
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
    disqualifiedLine(c),
    table({ class: "criteria" }, [th("KPI"), th(`Value [${conf}% interval]`, "num"), th("Criterion", "num"), th("Outcome")], rows),
    lossLine(c, false, "Drops"),
    lossLine(c, true, "Folds into rollups"),
  );
}

/**
 * When and why a guardrail disqualified a candidate (its KPIs below are
 * those measured up to then); nothing when none did.
 * @param {CandidateReport} c
 */
function disqualifiedLine(c) {
  const d = c.disqualified;
  if (!d) return null;
  return h(
    "p",
    { class: "small disqualified", "data-disqualified": d.guardrail },
    h("span", { class: "badge bad" }, "disqualified"),
    " ",
    h("span", { title: dateTime(d.at) }, ago(d.at)),
    ` by guardrail ${words(d.guardrail)}: ${d.reason}`,
  );
}

/**
 * What a candidate drops (gone from its totals) or folds (only in a
 * group), by executable; nothing when it loses nothing of that kind.
 * @param {CandidateReport} c
 * @param {boolean} folded
 * @param {string} label
 */
function lossLine(c, folded, label) {
  const mine = (c.losses || []).filter((l) => l.folded === folded);
  if (!mine.length) return null;
  const named = mine.map((l) => `${l.executable} (${pct(l.cpu_share)} CPU, ${pct(l.memory_share)} memory)`);
  return h("p", { class: "small losses", "data-losses": folded ? "folded" : "dropped" }, h("strong", null, `${label}: `), named.join(", "));
}

/**
 * @param {Kpi} k
 * @param {import("/ui/api.js").Estimate | null | undefined} est
 * @param {import("/ui/api.js").Criterion | undefined} crit none: the KPI is only reported
 * @param {number} conf
 */
function kpiRow(k, est, crit, conf) {
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
}

/**
 * @param {HTMLElement} section
 * @param {Data} data
 */
function renderCost(section, data) {
  const { report, exp } = data;
  const pricing = (exp.spec && exp.spec.pricing) || {};
  const variants = report.variants || [];
  const base = variants.find((v) => v.name === (data.results.baseline || "baseline"));
  replace(
    section,
    h("h2", { id: "cost-h" }, "Estimated monthly cost"),
    h(
      "p",
      { class: "muted small" },
      `${report.target_agents} target agent(s) for 30 days at the experiment's interval, at ${money(pricing.per_million_datapoints, report.currency)} per million datapoints and ${money(pricing.per_gb, report.currency)} per GB.`,
    ),
    variants.some((v) => v.intervals > 0)
      ? table(
          { id: "cost-table" },
          [th("Variant"), th("Datapoints", "num"), th("GB", "num"), th("Cost", "num"), th("vs baseline", "num")],
          variants.map((v) => costRow(v, base, report.currency)),
        )
      : h("p", { class: "muted" }, "No measurements yet."),
  );
}

/**
 * @param {VariantCost} v
 * @param {VariantCost | undefined} base
 * @param {string} currency
 */
function costRow(v, base, currency) {
  const saving = base && base.monthly_cost > 0 && v !== base ? 1 - v.monthly_cost / base.monthly_cost : null;
  return h(
    "tr",
    { "data-variant": v.name },
    h("td", null, v.name),
    h("td", { class: "num" }, isNum(v.monthly_datapoints) ? big.format(v.monthly_datapoints) : DASH),
    h("td", { class: "num" }, isNum(v.monthly_gb) ? v.monthly_gb.toFixed(v.monthly_gb < 10 ? 2 : 1) : DASH),
    h("td", { class: "num" }, h("strong", null, money(v.monthly_cost, currency))),
    h("td", { class: "num" }, saving === null ? (v === base ? "baseline" : DASH) : (saving >= 0 ? "−" : "+") + pct(Math.abs(saving), 0)),
  );
}

// ---- charts and the latest interval ------------------------------------------------

/**
 * The variants of the definition, then any others with results, each
 * with its colour and its points.
 * @param {Experiment} exp
 * @param {Results} results
 * @returns {VariantLine[]}
 */
function variantList(exp, results) {
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

/**
 * @param {HTMLElement} legendEl
 * @param {HTMLElement} body
 * @param {VariantLine[]} vs
 */
function renderCharts(legendEl, body, vs) {
  /** @param {keyof ResultPoint} key */
  const series = (key) => vs.map((v) => ({ ...v, points: v.points.map((p) => ({ t: p.t, v: /** @type {number | null} */ (p[key]) })) }));
  /** @param {number} v */
  const pctAxis = (v) => (v * 100).toFixed(0) + "%";
  replace(legendEl, legend(vs));
  replace(
    body,
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

/**
 * Every variant in the last interval (the baseline's, if it has one).
 * @param {HTMLElement} section
 * @param {VariantLine[]} vs
 */
function renderLatest(section, vs) {
  const base = vs.find((v) => v.baseline);
  const times = (base && base.points.length ? base.points : vs.flatMap((v) => v.points)).map((p) => p.t);
  const head = h("h2", { id: "latest-h" }, "Latest interval, side by side");
  if (times.length === 0) {
    replace(section, head, h("p", { class: "muted" }, "No interval measured yet."));
    return;
  }
  const at = Math.max(...times);
  /** @param {VariantLine} v */
  const pick = (v) => v.points.find((p) => p.t === at) || v.points[v.points.length - 1];
  const b = base ? pick(base) : null;
  replace(
    section,
    head,
    h("p", { class: "muted small" }, `The interval at ${clock(at)}, summed over the agents that reported it; under each candidate figure, its difference from the baseline.`),
    table(
      { id: "latest-table" },
      [
        th("Variant"),
        th("Series", "num"),
        th("Datapoints", "num"),
        th("Bytes", "num"),
        th("Gzipped", "num"),
        th("Critical coverage", "num"),
        th("Top-N fidelity", "num"),
        th("CPU per agent", "num"),
        th("Agents", "num"),
      ],
      vs.map((v) => latestRow(v, pick(v), b, v === base)),
    ),
  );
}

/**
 * @param {VariantLine} v
 * @param {ResultPoint | undefined} p its point in the interval shown
 * @param {ResultPoint | null} b the baseline's point, to compare a candidate's with
 * @param {boolean} isBase
 */
function latestRow(v, p, b, isBase) {
  /** @param {"series" | "datapoints" | "bytes" | "bytes_gzip"} key */
  const figure = (key, fmt) => [p ? fmt(p[key]) : DASH, isBase ? null : delta(p, b, key)];
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
    h("td", { class: "num" }, figure("series", num)),
    h("td", { class: "num" }, figure("datapoints", num)),
    h("td", { class: "num" }, figure("bytes", bytes)),
    h("td", { class: "num" }, figure("bytes_gzip", bytes)),
    h("td", { class: "num" }, p ? pct(p.critical_coverage) : DASH),
    h("td", { class: "num" }, p && !isBase ? pct(p.topn_fidelity) : DASH),
    h("td", { class: "num" }, p ? core(p.cpu_overhead_percent) : DASH),
    h("td", { class: "num" }, p ? String(p.agents) : DASH),
  );
}

/**
 * A candidate's figure against the baseline's: "−42%".
 * @param {ResultPoint | undefined} v
 * @param {ResultPoint | null} b
 * @param {"series" | "datapoints" | "bytes" | "bytes_gzip"} key
 */
function delta(v, b, key) {
  if (!b || !v || !isNum(v[key]) || !isNum(b[key]) || b[key] === 0) return null;
  const d = v[key] / b[key] - 1;
  return h("span", { class: "sub" }, (d <= 0 ? "−" : "+") + pct(Math.abs(d), 0));
}

// ---- targets, history, config ---------------------------------------------------

/**
 * @param {Map<string, Agent>} agents
 * @param {string} agentId
 */
function hostOf(agents, agentId) {
  const a = agents.get(agentId);
  return a ? a.host_name : "";
}

/**
 * @param {HTMLElement} section
 * @param {Experiment} exp
 * @param {Map<string, Agent>} agents
 */
function renderTargets(section, exp, agents) {
  const t = exp.targets || [];
  const head = h("h2", { id: "targets-h" }, "Target agents", h("span", { class: "muted small" }, String(t.length)));
  if (t.length === 0) {
    const sel = exp.spec && exp.spec.targets ? selectorText(exp.spec.targets) : "";
    replace(section, head, h("p", { class: "muted" }, `Resolved when it deploys: the online agents with ${sel}.`));
    return;
  }
  replace(
    section,
    head,
    table(
      { id: "targets-table" },
      [th("Agent"), th("Status"), th("Running config"), th("Before the experiment")],
      t.map((x) => targetRow(x, agents)),
    ),
  );
}

/**
 * @param {Target} x
 * @param {Map<string, Agent>} agents
 */
function targetRow(x, agents) {
  return h(
    "tr",
    { "data-agent": x.agent_id },
    h("td", null, h("span", { class: "mono" }, x.agent_id), h("span", { class: "sub" }, hostOf(agents, x.agent_id))),
    h("td", null, h("span", { class: `badge ${tone(x.status)}` }, x.status)),
    h(
      "td",
      null,
      h("span", { class: "mono", title: x.effective_hash }, shortHash(x.effective_hash)),
      h("span", { class: "sub" }, x.runs_experiment ? "the experiment config" : words(x.config_state)),
      x.config_error ? h("div", { class: "error-text small" }, x.config_error) : null,
    ),
    h("td", null, h("span", { class: "mono", title: x.previous_hash }, shortHash(x.previous_hash)), h("span", { class: "sub" }, previousText(x))),
  );
}

/**
 * Every transition, newest first.
 * @param {HTMLElement} section
 * @param {Experiment} exp
 */
function renderHistory(section, exp) {
  const list = [...(exp.transitions || [])].reverse();
  replace(section, h("h2", { id: "history-h" }, "History"), h("ol", { class: "timeline", reversed: true }, list.map(historyItem)));
}

/** @param {Transition} t */
function historyItem(t) {
  return h(
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
  );
}

/**
 * @param {HTMLElement} section
 * @param {Experiment} exp
 */
function renderConfig(section, exp) {
  section.dataset.done = "1";
  replace(
    section,
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

/**
 * Open an action's dialog; reload once it is done.
 * @param {Page} page
 * @param {(page: Page) => Promise<boolean>} dialog
 */
async function act(page, dialog) {
  if (!page.data) return;
  const done = await dialog(page);
  if (done) page.reload();
}

/**
 * POST an action; a refusal is thrown with its status, for the dialog to show.
 * @param {Page} page
 * @param {import("/ui/api.js").Action} action
 * @param {object} body
 * @returns {Promise<Experiment>}
 */
async function send(page, action, body) {
  try {
    return await post(page.path + "/" + action, { ...body, author: author() });
  } catch (e) {
    throw new Error(e.status ? `Refused (${e.status}): ${e.message}` : e.message);
  }
}

/**
 * An agent in a dialog's list: its id, its host, and what happens to it.
 * @param {Map<string, Agent>} agents
 * @param {string} agentId
 * @param {Child[]} rest
 */
function agentLine(agents, agentId, ...rest) {
  const host = hostOf(agents, agentId);
  return h("li", null, h("span", { class: "mono" }, agentId), host ? ` (${host})` : "", ...rest);
}

/** @param {Page} page */
function promoteDialog(page) {
  const { exp, report, results, agents } = page.data;
  const t = exp.targets || [];
  const candidates = (report.candidates || []).map((c) => c.name);
  const baseline = results.baseline || "baseline";
  const chosen = report.winner || candidates[0] || baseline;
  const select = h(
    "select",
    { id: "promote-variant", value: chosen },
    (report.candidates || []).map((c) =>
      h("option", { value: c.name }, `${c.name} (${words(c.outcome)}${c.name === report.winner ? ", the winner" : ""})`),
    ),
    h("option", { value: baseline }, `${baseline} (the baseline)`),
  );
  const waves = h("input", { id: "promote-waves", type: "text", placeholder: "all at once, or e.g. 10%,50%,100%", pattern: "^\\s*(\\d{1,3}%?\\s*,\\s*)*\\d{1,3}%?\\s*$" });
  const watch = h("input", { id: "promote-watch", type: "text", placeholder: "1m" });
  const what = h("p", { id: "promote-what" });
  const describe = () =>
    replace(
      what,
      "Pushes a new config to the ",
      h("strong", null, `${t.length} target agent(s)`),
      " below: the ",
      h("strong", null, `“${select.value}”`),
      " pipeline alone, sent to the experiment's exporters, without the other variants; the agents count the critical processes it keeps, nothing is compared.",
    );
  select.addEventListener("change", describe);
  describe();
  return confirmDialog({
    title: `Promote a variant of “${exp.name}”`,
    confirmLabel: `Promote to ${t.length} agent(s)`,
    build(body) {
      body.append(
        h("div", { class: "field" }, h("label", { for: "promote-variant" }, "Variant"), select),
        h(
          "div",
          { class: "field" },
          h("label", { for: "promote-waves" }, "Waves"),
          waves,
          h("span", { class: "hint" }, "The share of the targets promoted once each wave is out, the last 100%. Each wave is watched; one that fails the config, stops reporting or loses series or critical processes rolls everything back."),
        ),
        h("div", { class: "field" }, h("label", { for: "promote-watch" }, "Watch each wave for"), watch),
        what,
        h(
          "ul",
          { class: "agents" },
          t.map((x) =>
            agentLine(
              agents,
              x.agent_id,
              h("span", { class: "muted" }, ` now runs ${shortHash(x.effective_hash)}${x.runs_experiment ? " (the experiment config)" : ""}, then the promoted config`),
            ),
          ),
        ),
        h("p", { class: "muted small" }, "The experiment becomes promoted. Rolling it back later gives each agent what it ran before the experiment."),
      );
    },
    async onConfirm() {
      /** @type {{ variant: string, waves?: string[], watch?: string }} */
      const body = { variant: select.value };
      const list = waves.value.split(",").map((w) => w.trim()).filter(Boolean);
      if (list.length) body.waves = list;
      if (watch.value.trim()) body.watch = watch.value.trim();
      const r = await send(page, "promote", body);
      page.ctx.flash(capital(r.reason || `promoted “${select.value}”`) + ".");
    },
  });
}

/**
 * What each target gets back on a rollback or stop.
 * @param {Map<string, Agent>} agents
 * @param {Target[]} t
 */
function restoreList(agents, t) {
  return h(
    "ul",
    { class: "agents" },
    t.map((x) => agentLine(agents, x.agent_id, h("span", { class: "muted" }, " → ", previousText(x)))),
  );
}

/** @param {Page} page */
function rollbackDialog(page) {
  const { exp, agents } = page.data;
  const t = exp.targets || [];
  const reasonInput = h("input", { id: "rollback-reason", type: "text", placeholder: `rolled back by ${author()}`, maxlength: "1024" });
  return confirmDialog({
    title: `Roll back “${exp.name}”`,
    confirmLabel: `Roll back ${t.length} agent(s)`,
    danger: true,
    build(body) {
      body.append(
        h("p", null, "Each target agent gets back the config it ran before the experiment:"),
        restoreList(agents, t),
        h("div", { class: "field" }, h("label", { for: "rollback-reason" }, "Reason ", h("span", { class: "hint" }, "(optional, kept in the history)")), reasonInput),
        h("p", { class: "muted small" }, `The experiment becomes rolled back${exp.state === "promoted" ? ", undoing the promotion" : ""}; this cannot be undone.`),
      );
    },
    async onConfirm() {
      const r = await send(page, "rollback", { reason: reasonInput.value.trim() || undefined });
      page.ctx.flash(capital(r.reason || "rolled back") + ".");
    },
  });
}

/** @param {Page} page */
function stopDialog(page) {
  const { exp, agents } = page.data;
  const t = exp.targets || [];
  const deployed = HAS_DEPLOYED.includes(exp.state) && t.length > 0;
  return confirmDialog({
    title: `Stop “${exp.name}”`,
    confirmLabel: "Stop the experiment",
    danger: true,
    build(body) {
      if (deployed) {
        body.append(h("p", null, "The experiment is cancelled, and each target agent gets back the config it ran before:"), restoreList(agents, t));
      } else {
        body.append(h("p", null, `It is ${words(exp.state)}: nothing has been deployed, so no agent is touched. The experiment is cancelled.`));
      }
    },
    async onConfirm() {
      const r = await send(page, "stop", {});
      page.ctx.flash(capital(r.reason || "stopped") + ".");
    },
  });
}

/** @param {Page} page */
async function startDialog(page) {
  const { exp, agents } = page.data;
  const sel = (exp.spec && exp.spec.targets) || {};
  /** @type {Agent[]} */
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
          ? h(
              "ul",
              { class: "agents" },
              matching.map((a) => agentLine(agents, a.id, h("span", { class: "muted" }, ` now runs ${shortHash(a.config && a.config.effective_hash)}`))),
            )
          : h("p", { class: "error-text" }, "No online agent matches now: the deploy would fail."),
        h("p", { class: "muted small" }, "Each agent keeps the config it runs now on record; a stop or rollback gives it back."),
      );
    },
    async onConfirm() {
      await send(page, "start", {});
      page.ctx.flash("Started.");
    },
  });
}

/** @param {string} s */
const capital = (s) => s.charAt(0).toUpperCase() + s.slice(1);

/**
 * What a rollback gives a target back.
 * @param {Target} x
 */
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

/** @param {Selector} targets */
export function selectorText(targets) {
  if (targets.hosts && targets.hosts.length) return "host names " + targets.hosts.join(", ");
  const labels = Object.entries(targets.labels || {}).map(([k, v]) => `${k}=${v}`);
  return labels.length ? "labels " + labels.join(", ") : "no selector";
}

/**
 * The online agents a selector matches now (as the API resolves it).
 * @param {Selector} targets
 * @returns {Promise<Agent[]>}
 */
export async function matchingAgents(targets) {
  if (targets.hosts && targets.hosts.length) {
    /** @type {Agent[]} */
    const all = (await get("/agents?status=online")).agents;
    return all.filter((a) => targets.hosts.includes(a.host_name));
  }
  const labels = Object.entries(targets.labels || {}).map(([k, v]) => `${k}=${v}`);
  if (labels.length === 0) return [];
  return (await get("/agents?status=online&label=" + enc(labels.join(",")))).agents;
}
