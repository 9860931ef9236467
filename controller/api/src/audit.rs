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
    /// What the action was about; its shape depends on the action. For an
    /// API request, `request` holds its id, the client's address and the
    /// caller's note.
    pub detail: serde_json::Value,
    /// The hash chain: the previous entry's hash and this one's (absent for
    /// entries from before the chain). An exported copy can be verified
    /// with them, and shows a truncation of the store's newest entries.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prev_hash: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hash: Option<String>,
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
    /// Retention deleted every entry up to this id; the chain holds from
    /// the entry after it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pruned_through: Option<i64>,
    /// The first entry that does not hold.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub first_broken: Option<BrokenEntry>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BrokenEntry {
    pub id: i64,
    pub reason: String,
}
