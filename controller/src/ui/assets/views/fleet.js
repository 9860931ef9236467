// @ts-check
// The fleet: every agent with its status, labels, the config it runs and
// when it was applied, its last push and error, and its own CPU and memory.
// Filters by label selector and status use the API's own (?label=, ?status=).

import { enc, get } from "/ui/api.js";
import { debounce, h, pageHead, replace, rerender, table, th } from "/ui/dom.js";
import { DASH, ago, dateTime, isNum, mib, shortHash, tone, words } from "/ui/format.js";

/** @typedef {import("/ui/api.js").Agent} Agent */

// Kept across visits to the page.
const filters = { label: "", status: "all" };
// CPU rate: per agent, the last two distinct cpu_seconds_total readings
// and when this page first saw them (heartbeats come every 10 s).
/** @type {Map<string, { total: number, at: number, rate: number | null }>} */
const cpuSeen = new Map();

/**
 * The agent's CPU as a share of one core, once two heartbeats told it.
 * @param {Agent} agent
 * @returns {{ text: string, title?: string }}
 */
function cpuRate(agent) {
  const total = agent.resources && agent.resources.cpu_seconds_total;
  if (!isNum(total)) return { text: DASH };
  const now = Date.now();
  const seen = cpuSeen.get(agent.id);
  if (!seen) {
    cpuSeen.set(agent.id, { total, at: now, rate: null });
    return { text: total.toFixed(1) + " s total", title: "CPU seconds used since it started; the rate shows after its next heartbeat" };
  }
  if (total !== seen.total) {
    const dt = (now - seen.at) / 1000;
    seen.rate = total >= seen.total && dt > 0.5 ? (total - seen.total) / dt : null;
    seen.total = total;
    seen.at = now;
  }
  if (seen.rate === null) return { text: total.toFixed(1) + " s total", title: "CPU seconds used since it started" };
  return {
    text: (seen.rate * 100).toFixed(seen.rate < 0.1 ? 2 : 1) + "%",
    title: `${(seen.rate * 100).toFixed(3)}% of one core between its last two heartbeats; ${total.toFixed(2)} s in total`,
  };
}

/** @param {HTMLElement} root */
export function mount(root) {
  const labelInput = h("input", {
    id: "filter-label",
    type: "text",
    value: filters.label,
    placeholder: "env=prod, team=payments",
    spellcheck: "false",
    "aria-describedby": "filter-label-error",
  });
  const labelError = h("p", { class: "field-error", id: "filter-label-error", role: "alert" });
  const statusSelect = h(
    "select",
    { id: "filter-status", value: filters.status },
    h("option", { value: "all" }, "All"),
    h("option", { value: "online" }, "Online"),
    h("option", { value: "offline" }, "Offline"),
  );
  const summary = h("p", { class: "summary", id: "fleet-summary", role: "status" });
  const body = h("div", { id: "fleet-body" }, h("p", { class: "empty" }, "Loading agents…"));

  const apply = debounce(() => {
    filters.label = labelInput.value.trim();
    filters.status = statusSelect.value;
    load();
  }, 300);
  labelInput.addEventListener("input", apply);
  statusSelect.addEventListener("change", apply);

  /**
   * @param {string} k
   * @param {string} v
   */
  const addLabel = (k, v) => {
    const parts = labelInput.value
      .split(",")
      .map((p) => p.trim())
      .filter(Boolean)
      .filter((p) => !p.startsWith(k + "="));
    parts.push(`${k}=${v}`);
    labelInput.value = parts.join(", ");
    apply();
  };

  replace(
    root,
    pageHead({ title: "Fleet", sub: "The agents connected to this controller, the config each runs, and how its last push went." }),
    h(
      "div",
      { class: "toolbar", role: "search", "aria-label": "Filter agents" },
      h("div", { class: "field" }, h("label", { for: "filter-label" }, "Labels"), labelInput, labelError),
      h("div", { class: "field" }, h("label", { for: "filter-status" }, "Status"), statusSelect),
    ),
    summary,
    body,
  );

  let seq = 0;
  async function load() {
    const mine = ++seq;
    const params = [];
    if (filters.label) params.push("label=" + enc(filters.label));
    if (filters.status !== "all") params.push("status=" + enc(filters.status));
    /** @type {Agent[]} */
    let agents;
    try {
      agents = (await get("/agents" + (params.length ? "?" + params.join("&") : ""))).agents;
    } catch (e) {
      if (mine !== seq) return;
      if (e.status === 400) {
        labelError.textContent = e.message;
        labelInput.setAttribute("aria-invalid", "true");
        return;
      }
      summary.textContent = "Could not load the agents: " + e.message;
      return;
    }
    if (mine !== seq) return;
    labelError.textContent = "";
    labelInput.removeAttribute("aria-invalid");
    render(agents);
  }

  /** @param {Agent[]} agents */
  function render(agents) {
    const online = agents.filter((a) => a.status === "online").length;
    const hashes = new Set(agents.map((a) => a.config && a.config.effective_hash).filter(Boolean));
    replace(
      summary,
      h("strong", null, String(agents.length)),
      agents.length === 1 ? " agent" : " agents",
      filters.label || filters.status !== "all" ? " match" : "",
      " · ",
      h("strong", null, String(online)),
      " online · ",
      h("strong", null, String(agents.length - online)),
      " offline · ",
      h("strong", null, String(hashes.size)),
      hashes.size === 1 ? " distinct config" : " distinct configs",
    );
    if (agents.length === 0) {
      replace(
        body,
        h(
          "p",
          { class: "empty" },
          filters.label || filters.status !== "all"
            ? "No agent matches these filters."
            : "No agent has connected yet. Start one with --controller pointing at this controller's gRPC port (see the README).",
        ),
      );
      return;
    }
    const rows = agents.map((a) => {
      const cfg = a.config || {};
      const cpu = cpuRate(a);
      const desired = a.desired;
      return h(
        "tr",
        { "data-agent": a.id, "data-status": a.status },
        h("td", null, h("a", { class: "mono", href: "#/agents/" + enc(a.id), "data-key": "agent/" + a.id }, a.id), h("span", { class: "sub" }, a.host_name, a.version ? ` · v${a.version}` : "", a.kind === "opamp" ? " · OpAMP" : "")),
        h("td", null, h("span", { class: `badge ${tone(a.status)}` }, a.status)),
        h(
          "td",
          null,
          Object.entries(a.labels || {}).map(([k, v]) =>
            h(
              "button",
              { type: "button", class: "chip", "data-key": `${a.id}/${k}`, title: `Show only agents with ${k}=${v}`, onclick: () => addLabel(k, v) },
              `${k}=${v}`,
            ),
          ),
        ),
        h(
          "td",
          { class: "hash", "data-hash": cfg.effective_hash || "" },
          h("span", { class: "mono", title: cfg.effective_hash || "" }, shortHash(cfg.effective_hash)),
          cfg.state ? h("span", { class: "sub" }, words(cfg.state)) : null,
        ),
        h("td", { class: "nowrap", title: dateTime(cfg.applied_at) }, cfg.applied_at ? ago(cfg.applied_at) : DASH),
        h(
          "td",
          null,
          desired
            ? [
                h("span", { class: `badge ${tone(desired.state)}` }, words(desired.state || "unknown")),
                h("span", { class: "sub mono", title: `push ${desired.push_id}, config ${desired.hash || ""}` }, "push " + shortHash(desired.push_id)),
              ]
            : h("span", { class: "muted" }, "none"),
          cfg.error ? h("div", { class: "error-text small" }, cfg.error) : null,
        ),
        h("td", { class: "num", title: cpu.title || "" }, cpu.text),
        h("td", { class: "num" }, mib(a.resources && a.resources.resident_memory_bytes)),
        h("td", { class: "nowrap", title: dateTime(a.last_seen) }, ago(a.last_seen)),
      );
    });
    rerender(
      body,
      table({ id: "fleet-table" }, [
        th("Agent"),
        th("Status"),
        th("Labels"),
        th("Running config"),
        th("Applied"),
        th("Last push"),
        th("CPU", "num"),
        th("Memory", "num"),
        th("Last seen"),
      ], rows),
    );
  }

  load();
  return { refresh: load, unmount: () => apply.cancel() };
}
