//! `/api/v1/pushes`: a config pushed to the agents a selector names, and
//! its rollout agent by agent.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::agents::ConfigKind;

/// The content type of a push that names none (OpAMP's
/// `AgentConfigFile.content_type`).
pub const DEFAULT_CONTENT_TYPE: &str = "text/yaml";

/// Where one agent is in one push's rollout.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum PushTargetState {
    /// Not sent yet: the agent is offline (it gets the push on reconnect).
    Pending,
    /// Sent; no final answer yet.
    Applying,
    /// The agent runs the pushed config (its hash checked).
    Applied,
    /// The agent refused it, with its error.
    Failed,
    /// No final answer before the push's deadline. A late answer still
    /// moves the target to applied or failed.
    Timeout,
    /// A newer push to the same agent replaced this one before it finished.
    Superseded,
}

impl PushTargetState {
    pub const ALL: [PushTargetState; 6] = [
        PushTargetState::Pending,
        PushTargetState::Applying,
        PushTargetState::Applied,
        PushTargetState::Failed,
        PushTargetState::Timeout,
        PushTargetState::Superseded,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            PushTargetState::Pending => "pending",
            PushTargetState::Applying => "applying",
            PushTargetState::Applied => "applied",
            PushTargetState::Failed => "failed",
            PushTargetState::Timeout => "timeout",
            PushTargetState::Superseded => "superseded",
        }
    }

    pub fn parse(s: &str) -> Option<PushTargetState> {
        PushTargetState::ALL.into_iter().find(|t| t.as_str() == s)
    }

    /// No further answer is expected.
    pub fn is_final(self) -> bool {
        !matches!(self, PushTargetState::Pending | PushTargetState::Applying)
    }
}

/// Which agents: every agent with all these labels, or these ids. A
/// request gives exactly one of the two; a push shows the one it was given.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PushSelector {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub labels: Option<BTreeMap<String, String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub agents: Option<Vec<String>>,
}

/// `POST /pushes`: the config as `yaml` or a `template` name (one of them).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CreatePushRequest {
    pub selector: PushSelector,
    /// The config's text (for an `opaque` push, whatever the agents take).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub yaml: Option<String>,
    /// A template (a Phoenix config; `phoenix` pushes only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub template: Option<String>,
    /// Which agents the config is for; every target must have this
    /// config kind. Default `phoenix`.
    #[serde(default)]
    pub config_kind: ConfigKind,
    /// OpAMP's content type of the config file; default `text/yaml`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub content_type: Option<String>,
    /// The config file's name in OpAMP's config map; default empty (the
    /// agent's only config file).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub file: Option<String>,
    /// A free-text note for the audit log. Who pushes is the signed-in
    /// principal, never a body field (`author` is the old name of this).
    #[serde(default, alias = "author", skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
}

/// The answer to `POST /pushes` (202, `Location: status_url`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PushCreated {
    pub id: String,
    pub hash: String,
    pub created_at: String,
    pub deadline: String,
    /// Applying when sent at once, pending while the agent is offline.
    pub targets: Vec<CreatedTarget>,
    pub status_url: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CreatedTarget {
    pub agent_id: String,
    pub state: PushTargetState,
}

/// `GET /pushes`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PushList {
    pub pushes: Vec<Push>,
}

/// A push and its rollout (`GET /pushes/{id}`; in lists without `targets`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Push {
    pub id: String,
    pub hash: String,
    /// As requested; null if the stored one cannot be read.
    pub selector: Option<PushSelector>,
    pub template: Option<String>,
    #[serde(default)]
    pub config_kind: ConfigKind,
    /// What OpAMP agents receive the config as: its content type and
    /// file name in the config map (empty: the agent's only file).
    #[serde(default)]
    pub content_type: String,
    #[serde(default)]
    pub file: String,
    pub author: String,
    pub created_at: String,
    pub deadline: String,
    pub status: PushStatus,
    /// Every target has a final state.
    pub complete: bool,
    pub counts: PushCounts,
    pub total: u64,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub targets: Vec<PushTarget>,
}

/// A push summed up: `in_progress` while any target is pending or
/// applying, then `applied` when every target that was not superseded
/// applied, else `failed` (some failed or timed out).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PushStatus {
    InProgress,
    Applied,
    Failed,
}

impl PushStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            PushStatus::InProgress => "in_progress",
            PushStatus::Applied => "applied",
            PushStatus::Failed => "failed",
        }
    }

    pub fn of(counts: &PushCounts) -> PushStatus {
        if !counts.complete() {
            PushStatus::InProgress
        } else if counts.failed + counts.timeout == 0 {
            PushStatus::Applied
        } else {
            PushStatus::Failed
        }
    }
}

/// How many targets of a push are in each state.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct PushCounts {
    pub pending: u64,
    pub applying: u64,
    pub applied: u64,
    pub failed: u64,
    pub timeout: u64,
    pub superseded: u64,
}

impl PushCounts {
    pub fn total(&self) -> u64 {
        self.pending + self.applying + self.applied + self.failed + self.timeout + self.superseded
    }

    /// Every target has a final state.
    pub fn complete(&self) -> bool {
        self.pending + self.applying == 0
    }
}

/// One agent in a push.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PushTarget {
    pub agent_id: String,
    pub state: PushTargetState,
    /// The agent's refusal, when it failed.
    pub error: String,
    /// The hash the agent reported.
    pub hash: String,
    pub updated_at: String,
}
