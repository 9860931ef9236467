//! Store records as the API's JSON. Times are RFC 3339 (UTC, ms).

use phoenix_config::ConfigError;
use serde_json::{Value, json};

use crate::fleet::rollout::PushCreated;
use crate::rfc3339_ms;
use crate::store::{AgentRecord, AuditRecord, PushRecord, StatsRecord};

fn opt_time(ms: Option<i64>) -> Value {
    ms.map(|m| Value::String(rfc3339_ms(m)))
        .unwrap_or(Value::Null)
}

/// An agent; `stats` is given (possibly empty) for the single-agent view.
pub fn agent(a: &AgentRecord, stats: Option<Option<StatsRecord>>) -> Value {
    let desired = a.desired_push_id.as_ref().map(|push_id| {
        json!({
            "push_id": push_id,
            "hash": a.desired_hash,
            "state": a.desired_state.map(|s| s.as_str()),
        })
    });
    let mut v = json!({
        "id": a.id,
        "host_name": a.host_name,
        "version": a.version,
        "labels": a.labels,
        "capabilities": a.capabilities,
        "status": a.status.as_str(),
        "first_seen": rfc3339_ms(a.first_seen),
        "last_seen": rfc3339_ms(a.last_seen),
        "connected_at": opt_time(a.connected_at),
        "config": {
            "effective_hash": a.effective_hash,
            "state": a.config_state,
            "error": a.config_error,
            "applied_at": opt_time(a.applied_at_unix_s.map(|s| s.saturating_mul(1000))),
        },
        "desired": desired,
        "resources": {
            "cpu_seconds_total": a.cpu_seconds_total,
            "resident_memory_bytes": a.resident_memory_bytes,
        },
    });
    if let Some(stats) = stats {
        v["stats"] = match stats {
            Some(s) => {
                let mut body: Value = serde_json::from_str(&s.stats).unwrap_or(Value::Null);
                if let Value::Object(m) = &mut body {
                    m.insert(
                        "received_at".into(),
                        Value::String(rfc3339_ms(s.received_at)),
                    );
                }
                body
            }
            None => Value::Null,
        };
    }
    v
}

/// The answer to a new push.
pub fn push_created(p: &PushCreated, location: &str) -> Value {
    let targets: Vec<Value> = p
        .targets
        .iter()
        .map(|(agent, state)| json!({ "agent_id": agent, "state": state.as_str() }))
        .collect();
    json!({
        "id": p.id,
        "hash": p.hash,
        "created_at": rfc3339_ms(p.created_at),
        "deadline": rfc3339_ms(p.deadline),
        "targets": targets,
        "status_url": location,
    })
}

/// A push and its rollout. `status` sums it up: `in_progress` while any
/// target is pending or applying, then `applied` when every target that
/// was not superseded applied, else `failed` (some failed or timed out).
pub fn push(p: &PushRecord) -> Value {
    let c = &p.counts;
    let status = if !c.complete() {
        "in_progress"
    } else if c.failed + c.timeout == 0 {
        "applied"
    } else {
        "failed"
    };
    let mut v = json!({
        "id": p.id,
        "hash": p.hash,
        "selector": serde_json::from_str::<Value>(&p.selector).unwrap_or(Value::Null),
        "template": p.template,
        "author": p.author,
        "created_at": rfc3339_ms(p.created_at),
        "deadline": rfc3339_ms(p.deadline),
        "status": status,
        "complete": c.complete(),
        "counts": c,
        "total": c.total(),
    });
    if !p.targets.is_empty() {
        v["targets"] = p
            .targets
            .iter()
            .map(|t| {
                json!({
                    "agent_id": t.agent_id,
                    "state": t.state.as_str(),
                    "error": t.error,
                    "hash": t.reported_hash,
                    "updated_at": rfc3339_ms(t.updated_at),
                })
            })
            .collect();
    }
    v
}

pub fn audit(a: &AuditRecord) -> Value {
    json!({
        "id": a.id,
        "at": rfc3339_ms(a.at),
        "actor": a.actor,
        "action": a.action,
        "push_id": a.push_id,
        "agent_id": a.agent_id,
        "detail": serde_json::from_str::<Value>(&a.detail).unwrap_or(Value::Null),
    })
}

/// The agent's config errors, shaped like its `/-/reload` answer.
pub fn config_errors(errors: &[ConfigError]) -> Vec<Value> {
    errors
        .iter()
        .map(|e| {
            json!({
                "component": e.component,
                "message": e.message,
                "line": e.location.map(|l| l.0),
                "column": e.location.map(|l| l.1),
                "text": e.to_string(),
            })
        })
        .collect()
}
