//! `/api/v1/agents`.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::pushes::PushTargetState;

/// Online while a session is open and heartbeats arrive in time.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AgentStatus {
    Online,
    Offline,
}

impl AgentStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            AgentStatus::Online => "online",
            AgentStatus::Offline => "offline",
        }
    }

    pub fn parse(s: &str) -> Option<AgentStatus> {
        match s {
            "online" => Some(AgentStatus::Online),
            "offline" => Some(AgentStatus::Offline),
            _ => None,
        }
    }
}

/// `GET /agents`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AgentList {
    pub agents: Vec<Agent>,
}

/// An agent as listed.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Agent {
    /// For an OpAMP agent, its instance uid as a UUID string.
    pub id: String,
    /// Which protocol the agent speaks.
    #[serde(default)]
    pub kind: AgentKind,
    /// Which configs a push may send it (see [`ConfigKind`]).
    #[serde(default)]
    pub config_kind: ConfigKind,
    pub host_name: String,
    pub version: String,
    pub labels: BTreeMap<String, String>,
    pub capabilities: Vec<String>,
    pub status: AgentStatus,
    pub first_seen: String,
    pub last_seen: String,
    /// Set while online.
    pub connected_at: Option<String>,
    /// What the agent reports it runs.
    pub config: AgentConfig,
    /// What the controller wants it to run, once something was pushed.
    pub desired: Option<DesiredConfig>,
    pub resources: AgentResources,
    /// Whether the agent holds its own credential, or was revoked.
    pub enrollment: AgentEnrollment,
    /// Set once revoked: no session for this instance id is admitted again.
    pub revoked_at: Option<String>,
    /// What an OpAMP agent reported (kind `opamp` only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub opamp: Option<OpampAgent>,
}

/// The protocol an agent speaks to the controller.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AgentKind {
    /// A `phoenix-agent` on the native gRPC protocol.
    #[default]
    Phoenix,
    /// Any agent speaking OpAMP (an OpenTelemetry Collector with its OpAMP
    /// extension, a supervisor, an SDK's OpAMP client).
    Opamp,
}

impl AgentKind {
    pub fn as_str(self) -> &'static str {
        match self {
            AgentKind::Phoenix => "phoenix",
            AgentKind::Opamp => "opamp",
        }
    }

    pub fn parse(s: &str) -> Option<AgentKind> {
        [AgentKind::Phoenix, AgentKind::Opamp]
            .into_iter()
            .find(|k| k.as_str() == s)
    }
}

/// What kind of config an agent runs, and so which pushes reach it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ConfigKind {
    /// A Phoenix agent config: a native Phoenix agent, or a Phoenix agent
    /// speaking OpAMP (identifying attribute `service.name` =
    /// `phoenix-agent`). Pushes are validated with the agent's loader.
    #[default]
    Phoenix,
    /// Any other OpAMP agent's config: the controller does not parse it.
    Opaque,
}

impl ConfigKind {
    pub fn as_str(self) -> &'static str {
        match self {
            ConfigKind::Phoenix => "phoenix",
            ConfigKind::Opaque => "opaque",
        }
    }

    /// The one that is not this one.
    pub fn other(self) -> ConfigKind {
        match self {
            ConfigKind::Phoenix => ConfigKind::Opaque,
            ConfigKind::Opaque => ConfigKind::Phoenix,
        }
    }

    pub fn parse(s: &str) -> Option<ConfigKind> {
        [ConfigKind::Phoenix, ConfigKind::Opaque]
            .into_iter()
            .find(|k| k.as_str() == s)
    }
}

/// The state an OpAMP agent reported, each part as of its latest report
/// (OpAMP agents leave out what did not change; null: never reported).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct OpampAgent {
    /// `AgentToServer.capabilities` as sent; `capabilities` on the agent
    /// lists the bits by name.
    pub capability_bits: u64,
    pub description: Option<OpampDescription>,
    pub health: Option<ComponentHealth>,
    pub effective_config: Option<EffectiveConfig>,
    pub remote_config_status: Option<RemoteConfigStatus>,
}

/// `AgentDescription`: every attribute with its value as a string (the
/// agent's labels are made from these, see docs/CONTROLLER.md).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct OpampDescription {
    pub identifying: BTreeMap<String, String>,
    pub non_identifying: BTreeMap<String, String>,
}

/// `ComponentHealth`: the agent's (top level) and its components' (nested).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ComponentHealth {
    pub healthy: bool,
    pub status: String,
    pub last_error: String,
    /// Null when the component is not running.
    pub start_time: Option<String>,
    pub status_time: Option<String>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub components: BTreeMap<String, ComponentHealth>,
}

/// `EffectiveConfig`: the config files the agent runs, by name.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct EffectiveConfig {
    pub files: BTreeMap<String, ConfigFile>,
}

/// One config file (or section) as the agent reported it.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ConfigFile {
    /// As the agent labelled it (`text/yaml`, ...); may be empty.
    pub content_type: String,
    /// The body: as text when it is UTF-8, else base64.
    pub body: String,
    /// `utf-8` or `base64`: how `body` holds the bytes.
    pub encoding: String,
}

/// `RemoteConfigStatus`: where the agent stands with the last remote
/// config it was offered.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct RemoteConfigStatus {
    /// Hex.
    pub last_remote_config_hash: String,
    /// `unset`, `applied`, `applying` or `failed`.
    pub status: String,
    pub error_message: String,
}

/// Where an agent's own credential stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AgentEnrollment {
    /// Never issued a credential (known from before credentials existed).
    None,
    /// A credential was issued; the agent has not yet said it kept it, so
    /// the enrollment token may still enroll this instance id again.
    Pending,
    /// Only its credential opens a session for this instance id.
    Enrolled,
    /// Refused for good; the agent needs a new instance id.
    Revoked,
}

impl AgentEnrollment {
    pub fn as_str(self) -> &'static str {
        match self {
            AgentEnrollment::None => "none",
            AgentEnrollment::Pending => "pending",
            AgentEnrollment::Enrolled => "enrolled",
            AgentEnrollment::Revoked => "revoked",
        }
    }
}

/// `POST /agents/{id}/revoke` (the body may be empty).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct RevokeAgentRequest {
    /// A free-text note for the audit log (who acts is the signed-in
    /// principal, never a body field; `author` is the old name).
    #[serde(default, alias = "author")]
    pub note: Option<String>,
    /// Why, for the audit log.
    #[serde(default)]
    pub reason: Option<String>,
}

/// The answer to a revocation.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AgentRevoked {
    pub id: String,
    pub revoked_at: String,
    /// Whether a session was open (it is closed now).
    pub session_closed: bool,
    /// It was revoked before: nothing changed.
    pub already_revoked: bool,
}

/// `GET /agents/{id}`: the agent and its latest interval stats.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AgentDetail {
    #[serde(flatten)]
    pub agent: Agent,
    /// The agent's latest stats report as it sent it (pipelines, their
    /// series, datapoints, bytes, comparisons) with `received_at`; null
    /// before the first.
    pub stats: Option<serde_json::Map<String, serde_json::Value>>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AgentConfig {
    pub effective_hash: String,
    /// As the agent reported it (`applied`, `failed`, ...); `unspecified` before any report.
    pub state: String,
    pub error: String,
    pub applied_at: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DesiredConfig {
    pub push_id: String,
    pub hash: Option<String>,
    /// The agent's state in that push.
    pub state: Option<PushTargetState>,
}

/// The agent process's own cost, as last reported.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AgentResources {
    pub cpu_seconds_total: Option<f64>,
    pub resident_memory_bytes: Option<i64>,
}
