//! Protocol messages to store values, with limits: an agent is trusted to
//! be who its token says, not to send well-formed data.

use std::collections::BTreeMap;
use std::path::PathBuf;

use phoenix_proto::v1::{ConfigState, ConfigStatus, Hello, IntervalStats, RemotePolicy};
use serde_json::{Value, json};

use crate::store::{AgentHello, AgentPolicy, ReportedState, StatusReport};

const MAX_ID: usize = 256;
const MAX_TEXT: usize = 256;
const MAX_LABELS: usize = 64;
const MAX_LABEL_KEY: usize = 128;
const MAX_CAPABILITIES: usize = 64;
const MAX_POLICY_ENTRIES: usize = 64;
const MAX_PATH: usize = 4096;
const MAX_HASH: usize = 128;
/// An error message is kept up to this size (it can list many validation
/// errors); the rest is cut, not refused.
const MAX_ERROR: usize = 64 * 1024;
/// Pipelines kept from one stats report.
const MAX_PIPELINES: usize = 256;

fn no_control(s: &str) -> bool {
    !s.chars().any(char::is_control)
}

fn text(field: &str, s: String, max: usize) -> Result<String, String> {
    if s.len() > max {
        return Err(format!("{field} is longer than {max} bytes"));
    }
    if !no_control(&s) {
        return Err(format!("{field} contains control characters"));
    }
    Ok(s)
}

/// `s` cut to at most `max` bytes (on a character boundary), marked as cut.
pub(crate) fn truncate(mut s: String, max: usize) -> String {
    if s.len() > max {
        let mut cut = max;
        while !s.is_char_boundary(cut) {
            cut -= 1;
        }
        s.truncate(cut);
        s.push_str(" …(truncated)");
    }
    s
}

/// Whether `k` may be a label key: 1-128 characters of `A-Z a-z 0-9 . _ - /`.
pub(crate) fn valid_label_key(k: &str) -> bool {
    !k.is_empty()
        && k.len() <= MAX_LABEL_KEY
        && k.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"._-/".contains(&b))
}

/// Check and convert a Hello.
pub fn hello_from_proto(h: Hello) -> Result<AgentHello, String> {
    let id = text("instance_id", h.instance_id, MAX_ID)?;
    if id.trim().is_empty() {
        return Err("instance_id is empty".into());
    }
    if h.labels.len() > MAX_LABELS {
        return Err(format!("more than {MAX_LABELS} labels"));
    }
    let mut labels = BTreeMap::new();
    for (k, v) in h.labels {
        if !valid_label_key(&k) {
            return Err(format!(
                "label key {:?} must be 1-{MAX_LABEL_KEY} characters of A-Z a-z 0-9 . _ - /",
                truncate(k, 64)
            ));
        }
        let v = text(&format!("label {k}"), v, MAX_TEXT)?;
        labels.insert(k, v);
    }
    if h.capabilities.len() > MAX_CAPABILITIES {
        return Err(format!("more than {MAX_CAPABILITIES} capabilities"));
    }
    let capabilities = h
        .capabilities
        .into_iter()
        .map(|c| text("capability", c, MAX_TEXT))
        .collect::<Result<_, _>>()?;
    Ok(AgentHello {
        id,
        host_name: text("host_name", h.host_name, MAX_TEXT)?,
        version: text("version", h.version, MAX_TEXT)?,
        labels,
        capabilities,
        status: h.config_status.map(status_from_proto).transpose()?,
        policy: h.policy.map(policy_from_proto).transpose()?,
    })
}

/// Check and convert a reported policy: bounded lists of bounded texts.
fn policy_from_proto(p: RemotePolicy) -> Result<AgentPolicy, String> {
    let list = |what: &str, items: Vec<String>| -> Result<Vec<String>, String> {
        if items.len() > MAX_POLICY_ENTRIES {
            return Err(format!(
                "policy.{what}: more than {MAX_POLICY_ENTRIES} entries"
            ));
        }
        items
            .into_iter()
            .map(|s| text(&format!("policy.{what}"), s, MAX_PATH))
            .collect()
    };
    let paths = |what: &str, items: Vec<String>| -> Result<Vec<PathBuf>, String> {
        Ok(list(what, items)?.into_iter().map(PathBuf::from).collect())
    };
    Ok(AgentPolicy {
        policy: phoenix_config::RemotePolicy {
            file_export_dirs: paths("file_export_dirs", p.file_export_dirs)?,
            env: list("env", p.env)?,
            otlp_endpoints: list("otlp_endpoints", p.otlp_endpoints)?,
            allow_root_path: p.allow_root_path,
            ca_files: paths("ca_files", p.ca_files)?,
        },
        root_path: PathBuf::from(text("policy.root_path", p.root_path, MAX_PATH)?),
        telemetry: if p.telemetry_json.is_empty() {
            None
        } else {
            let json = text("policy.telemetry_json", p.telemetry_json, MAX_PATH)?;
            Some(serde_json::from_str(&json).map_err(|e| format!("policy.telemetry_json: {e}"))?)
        },
    })
}

/// Check and convert a ConfigStatus.
pub fn status_from_proto(s: ConfigStatus) -> Result<StatusReport, String> {
    let state = match ConfigState::try_from(s.state) {
        Ok(ConfigState::Applied) => ReportedState::Applied,
        Ok(ConfigState::Applying) => ReportedState::Applying,
        Ok(ConfigState::Failed) => ReportedState::Failed,
        Ok(ConfigState::Unspecified) | Err(_) => ReportedState::Unspecified,
    };
    Ok(StatusReport {
        push_id: text("push_id", s.push_id, MAX_ID)?,
        hash: text("hash", s.hash, MAX_HASH)?,
        state,
        // Errors span lines (one per validation error): only cut for size.
        error: truncate(s.error, MAX_ERROR),
        effective_hash: text("effective_hash", s.effective_hash, MAX_HASH)?,
        applied_at_unix_s: s.applied_at_unix_seconds,
    })
}

/// JSON has no NaN or infinity.
fn num(v: f64) -> Value {
    if v.is_finite() { json!(v) } else { Value::Null }
}

/// IntervalStats as the JSON the API returns.
pub fn stats_to_json(s: &IntervalStats) -> Value {
    let pipelines: Vec<Value> = s
        .pipelines
        .iter()
        .take(MAX_PIPELINES)
        .map(|p| {
            let comparison = p.comparison.as_ref().map(|c| {
                json!({
                    "baseline": truncate(c.baseline.clone(), MAX_TEXT),
                    "series_reduction": num(c.series_reduction),
                    "datapoints_reduction": num(c.datapoints_reduction),
                    "bytes_reduction": num(c.bytes_reduction),
                    "critical_total": c.critical_total,
                    "critical_visible": c.critical_visible,
                    "topn_fidelity": num(c.topn_fidelity),
                    "cpu_conservation": num(c.cpu_conservation),
                    "memory_conservation": num(c.memory_conservation),
                })
            });
            json!({
                "pipeline": truncate(p.pipeline.clone(), MAX_TEXT),
                "mode": truncate(p.mode.clone(), MAX_TEXT),
                "resources": p.resources,
                "series": p.series,
                "datapoints": p.datapoints,
                "bytes_raw": p.bytes_raw,
                "bytes_gzip": p.bytes_gzip,
                "processing_cpu_seconds": num(p.processing_cpu_seconds),
                "series_added": p.series_added,
                "series_removed": p.series_removed,
                "cpu_total": num(p.cpu_total),
                "memory_total": num(p.memory_total),
                "critical_total": p.critical_total,
                "critical_visible": p.critical_visible,
                "comparison": comparison,
            })
        })
        .collect();
    json!({
        "time_unix_nano": s.time_unix_nano,
        "receiver": truncate(s.receiver.clone(), MAX_TEXT),
        "scraped_resources": s.scraped_resources,
        "experiment_id": truncate(s.experiment_id.clone(), MAX_TEXT),
        "pipelines": pipelines,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hello() -> Hello {
        Hello {
            instance_id: "node-1".into(),
            host_name: "node-1.example".into(),
            version: "0.1.0".into(),
            labels: [("env".to_string(), "prod".to_string())].into(),
            capabilities: vec!["config.push".into()],
            config_status: None,
            policy: Some(RemotePolicy {
                file_export_dirs: vec!["/var/lib/phoenix/exports".into()],
                env: vec!["NODE_NAME".into()],
                root_path: "/host".into(),
                telemetry_json: r#"{"address":"0.0.0.0:8888","remote_reload":false,"accept_config_body":false,"logs":{"level":"info","format":"json"}}"#.into(),
                ..Default::default()
            }),
        }
    }

    #[test]
    fn a_valid_hello_converts() {
        let h = hello_from_proto(hello()).unwrap();
        assert_eq!(h.id, "node-1");
        assert_eq!(h.labels["env"], "prod");
        let policy = h.policy.expect("the reported policy");
        assert_eq!(policy.root_path, PathBuf::from("/host"));
        assert_eq!(policy.policy.env, ["NODE_NAME"]);
        assert_eq!(
            policy.telemetry.map(|t| t.address.to_string()).as_deref(),
            Some("0.0.0.0:8888")
        );
    }

    #[test]
    fn an_oversized_policy_is_refused() {
        let mut h = hello();
        if let Some(p) = h.policy.as_mut() {
            p.env = vec!["X".into(); MAX_POLICY_ENTRIES + 1];
        }
        let e = hello_from_proto(h).unwrap_err();
        assert!(e.contains("policy.env"), "{e}");
    }

    #[test]
    fn hostile_hellos_are_refused() {
        let mut h = hello();
        h.instance_id = String::new();
        assert!(hello_from_proto(h).is_err());
        let mut h = hello();
        h.instance_id = "x".repeat(10_000);
        assert!(hello_from_proto(h).is_err());
        let mut h = hello();
        h.labels.insert("bad key".into(), "v".into());
        assert!(hello_from_proto(h).is_err());
        let mut h = hello();
        h.host_name = "evil\nhost".into();
        assert!(hello_from_proto(h).is_err());
        let mut h = hello();
        h.labels = (0..100)
            .map(|i| (format!("k{i}"), "v".to_string()))
            .collect();
        assert!(hello_from_proto(h).is_err());
    }

    #[test]
    fn long_errors_are_cut_on_a_char_boundary() {
        let s = status_from_proto(ConfigStatus {
            error: "é".repeat(MAX_ERROR),
            state: 3,
            ..Default::default()
        })
        .unwrap();
        assert!(s.error.len() < MAX_ERROR + 32);
        assert_eq!(s.state, ReportedState::Failed);
        let unknown = status_from_proto(ConfigStatus {
            state: 99,
            ..Default::default()
        })
        .unwrap();
        assert_eq!(unknown.state, ReportedState::Unspecified);
    }

    #[test]
    fn stats_with_nan_still_make_json() {
        let s = IntervalStats {
            pipelines: vec![phoenix_proto::v1::PipelineStats {
                pipeline: "metrics/a".into(),
                cpu_total: f64::NAN,
                ..Default::default()
            }],
            ..Default::default()
        };
        let v = stats_to_json(&s);
        assert!(v["pipelines"][0]["cpu_total"].is_null());
        assert_eq!(v["pipelines"][0]["pipeline"], "metrics/a");
    }

    #[test]
    fn every_pipeline_carries_its_critical_coverage() {
        // A promoted config: one exporting pipeline, no baseline, no comparison.
        let s = IntervalStats {
            experiment_id: "exp-1".into(),
            pipelines: vec![phoenix_proto::v1::PipelineStats {
                pipeline: "metrics/promoted".into(),
                mode: "export".into(),
                critical_total: 3,
                critical_visible: 2,
                ..Default::default()
            }],
            ..Default::default()
        };
        let v = stats_to_json(&s);
        let p = &v["pipelines"][0];
        assert_eq!(
            (&p["critical_total"], &p["critical_visible"]),
            (&json!(3), &json!(2))
        );
        assert!(p["comparison"].is_null());
    }
}
