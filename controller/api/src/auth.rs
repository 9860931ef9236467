//! `GET /whoami`: the signed-in principal and what it may do.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct WhoAmI {
    /// The principal's name, as the audit log records it (`anonymous` for
    /// a read let through by `--api-read-open`).
    pub name: String,
    /// `viewer`, `operator` or `admin`.
    pub role: String,
    /// How it signed in: `token`, `oidc` or `open`.
    pub method: String,
    /// Every permission the role grants (`read`, `audit.read`,
    /// `pushes.create`, `experiments.write`, `agents.revoke`).
    pub permissions: Vec<String>,
    /// What the principal is limited to; absent: the whole fleet.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scope: Option<ScopeView>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ScopeView {
    /// Agents carrying every one of these labels.
    pub labels: BTreeMap<String, String>,
    /// When present, only these templates may be pushed (and no raw YAML).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub templates: Option<Vec<String>>,
}
