//! `/api/v1/audit`.

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AuditEntry {
    pub id: i64,
    pub at: String,
    pub actor: String,
    pub action: String,
    pub push_id: Option<String>,
    pub agent_id: Option<String>,
    /// What the action was about; its shape depends on the action.
    pub detail: serde_json::Value,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AuditLog {
    pub entries: Vec<AuditEntry>,
}

/// `GET /audit/verify`: the hash chain, walked from the first entry.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AuditVerification {
    /// True when every chained entry holds.
    pub intact: bool,
    /// Entries whose hash was checked.
    pub chained: u64,
    /// Entries written before the chain existed, at the start of the log.
    pub unchained: u64,
    /// The first entry that does not hold.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub first_broken: Option<BrokenEntry>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BrokenEntry {
    pub id: i64,
    pub reason: String,
}
