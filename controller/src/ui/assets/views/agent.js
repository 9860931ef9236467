// @ts-check
// One agent: who it is, the config it runs and its last push; for an OpAMP
// agent also what OpAMP told about it: its description (both attribute
// lists), capabilities, health tree, remote config status and the bodies
// of its effective config files. Everything comes from GET /agents/<id>.

import { enc, get } from "/ui/api.js";
import { h, pageHead, replace, rerender, table, th } from "/ui/dom.js";
import { DASH, ago, dateTime, shortHash, tone, words } from "/ui/format.js";

/** @typedef {import("/ui/api.js").Agent} Agent */
/** @typedef {import("/ui/api.js").Health} Health */

/**
 * @param {HTMLElement} root
 * @param {string[]} params the agent id
 */
export function mount(root, params) {
  const id = decodeURIComponent(params[0] || "");
  const title = h("span", { class: "mono", id: "agent-id" }, id);
  const badges = h("span", { id: "agent-badges" });
  const sub = h("p", { class: "sub", id: "agent-sub" }, "Loading…");
  const error = h("p", { class: "error-text", id: "agent-error", role: "alert" });
  const body = h("div", { id: "agent-body" });
  replace(
    root,
    pageHead({
      crumbs: [h("a", { href: "#/fleet" }, "Fleet"), " / ", h("span", { class: "mono" }, id)],
      title: [title, badges],
      sub,
    }),
    error,
    body,
  );

  let dead = false;
  async function load() {
    /** @type {Agent} */
    let agent;
    try {
      agent = await get("/agents/" + enc(id));
    } catch (e) {
      if (dead) return;
      error.textContent = e.status === 404 ? `No agent ${id} is known to this controller.` : "Could not load the agent: " + e.message;
      return;
    }
    if (dead) return;
    error.textContent = "";
    render(agent);
  }

  /** @param {Agent} a */
  function render(a) {
    replace(
      badges,
      h("span", { class: `badge ${tone(a.status)}` }, a.status),
      h("span", { class: "badge", id: "agent-kind" }, a.kind === "opamp" ? "OpAMP" : "Phoenix"),
    );
    replace(sub, [a.host_name || DASH, a.version ? `v${a.version}` : null, `last seen ${ago(a.last_seen)}`].filter(Boolean).join(" · "));
    const op = a.opamp;
    rerender(
      body,
      h("div", { class: "two-col" }, overview(a), config(a)),
      op
        ? [
            h("div", { class: "two-col" }, health(op.health), remoteStatus(op.remote_config_status)),
            h("div", { class: "stack" }, description(op.description), effective(op.effective_config)),
          ]
        : null,
    );
  }

  load();
  return {
    refresh: load,
    unmount() {
      dead = true;
    },
  };
}

/**
 * A card with a heading.
 * @param {string} id
 * @param {string} title
 * @param {import("/ui/dom.js").Child[]} children
 */
function card(id, title, ...children) {
  return h("section", { class: "card", id, "aria-labelledby": id + "-h" }, h("h2", { id: id + "-h" }, title), children);
}

/**
 * Rows of a two-column table of names and values.
 * @param {[string, import("/ui/dom.js").Child][]} rows
 */
function pairs(rows) {
  return table(
    { class: "pairs" },
    [th("Name"), th("Value")],
    rows.map(([k, v]) => h("tr", null, h("th", { scope: "row" }, k), h("td", null, v === "" || v === null || v === undefined ? DASH : v))),
  );
}

/** @param {string | null | undefined} t */
const when = (t) => (t ? h("span", { title: dateTime(t) }, ago(t)) : DASH);

/** @param {Agent} a */
function overview(a) {
  const chips = (/** @type {Record<string, string>} */ m) =>
    Object.entries(m).map(([k, v]) => h("span", { class: "chip", "data-label": k }, `${k}=${v}`));
  return card(
    "agent-overview",
    "Agent",
    pairs([
      ["Protocol", a.kind === "opamp" ? "OpAMP" : "Phoenix (native)"],
      ["Config kind", a.config_kind || DASH],
      ["Host", a.host_name],
      ["Version", a.version],
      ["First seen", when(a.first_seen)],
      ["Connected", when(a.connected_at)],
      ["Credential", words(a.enrollment) + (a.revoked_at ? ` (revoked ${dateTime(a.revoked_at)})` : "")],
      ["Capabilities", h("span", { id: "agent-capabilities" }, (a.capabilities || []).map((c) => h("span", { class: "chip" }, c)))],
      ["Labels", h("span", { id: "agent-labels" }, chips(a.labels || {}))],
    ]),
  );
}

/** @param {Agent} a */
function config(a) {
  const cfg = a.config || {};
  const d = a.desired;
  return card(
    "agent-config",
    "Config",
    pairs([
      ["Running", h("span", { class: "mono", title: cfg.effective_hash || "" }, shortHash(cfg.effective_hash))],
      ["State", cfg.state ? h("span", { class: `badge ${tone(cfg.state)}` }, words(cfg.state)) : DASH],
      ["Applied", when(cfg.applied_at)],
      ["Error", cfg.error ? h("span", { class: "error-text" }, cfg.error) : DASH],
      [
        "Last push",
        d
          ? [h("span", { class: `badge ${tone(d.state)}` }, words(d.state || "unknown")), " ", h("span", { class: "mono", title: d.hash || "" }, "push " + shortHash(d.push_id))]
          : h("span", { class: "muted" }, "none"),
      ],
    ]),
  );
}

/**
 * The health tree, nested lists as deep as the agent sent it.
 * @param {Health | null | undefined} top
 */
function health(top) {
  if (!top) return card("agent-health", "Health", h("p", { class: "muted" }, "Not reported."));
  /**
   * @param {string} name
   * @param {Health} hl
   * @returns {HTMLElement}
   */
  const node = (name, hl) =>
    h(
      "li",
      { "data-component": name },
      h("span", { class: `badge ${hl.healthy ? "ok" : "bad"}` }, hl.healthy ? "healthy" : "unhealthy"),
      " ",
      h("strong", null, name),
      hl.status ? h("span", { class: "muted" }, " · " + hl.status) : null,
      hl.start_time ? h("span", { class: "muted small", title: dateTime(hl.start_time) }, " · started " + ago(hl.start_time)) : null,
      hl.last_error ? h("div", { class: "error-text small" }, hl.last_error) : null,
      hl.components && Object.keys(hl.components).length
        ? h("ul", { class: "health-tree" }, Object.entries(hl.components).map(([n, c]) => node(n, c)))
        : null,
    );
  return card("agent-health", "Health", h("ul", { class: "health-tree root" }, node("agent", top)));
}

/** @param {import("/ui/api.js").RemoteConfigStatus | null | undefined} s */
function remoteStatus(s) {
  if (!s) return card("agent-remote", "Remote config", h("p", { class: "muted" }, "Not reported."));
  return card(
    "agent-remote",
    "Remote config",
    pairs([
      ["Status", h("span", { class: `badge ${tone(s.status)}`, id: "agent-remote-status" }, s.status)],
      ["Config hash", h("span", { class: "mono", title: s.last_remote_config_hash }, shortHash(s.last_remote_config_hash))],
      ["Error", s.error_message ? h("span", { class: "error-text" }, s.error_message) : DASH],
    ]),
  );
}

/** @param {import("/ui/api.js").OpampDescription | null | undefined} d */
function description(d) {
  if (!d) return card("agent-description", "Description", h("p", { class: "muted" }, "Not reported."));
  const list = (/** @type {Record<string, string>} */ m) => pairs(Object.entries(m).map(([k, v]) => [k, h("span", { class: "mono" }, v)]));
  return card(
    "agent-description",
    "Description",
    h("h3", null, "Identifying attributes"),
    list(d.identifying || {}),
    h("h3", null, "Non-identifying attributes"),
    list(d.non_identifying || {}),
  );
}

/** @param {import("/ui/api.js").EffectiveConfig | null | undefined} c */
function effective(c) {
  const files = Object.entries((c && c.files) || {});
  if (files.length === 0) return card("agent-effective", "Effective config", h("p", { class: "muted" }, "Not reported."));
  return card(
    "agent-effective",
    "Effective config",
    files.map(([name, f]) =>
      h(
        "details",
        { open: true, "data-file": name },
        h("summary", null, h("span", { class: "mono" }, name || "(single file)"), h("span", { class: "muted small" }, ` ${f.content_type || "no content type"}${f.encoding === "base64" ? " · binary, shown as base64" : ""}`)),
        h("pre", { class: "code" }, f.body),
      ),
    ),
  );
}
