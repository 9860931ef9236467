//! Store records as the API's types. Times are RFC 3339 (UTC, ms).

use phoenix_api::{
    Agent, AgentConfig, AgentResources, AuditEntry, ConfigProblem, CreatedTarget, DesiredConfig,
    Push, PushCreated, PushStatus, PushTarget,
};
use phoenix_config::ConfigError;
use serde_json::{Map, Value};

use crate::fleet::rollout::PushCreated as Pushed;
use crate::rfc3339_ms;
use crate::store::{AgentRecord, AuditRecord, CredentialState, PushRecord, StatsRecord};

pub(super) fn opt_time(ms: Option<i64>) -> Option<String> {
    ms.map(rfc3339_ms)
}

pub fn agent(a: &AgentRecord) -> Agent {
    Agent {
        id: a.id.clone(),
        kind: a.kind,
        config_kind: a.config_kind,
        host_name: a.host_name.clone(),
        version: a.version.clone(),
        labels: a.labels.clone(),
        capabilities: a.capabilities.clone(),
        status: a.status,
        first_seen: rfc3339_ms(a.first_seen),
        last_seen: rfc3339_ms(a.last_seen),
        connected_at: opt_time(a.connected_at),
        config: AgentConfig {
            effective_hash: a.effective_hash.clone(),
            state: a.config_state.as_str().into(),
            error: a.config_error.clone(),
            applied_at: opt_time(a.applied_at_unix_s.map(|s| s.saturating_mul(1000))),
        },
        desired: a.desired_push_id.as_ref().map(|push_id| DesiredConfig {
            push_id: push_id.clone(),
            hash: a.desired_hash.clone(),
            state: a.desired_state,
        }),
        resources: AgentResources {
            cpu_seconds_total: a.cpu_seconds_total,
            resident_memory_bytes: a.resident_memory_bytes,
        },
        enrollment: CredentialState::enrollment(a.credential),
        revoked_at: opt_time(a.revoked_at),
        opamp: a.opamp.clone(),
    }
}

/// The stored stats report with the time it arrived; `None` when the
/// stored text is not a JSON object (the answer shows null, as before).
pub fn stats(s: &StatsRecord) -> Option<Map<String, Value>> {
    let Ok(Value::Object(mut body)) = serde_json::from_str(&s.stats) else {
        return None;
    };
    body.insert(
        "received_at".into(),
        Value::String(rfc3339_ms(s.received_at)),
    );
    Some(body)
}

/// The answer to a new push.
pub fn push_created(p: &Pushed, location: &str) -> PushCreated {
    PushCreated {
        id: p.id.clone(),
        hash: p.hash.clone(),
        created_at: rfc3339_ms(p.created_at),
        deadline: rfc3339_ms(p.deadline),
        targets: p
            .targets
            .iter()
            .map(|(agent_id, state)| CreatedTarget {
                agent_id: agent_id.clone(),
                state: *state,
            })
            .collect(),
        status_url: location.to_string(),
    }
}

/// A push and its rollout.
pub fn push(p: &PushRecord) -> Push {
    Push {
        id: p.id.clone(),
        hash: p.hash.clone(),
        selector: serde_json::from_str(&p.selector).ok(),
        template: p.template.clone(),
        config_kind: p.config_kind,
        content_type: p.content_type.clone(),
        file: p.file.clone(),
        author: p.author.clone(),
        created_at: rfc3339_ms(p.created_at),
        deadline: rfc3339_ms(p.deadline),
        status: PushStatus::of(&p.counts),
        complete: p.counts.complete(),
        counts: p.counts,
        total: p.counts.total(),
        targets: p
            .targets
            .iter()
            .map(|t| PushTarget {
                agent_id: t.agent_id.clone(),
                state: t.state,
                error: t.error.clone(),
                hash: t.reported_hash.clone(),
                updated_at: rfc3339_ms(t.updated_at),
            })
            .collect(),
    }
}

pub fn audit(a: &AuditRecord) -> AuditEntry {
    AuditEntry {
        id: a.id,
        at: rfc3339_ms(a.at),
        actor: a.actor.clone(),
        action: a.action.clone(),
        push_id: a.push_id.clone(),
        agent_id: a.agent_id.clone(),
        detail: serde_json::from_str(&a.detail).unwrap_or(Value::Null),
        prev_hash: a.prev_hash.clone(),
        hash: a.hash.clone(),
    }
}

/// The agent's config errors, shaped like its `/-/reload` answer.
pub fn config_problems(errors: &[ConfigError]) -> Vec<ConfigProblem> {
    errors
        .iter()
        .map(|e| ConfigProblem {
            component: e.component.clone(),
            field: e.field.clone(),
            message: e.message.clone(),
            line: e.location.map(|l| l.0),
            column: e.location.map(|l| l.1),
            text: e.to_string(),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn config_problems_carry_the_field_or_null() {
        let yaml = "\
receivers: { procfs: {} }
exporters:
  file:
    path: x
    rotation:
      max_megabytes: 0
";
        let errors = phoenix_config::AgentConfig::load_with_env(yaml, &|_| None)
            .unwrap_err()
            .0;
        let problems = serde_json::to_value(config_problems(&errors)).unwrap();
        let problems = problems.as_array().unwrap();
        let rotation = problems
            .iter()
            .find(|p| p["component"] == "exporters::file")
            .unwrap();
        assert_eq!(rotation["field"], "rotation.max_megabytes");
        assert_eq!(rotation["line"], 6);
        assert_eq!(
            rotation["message"],
            "rotation.max_megabytes: must be at least 1"
        );
        // Not a component's own problem (no service section): no field, said as null.
        let service = problems.iter().find(|p| p["component"].is_null()).unwrap();
        assert_eq!(service.get("field"), Some(&Value::Null));
    }
}
