//! The controller's own metrics on `/metrics`, in `phoenix-telemetry`'s
//! registry (one implementation of the Prometheus text format in the
//! workspace, shared with the agent).

use std::sync::Arc;

use phoenix_telemetry::process::OwnUsage;
use phoenix_telemetry::registry::{Counter, DURATION_BUCKETS, Gauge, Registry};

use crate::experiment::guardrails::Guardrail;
use crate::experiment::state::State;
use crate::store::TargetState;

/// Handles to every metric the controller records.
pub struct Metrics {
    registry: Registry,
    agents_online: Arc<Gauge>,
    agents_offline: Arc<Gauge>,
    open_streams: Arc<Gauge>,
    pub pushes_created: Arc<Counter>,
    pub pushes_rejected: Arc<Counter>,
    outcomes: Vec<(TargetState, Arc<Counter>)>,
    pub sessions_unauthenticated: Arc<Counter>,
    pub sessions_invalid: Arc<Counter>,
    /// A session claimed an enrolled instance id without its credential,
    /// or presented a credential bound to another id.
    pub sessions_wrong_credential: Arc<Counter>,
    pub sessions_revoked: Arc<Counter>,
    /// With `--client-ca`: the client certificate names another agent.
    pub sessions_certificate_mismatch: Arc<Counter>,
    /// The instance id is an agent's of the other protocol.
    pub sessions_other_kind: Arc<Counter>,
    /// Credentials issued to agents on first contact.
    pub credentials_issued: Arc<Counter>,
    pub agent_messages_hello: Arc<Counter>,
    pub agent_messages_status: Arc<Counter>,
    pub agent_messages_stats: Arc<Counter>,
    pub agent_messages_heartbeat: Arc<Counter>,
    pub agents_timed_out: Arc<Counter>,
    pub store_errors: Arc<Counter>,
    /// Experiment state transitions, by the state entered.
    transitions: Vec<(&'static str, Arc<Counter>)>,
    /// Guardrail breaches that aborted an experiment, by guardrail.
    breaches: Vec<(Guardrail, Arc<Counter>)>,
    /// Candidates disqualified by a guardrail, by guardrail.
    disqualifications: Vec<(Guardrail, Arc<Counter>)>,
    /// Interval stats stored as experiment measurements.
    pub experiment_measurements: Arc<Counter>,
    /// Promotions in waves that a wave stopped (and rolled back).
    pub promotion_stopped: Arc<Counter>,
    /// Audit entries written to `--audit-export`.
    pub audit_exported: Arc<Counter>,
    pub audit_export_errors: Arc<Counter>,
    /// Audit entries deleted past `--audit-retention`.
    pub audit_pruned: Arc<Counter>,
    /// OpAMP requests by the HTTP status answered.
    opamp_requests: Vec<(u16, Arc<Counter>)>,
    /// OpAMP answers with the ReportFullState flag.
    pub opamp_full_state_requested: Arc<Counter>,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    pub fn new() -> Metrics {
        let r = Registry::new();
        let agents = |status: &str| {
            r.gauge(
                "phoenix_controller_agents",
                "Known agents by status (online: a session with heartbeats in time).",
                &["status"],
                &[status],
            )
        };
        let message = |kind: &str| {
            r.counter(
                "phoenix_controller_agent_messages_total",
                "Messages received from agents, by type.",
                &["type"],
                &[kind],
            )
        };
        let refused = |reason: &str| {
            r.counter(
                "phoenix_controller_sessions_refused_total",
                "Agent sessions refused, by reason: unauthenticated (no or a wrong enrollment token, an unknown credential), invalid_argument (no valid Hello), wrong_credential (an enrolled instance id without its credential, or another id's credential), revoked, certificate_mismatch (the client certificate names another instance id), other_kind (an id of an agent of the other protocol, Phoenix or OpAMP; OpAMP requests count here too).",
                &["reason"],
                &[reason],
            )
        };
        // Every guardrail up front, so each label exists from the first scrape.
        let by_guardrail = |name: &str, help: &str, guardrails: &[Guardrail]| {
            guardrails
                .iter()
                .map(|g| (*g, r.counter(name, help, &["guardrail"], &[g.as_str()])))
                .collect()
        };
        let outcomes = [
            TargetState::Applied,
            TargetState::Failed,
            TargetState::Timeout,
            TargetState::Superseded,
        ]
        .into_iter()
        .map(|s| {
            (
                s,
                r.counter(
                    "phoenix_controller_push_outcomes_total",
                    "Final outcomes of push targets (one per agent and push).",
                    &["outcome"],
                    &[s.as_str()],
                ),
            )
        })
        .collect();
        let opamp_requests = [200, 400, 401, 403, 413, 415, 503]
            .into_iter()
            .map(|code: u16| {
                (
                    code,
                    r.counter(
                        "phoenix_controller_opamp_requests_total",
                        "OpAMP requests (HTTP transport) by the status answered: 200 recorded, 400 malformed (BadRequest), 401/403 refused (also in sessions_refused_total), 413 too large, 415 not protobuf or gzip, 503 store unavailable.",
                        &["code"],
                        &[&code.to_string()],
                    ),
                )
            })
            .collect();
        Metrics {
            opamp_requests,
            opamp_full_state_requested: r.counter(
                "phoenix_controller_opamp_full_state_requested_total",
                "OpAMP answers that asked the agent for its full state (no state for its uid, or a sequence gap).",
                &[],
                &[],
            ),
            agents_online: agents("online"),
            agents_offline: agents("offline"),
            open_streams: r.gauge(
                "phoenix_controller_open_streams",
                "Agent sessions (gRPC streams) open now.",
                &[],
                &[],
            ),
            pushes_created: r.counter(
                "phoenix_controller_pushes_created_total",
                "Pushes created.",
                &[],
                &[],
            ),
            pushes_rejected: r.counter(
                "phoenix_controller_pushes_rejected_total",
                "Push requests refused (invalid config, no matching agent, ...).",
                &[],
                &[],
            ),
            outcomes,
            sessions_unauthenticated: refused("unauthenticated"),
            sessions_invalid: refused("invalid_argument"),
            sessions_wrong_credential: refused("wrong_credential"),
            sessions_revoked: refused("revoked"),
            sessions_certificate_mismatch: refused("certificate_mismatch"),
            sessions_other_kind: refused("other_kind"),
            credentials_issued: r.counter(
                "phoenix_controller_agent_credentials_issued_total",
                "Credentials issued to agents admitted by the enrollment token (first contact, or a pending credential issued again).",
                &[],
                &[],
            ),
            agent_messages_hello: message("hello"),
            agent_messages_status: message("config_status"),
            agent_messages_stats: message("stats"),
            agent_messages_heartbeat: message("heartbeat"),
            agents_timed_out: r.counter(
                "phoenix_controller_agent_timeouts_total",
                "Sessions closed because the agent sent nothing within the heartbeat timeout.",
                &[],
                &[],
            ),
            store_errors: r.counter(
                "phoenix_controller_store_errors_total",
                "Store operations that failed.",
                &[],
                &[],
            ),
            // Every state up front, so each label exists from the first scrape.
            transitions: State::ALL
                .iter()
                .map(|s| s.as_str())
                .map(|s| {
                    (
                        s,
                        r.counter(
                            "phoenix_controller_experiment_transitions_total",
                            "Experiment state transitions, by the state entered.",
                            &["state"],
                            &[s],
                        ),
                    )
                })
                .collect(),
            breaches: by_guardrail(
                "phoenix_controller_experiment_guardrail_breaches_total",
                "Guardrail breaches that aborted and rolled back an experiment, by guardrail.",
                &Guardrail::ALL,
            ),
            disqualifications: by_guardrail(
                "phoenix_controller_experiment_disqualifications_total",
                "Candidates a guardrail disqualified (the experiment goes on without them), by guardrail.",
                &Guardrail::PER_CANDIDATE,
            ),
            experiment_measurements: r.counter(
                "phoenix_controller_experiment_measurements_total",
                "Per-variant interval measurements stored for running experiments.",
                &[],
                &[],
            ),
            promotion_stopped: r.counter(
                "phoenix_controller_promotions_stopped_total",
                "Promotions in waves that a wave stopped; the experiment was rolled back.",
                &[],
                &[],
            ),
            audit_exported: r.counter(
                "phoenix_controller_audit_exported_total",
                "Audit entries written to --audit-export.",
                &[],
                &[],
            ),
            audit_export_errors: r.counter(
                "phoenix_controller_audit_export_errors_total",
                "Rounds of the audit export that failed (the entries are written again on the next).",
                &[],
                &[],
            ),
            audit_pruned: r.counter(
                "phoenix_controller_audit_pruned_total",
                "Audit entries deleted past --audit-retention.",
                &[],
                &[],
            ),
            registry: r,
        }
    }

    /// Count an experiment entering `state`.
    pub fn transition(&self, state: &str) {
        if let Some((_, c)) = self.transitions.iter().find(|(s, _)| *s == state) {
            c.inc();
        }
    }

    /// Count a guardrail breach that aborted an experiment.
    pub fn breach(&self, guardrail: Guardrail) {
        count(&self.breaches, guardrail);
    }

    /// Count a candidate a guardrail disqualified.
    pub fn disqualification(&self, guardrail: Guardrail) {
        count(&self.disqualifications, guardrail);
    }

    /// Count a target reaching a final state.
    pub fn outcome(&self, state: TargetState) {
        if let Some((_, c)) = self.outcomes.iter().find(|(s, _)| *s == state) {
            c.inc();
        }
    }

    /// Count an API request refused for its credential, by a bounded
    /// reason (`missing`, `unknown_token`, `expired`, `rate_limited`, ...).
    pub fn auth_failure(&self, reason: &'static str) {
        self.registry
            .counter(
                "phoenix_controller_api_auth_failures_total",
                "API requests whose credential was missing or refused, by reason (missing, not_bearer, short_token, unknown_token, rate_limited, and the OIDC reasons: malformed, unknown_key, bad_signature, expired, wrong_issuer, wrong_audience, bad_claim, no_grant, keys_unavailable).",
                &["reason"],
                &[reason],
            )
            .inc();
    }

    /// Count a reload of the auth file.
    pub fn auth_reload(&self, ok: bool) {
        self.registry
            .counter(
                "phoenix_controller_auth_reloads_total",
                "Reloads of the auth file (SIGHUP or a change), by result; a failed one keeps the principals in force.",
                &["result"],
                &[if ok { "ok" } else { "error" }],
            )
            .inc();
    }

    /// Record one HTTP request. `route` is the route template, never the
    /// raw path, so the label set stays bounded whatever clients send.
    pub fn http_request(&self, route: &str, method: &str, status: u16, seconds: f64) {
        let code = status.to_string();
        self.registry
            .histogram(
                "phoenix_controller_http_request_duration_seconds",
                "HTTP API request latency, by route, method and status code.",
                DURATION_BUCKETS,
                &["route", "method", "code"],
                &[route, method, &code],
            )
            .observe(seconds);
    }

    /// The Prometheus text: the registry, then the process's own usage.
    /// Count an OpAMP answer by its status (another status counts as 400).
    pub fn opamp_response(&self, code: u16) {
        let counter = self
            .opamp_requests
            .iter()
            .find(|(c, _)| *c == code)
            .or_else(|| self.opamp_requests.iter().find(|(c, _)| *c == 400));
        if let Some((_, counter)) = counter {
            counter.inc();
        }
    }

    pub fn render(&self, online: u64, offline: u64, open_streams: usize) -> String {
        self.agents_online.set(online as f64);
        self.agents_offline.set(offline as f64);
        self.open_streams.set(open_streams as f64);
        let mut out = self.registry.render();
        if let Some(usage) = OwnUsage::read() {
            usage.render(&mut out);
        }
        out
    }
}

fn count(counters: &[(Guardrail, Arc<Counter>)], guardrail: Guardrail) {
    if let Some((_, c)) = counters.iter().find(|(g, _)| *g == guardrail) {
        c.inc();
    }
}
