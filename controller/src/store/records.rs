//! What goes in and out of the store, as plain Rust values.

use std::collections::BTreeMap;

// The states and counts the API shows are the API's types.
pub use phoenix_api::{
    AgentKind, AgentStatus, ConfigKind, PushCounts as TargetCounts, PushTargetState as TargetState,
};

/// The state an agent reports for a config (the proto's ConfigState).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReportedState {
    Unspecified,
    Applied,
    Applying,
    Failed,
}

impl ReportedState {
    pub const ALL: [ReportedState; 4] = [
        ReportedState::Unspecified,
        ReportedState::Applied,
        ReportedState::Applying,
        ReportedState::Failed,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            ReportedState::Unspecified => "unspecified",
            ReportedState::Applied => "applied",
            ReportedState::Applying => "applying",
            ReportedState::Failed => "failed",
        }
    }

    pub fn parse(s: &str) -> Option<ReportedState> {
        ReportedState::ALL.into_iter().find(|r| r.as_str() == s)
    }
}

/// A ConfigStatus, checked and converted.
#[derive(Debug, Clone, PartialEq)]
pub struct StatusReport {
    pub push_id: String,
    pub hash: String,
    pub state: ReportedState,
    pub error: String,
    pub effective_hash: String,
    pub applied_at_unix_s: u64,
}

/// A Hello, checked and converted.
#[derive(Debug, Clone, PartialEq)]
pub struct AgentHello {
    pub id: String,
    pub host_name: String,
    pub version: String,
    pub labels: BTreeMap<String, String>,
    pub capabilities: Vec<String>,
    pub status: Option<StatusReport>,
    /// What a remote config may do on the agent's node; None from agents
    /// that do not report one.
    pub policy: Option<AgentPolicy>,
}

/// An agent's reported policy for remote configs, kept as JSON with the
/// agent so that a push is checked against it even while it is offline.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct AgentPolicy {
    pub policy: phoenix_config::RemotePolicy,
    /// The node's `procfs.root_path`.
    pub root_path: std::path::PathBuf,
    /// The node's `service.telemetry` (None: not reported; a remote config
    /// must then leave it out).
    #[serde(default)]
    pub telemetry: Option<phoenix_config::TelemetryConfig>,
}

/// A config to send to an agent.
#[derive(Debug, Clone, PartialEq)]
pub struct Desired {
    pub push_id: String,
    pub hash: String,
    /// Empty for a revert.
    pub yaml: String,
    /// Back to the agent's local config (`hash` is that config's hash).
    pub revert_to_local: bool,
    pub experiment_id: String,
    /// How an OpAMP agent receives it: the content type and the file
    /// name in its config map.
    pub content_type: String,
    pub file: String,
}

/// What a Hello changed.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct HelloOutcome {
    pub changes: Vec<TargetChange>,
    /// Send this config now: the agent does not run its desired config.
    pub resend: Option<Desired>,
}

/// One rollout target moved to `state`.
#[derive(Debug, Clone, PartialEq)]
pub struct TargetChange {
    pub push_id: String,
    pub agent_id: String,
    pub state: TargetState,
}

/// Which agents a push is for: every agent with all these labels, or these ids.
#[derive(Debug, Clone, PartialEq)]
pub enum Selector {
    Labels(BTreeMap<String, String>),
    Agents(Vec<String>),
}

impl Selector {
    /// The API's shape: `{"labels": {...}}` or `{"agents": [...]}`.
    pub fn to_api(&self) -> phoenix_api::PushSelector {
        match self {
            Selector::Labels(l) => phoenix_api::PushSelector {
                labels: Some(l.clone()),
                agents: None,
            },
            Selector::Agents(a) => phoenix_api::PushSelector {
                labels: None,
                agents: Some(a.clone()),
            },
        }
    }
}

/// Who did something, as the audit log keeps it: a principal's name (or
/// a reserved system name, `crate::auth::system`), and for an API request
/// its id, the client's address and the caller's free-text note.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Actor {
    pub name: String,
    pub request: Option<RequestInfo>,
}

/// The request an action came from.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct RequestInfo {
    pub id: String,
    pub client: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
}

impl Actor {
    /// The controller's own action, under a reserved name.
    pub fn system(name: impl Into<String>) -> Actor {
        Actor {
            name: name.into(),
            request: None,
        }
    }
}

/// A push about to be created.
#[derive(Debug, Clone)]
pub struct NewPush {
    pub id: String,
    pub selector: Selector,
    pub yaml: String,
    pub hash: String,
    pub template: Option<String>,
    pub actor: Actor,
    /// Unix ms after which open targets become `timeout`.
    pub deadline: i64,
    /// `yaml` is empty and `hash` names the agents' local config.
    pub revert_to_local: bool,
    pub experiment_id: Option<String>,
    /// Every target must have this config kind, or nothing is stored.
    pub config_kind: ConfigKind,
    /// What OpAMP agents receive it as (see [`Desired`]).
    pub content_type: String,
    pub file: String,
    /// Every target must carry these labels (the caller's scope), or
    /// nothing is stored.
    pub within: Option<BTreeMap<String, String>>,
}

/// An agent as stored.
#[derive(Debug, Clone, PartialEq)]
pub struct AgentRecord {
    pub id: String,
    pub kind: AgentKind,
    pub config_kind: ConfigKind,
    pub host_name: String,
    pub version: String,
    pub labels: BTreeMap<String, String>,
    pub capabilities: Vec<String>,
    pub status: AgentStatus,
    pub effective_hash: String,
    pub config_state: ReportedState,
    pub config_error: String,
    pub applied_at_unix_s: Option<i64>,
    pub desired_push_id: Option<String>,
    pub desired_hash: Option<String>,
    /// The agent's state in the push of its desired config.
    pub desired_state: Option<TargetState>,
    pub first_seen: i64,
    pub last_seen: i64,
    pub connected_at: Option<i64>,
    pub cpu_seconds_total: Option<f64>,
    pub resident_memory_bytes: Option<i64>,
    /// `None` before any credential was issued.
    pub credential: Option<super::CredentialState>,
    pub revoked_at: Option<i64>,
    /// What an OpAMP agent reported (kind `opamp` only).
    pub opamp: Option<phoenix_api::OpampAgent>,
}

/// One OpAMP status report, checked and converted. `None` parts were left
/// out by the agent (unchanged since its previous report).
#[derive(Debug, Clone, PartialEq)]
pub struct OpampReport {
    /// The instance uid as a UUID string.
    pub id: String,
    pub capability_bits: u64,
    /// The bits by name.
    pub capabilities: Vec<String>,
    pub description: Option<OpampDescribed>,
    pub health: Option<phoenix_api::ComponentHealth>,
    pub effective_config: Option<phoenix_api::EffectiveConfig>,
    pub remote_config_status: Option<phoenix_api::RemoteConfigStatus>,
}

/// An `AgentDescription` and what the fleet makes of it.
#[derive(Debug, Clone, PartialEq)]
pub struct OpampDescribed {
    pub description: phoenix_api::OpampDescription,
    /// From `host.name`.
    pub host_name: String,
    /// From `service.version`.
    pub version: String,
    pub labels: BTreeMap<String, String>,
    /// From `service.name`: a Phoenix agent's own OpAMP client takes
    /// Phoenix configs.
    pub config_kind: ConfigKind,
}

/// The latest IntervalStats of an agent.
#[derive(Debug, Clone, PartialEq)]
pub struct StatsRecord {
    pub received_at: i64,
    /// JSON.
    pub stats: String,
}

/// A push and its rollout.
#[derive(Debug, Clone, PartialEq)]
pub struct PushRecord {
    pub id: String,
    /// JSON, as requested.
    pub selector: String,
    pub hash: String,
    pub template: Option<String>,
    pub config_kind: ConfigKind,
    pub content_type: String,
    pub file: String,
    pub author: String,
    pub created_at: i64,
    pub deadline: i64,
    pub counts: TargetCounts,
    /// Empty in listings.
    pub targets: Vec<TargetRecord>,
}

/// One agent's state in a push.
#[derive(Debug, Clone, PartialEq)]
pub struct TargetRecord {
    pub agent_id: String,
    pub state: TargetState,
    pub error: String,
    pub reported_hash: String,
    pub updated_at: i64,
}

/// One audit log entry.
#[derive(Debug, Clone, PartialEq)]
pub struct AuditRecord {
    pub id: i64,
    pub at: i64,
    pub actor: String,
    pub action: String,
    pub push_id: Option<String>,
    pub agent_id: Option<String>,
    /// JSON.
    pub detail: String,
    /// The chain: the previous entry's hash and this one's (`None` for
    /// entries from before the chain).
    pub prev_hash: Option<String>,
    pub hash: Option<String>,
}
