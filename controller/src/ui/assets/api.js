// @ts-check
// The controller's JSON API, with the token the user signed in with: the
// same endpoints and permissions as phoenixctl. A 401 anywhere signs out; a
// 403 naming a permission says the role changed on the server.
// The typedefs below are the shapes of what it answers, as the pages read
// them (the views import them with `import("/ui/api.js").Name`).

/**
 * An agent, as `GET /agents` lists it.
 * @typedef {object} Agent
 * @property {string} id
 * @property {"phoenix" | "opamp"} [kind] the protocol it speaks
 * @property {"phoenix" | "opaque"} [config_kind] which configs it takes
 * @property {string} host_name
 * @property {string} [version]
 * @property {"online" | "offline"} status
 * @property {Record<string, string>} [labels]
 * @property {string[]} [capabilities]
 * @property {string} [first_seen]
 * @property {string} last_seen
 * @property {string | null} [connected_at]
 * @property {string} [enrollment] none, pending, enrolled, revoked
 * @property {string | null} [revoked_at]
 * @property {{ effective_hash?: string, state?: string, error?: string, applied_at?: string }} [config]
 * @property {Push | null} [desired] the last push sent to it
 * @property {{ cpu_seconds_total?: number, resident_memory_bytes?: number }} [resources]
 * @property {OpampParts} [opamp] what an OpAMP agent reported
 */

/**
 * An OpAMP agent's reports, each part as of its latest one.
 * @typedef {object} OpampParts
 * @property {number} capability_bits
 * @property {OpampDescription | null} [description]
 * @property {Health | null} [health]
 * @property {EffectiveConfig | null} [effective_config]
 * @property {RemoteConfigStatus | null} [remote_config_status]
 */

/**
 * @typedef {object} OpampDescription
 * @property {Record<string, string>} identifying
 * @property {Record<string, string>} non_identifying
 */

/**
 * An OpAMP component's health, nested.
 * @typedef {object} Health
 * @property {boolean} healthy
 * @property {string} status
 * @property {string} last_error
 * @property {string | null} [start_time]
 * @property {string | null} [status_time]
 * @property {Record<string, Health>} [components]
 */

/**
 * @typedef {object} EffectiveConfig
 * @property {Record<string, { content_type: string, body: string, encoding: string }>} files
 */

/**
 * @typedef {object} RemoteConfigStatus
 * @property {string} last_remote_config_hash hex
 * @property {string} status unset, applied, applying, failed
 * @property {string} error_message
 */

/**
 * The last push an agent was sent.
 * @typedef {object} Push
 * @property {string} push_id
 * @property {string} [hash]
 * @property {string} [state] applied, applying, failed, timeout…
 */

/** @typedef {"start" | "stop" | "promote" | "rollback"} Action */

/**
 * An experiment: the fields of the list (`GET /experiments`), and the
 * ones only `GET /experiments/<id>` has (spec, config, targets, transitions).
 * @typedef {object} Experiment
 * @property {string} id
 * @property {string} name
 * @property {string} [description]
 * @property {string} state
 * @property {string} [reason]
 * @property {string} author
 * @property {string} [config_hash]
 * @property {ExperimentVariant[]} [variants]
 * @property {string} created_at
 * @property {string | null} [start_at]
 * @property {string | null} [running_at]
 * @property {string | null} [measure_from]
 * @property {string | null} [ends_at]
 * @property {string | null} [finished_at]
 * @property {Headline | null} [headline]
 * @property {Action[]} [actions] what its state allows now
 * @property {ExperimentSpec} [spec]
 * @property {string} [config] the composed agent config (YAML)
 * @property {Transition[]} [transitions]
 * @property {Target[]} [targets]
 * @property {Promotion} [promotion] a promotion in waves
 */

/**
 * A promotion in waves (`GET /experiments/<id>`).
 * @typedef {object} Promotion
 * @property {string} variant
 * @property {string} config_hash
 * @property {number} watch_ms
 * @property {number} max_series_drop
 * @property {Wave[]} waves
 */

/**
 * @typedef {object} Wave
 * @property {number} number
 * @property {string} percent like "10%"
 * @property {string[]} agents
 * @property {"pending" | "deploying" | "watching" | "passed" | "failed" | "skipped"} state
 * @property {string | null} push
 * @property {string | null} watch_until
 * @property {string} reason
 */

/**
 * @typedef {object} ExperimentVariant
 * @property {string} name
 * @property {"baseline" | "candidate"} role
 * @property {string} [mode] shadow or export
 */

/**
 * The stored definition, as far as the pages read it.
 * @typedef {object} ExperimentSpec
 * @property {Selector} [targets]
 * @property {{ per_million_datapoints?: number, per_gb?: number }} [pricing]
 */

/**
 * Which agents an experiment targets.
 * @typedef {{ labels?: Record<string, string>, hosts?: string[] }} Selector
 */

/**
 * @typedef {object} Headline
 * @property {string} [verdict]
 * @property {string | null} [winner]
 * @property {{ name: string, outcome: string, series_reduction?: number, bytes_reduction?: number, critical_coverage?: number }[]} [candidates]
 */

/**
 * @typedef {object} Transition
 * @property {string} at
 * @property {string} from empty for the creation
 * @property {string} to
 * @property {string} actor
 * @property {string} [reason]
 */

/**
 * A target agent of an experiment, and what a rollback gives it back.
 * @typedef {object} Target
 * @property {string} agent_id
 * @property {string} status
 * @property {string} previous_hash
 * @property {"controller" | "local" | "none"} previous_source
 * @property {string} effective_hash
 * @property {string} config_state
 * @property {string | null} [config_error]
 * @property {boolean} runs_experiment
 */

/**
 * `GET /experiments/<id>/results`: per variant, one point per interval.
 * @typedef {object} Results
 * @property {string} baseline
 * @property {Record<string, ResultPoint[]>} variants
 */

/**
 * @typedef {object} ResultPoint
 * @property {string} time
 * @property {number} agents
 * @property {number} series
 * @property {number} datapoints
 * @property {number} bytes
 * @property {number} bytes_gzip
 * @property {number | null} critical_coverage
 * @property {number | null} topn_fidelity
 * @property {number | null} cpu_overhead_percent
 */

/**
 * `GET /experiments/<id>/report`: the verdict, final or interim.
 * @typedef {object} Report
 * @property {string} verdict
 * @property {string | null} [winner]
 * @property {string} recommendation
 * @property {boolean} [final]
 * @property {number} [confidence]
 * @property {number} target_agents
 * @property {string} currency
 * @property {VariantCost[]} [variants]
 * @property {CandidateReport[]} [candidates]
 */

/**
 * @typedef {object} VariantCost
 * @property {string} name
 * @property {number} intervals
 * @property {number} monthly_datapoints
 * @property {number} monthly_gb
 * @property {number} monthly_cost
 */

/**
 * @typedef {object} CandidateReport
 * @property {string} name
 * @property {string} outcome
 * @property {number} paired_intervals
 * @property {number} agents
 * @property {Record<string, Estimate | null>} [kpis]
 * @property {Criterion[]} [criteria]
 * @property {Loss[]} [losses] the baseline's executables it does not show individually
 * @property {Disqualification} [disqualified] a guardrail took it out of the experiment
 */

/**
 * @typedef {object} Disqualification
 * @property {string} at
 * @property {string} guardrail critical_coverage or cpu_overhead
 * @property {string} reason the breach, in words
 */

/**
 * @typedef {object} Loss
 * @property {string} executable
 * @property {boolean} folded in a rollup (true) or dropped (false)
 * @property {number} cpu_share of the baseline's process CPU
 * @property {number} memory_share
 */

/** @typedef {{ value: number, low: number, high: number }} Estimate */

/**
 * @typedef {object} Criterion
 * @property {string} kpi
 * @property {">=" | "<="} op
 * @property {number} threshold
 * @property {string} outcome
 */

/**
 * @typedef {object} Template
 * @property {string} name
 * @property {string} [description]
 * @property {string} [hash]
 * @property {string} [content] the YAML (only from `GET /templates/<name>`)
 */

/**
 * An error the API reports about one field of a definition.
 * @typedef {{ field?: string, message: string }} FieldError
 */

/**
 * `POST /experiments/validate`.
 * @typedef {object} Validation
 * @property {boolean} valid
 * @property {FieldError[]} errors
 * @property {string[]} [matching_agents]
 * @property {string[]} [variants]
 * @property {string} [config]
 */

/** @typedef {"read" | "audit.read" | "pushes.create" | "experiments.write" | "agents.revoke"} Permission */

/**
 * `GET /whoami`: the signed-in principal, its role and what it is limited to.
 * @typedef {object} WhoAmI
 * @property {string} name
 * @property {"viewer" | "operator" | "admin"} role
 * @property {"token" | "oidc" | "open"} method
 * @property {Permission[]} permissions
 * @property {{ labels: Record<string, string>, templates?: string[] }} [scope] absent: the whole fleet
 */

const TOKEN = "phoenix.token";
const AUTHOR = "phoenix.author";

export const token = () => sessionStorage.getItem(TOKEN);
export const author = () => sessionStorage.getItem(AUTHOR) || "dashboard";

/**
 * @param {string} t
 * @param {string} [who]
 */
export function signIn(t, who) {
  sessionStorage.setItem(TOKEN, t);
  if (who) sessionStorage.setItem(AUTHOR, who);
  else sessionStorage.removeItem(AUTHOR);
}

export function signOut() {
  sessionStorage.removeItem(TOKEN);
}

/** A refused or failed request: `status` is 0 when nothing answered. */
export class ApiError extends Error {
  /**
   * @param {number} status
   * @param {any} body
   * @param {string} message
   */
  constructor(status, body, message) {
    super(message);
    this.status = status;
    this.body = body;
  }
}

/** The controller answers 401 to this token: everyone goes to sign-in. */
function unauthorized() {
  signOut();
  window.dispatchEvent(new CustomEvent("phoenix:unauthorized"));
}

/** The role lacks a permission: the shell asks again who is signed in. */
function forbidden() {
  window.dispatchEvent(new CustomEvent("phoenix:forbidden"));
}

/**
 * @param {string} method
 * @param {string} path
 * @param {unknown} body
 * @param {string} tok
 * @returns {Promise<any>}
 */
async function call(method, path, body, tok) {
  /** @type {Record<string, string>} */
  const headers = { Authorization: "Bearer " + tok, Accept: "application/json" };
  /** @type {RequestInit} */
  const init = { method, headers, cache: "no-store" };
  if (body !== undefined) {
    headers["Content-Type"] = "application/json";
    init.body = JSON.stringify(body);
  }
  let r;
  try {
    r = await fetch("/api/v1" + path, init);
  } catch (e) {
    throw new ApiError(0, null, "The controller does not answer (" + (e.message || e) + ")");
  }
  const text = await r.text();
  let data = null;
  try {
    data = text ? JSON.parse(text) : null;
  } catch {
    data = null;
  }
  if (!r.ok) {
    let message = (data && data.error) || `HTTP ${r.status}`;
    // The pages disable what the role may not do, so a refusal naming a
    // permission means the role changed after the page learnt it.
    if (r.status === 403 && data && data.missing_permission) {
      message += "; your role may have changed since you signed in";
    }
    throw new ApiError(r.status, data, message);
  }
  return data;
}

/**
 * @param {string} method
 * @param {string} path
 * @param {unknown} [body]
 * @returns {Promise<any>}
 */
export async function api(method, path, body) {
  try {
    return await call(method, path, body, token() || "");
  } catch (e) {
    if (e.status === 401) unauthorized();
    if (e.status === 403 && e.body && e.body.missing_permission) forbidden();
    throw e;
  }
}

/** @type {(path: string) => Promise<any>} */
export const get = (path) => api("GET", path);
/** @type {(path: string, body?: unknown) => Promise<any>} */
export const post = (path, body) => api("POST", path, body ?? {});

/**
 * Check a token before keeping it (sign-in): whom it signs in as.
 * @param {string} t
 * @returns {Promise<WhoAmI>}
 */
export async function checkToken(t) {
  return call("GET", "/whoami", undefined, t);
}

export const enc = encodeURIComponent;
