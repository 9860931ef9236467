//! OpAMP messages to the fleet's values, with limits: an OpAMP agent is
//! trusted to be who its token says, not to send well-formed data. Pure:
//! no I/O, so every rule is unit-tested here.
//!
//! The mapping (docs/CONTROLLER.md, "OpAMP"):
//! - the instance uid (16 bytes) is the agent id, as a lowercase
//!   hyphenated UUID string (`0190c3f2-6d1e-7a3b-9c4d-5e6f7a8b9c0d`);
//! - every attribute of the `AgentDescription` is a label under its own key
//!   (`service.name` stays `service.name`), its value as a string: strings
//!   as they are, booleans `true`/`false`, integers and doubles in decimal,
//!   bytes in hex, arrays and key-value lists as compact JSON. An
//!   identifying attribute wins over a non-identifying one with the same
//!   key. An attribute whose key is not a valid label key or whose value is
//!   too long for a label is kept in the description only;
//! - `host.name` is the host name, `service.version` the version;
//! - capability bits are listed by name (`ReportsStatus`, ...);
//! - identifying `service.name` = `phoenix-agent` (what the Phoenix
//!   agent's own OpAMP client reports) makes its config kind `phoenix`,
//!   any other `opaque`.

use std::collections::BTreeMap;

use base64::Engine as _;
use phoenix_api::{
    ComponentHealth, ConfigFile, ConfigKind, EffectiveConfig, OpampDescription, RemoteConfigStatus,
};
use phoenix_proto::opamp::{self as pb, any_value};
use serde_json::Value;

use crate::grpc::{truncate as cut, valid_label_key};
use crate::store::{OpampDescribed, OpampReport};

/// Attributes kept from one description (both lists together).
const MAX_ATTRIBUTES: usize = 256;
/// Labels made from them (as many as a Phoenix agent may have).
pub const MAX_LABELS: usize = 64;
const MAX_LABEL_VALUE: usize = 256;
/// An attribute key or value, or a health text, is cut to this.
const MAX_TEXT: usize = 4096;
/// Components in one health tree, at every depth.
const MAX_COMPONENTS: usize = 1024;
/// Files in one effective config.
const MAX_CONFIG_FILES: usize = 64;
const MAX_FILE_NAME: usize = 1024;
/// The identifying `service.name` of the Phoenix agent's OpAMP client.
pub const PHOENIX_SERVICE_NAME: &str = "phoenix-agent";
/// A remote config error is kept up to this size.
const MAX_ERROR: usize = 64 * 1024;

/// The capability bits by name, in bit order.
pub const CAPABILITIES: &[(u64, &str)] = &[
    (pb::AgentCapabilities::ReportsStatus as u64, "ReportsStatus"),
    (
        pb::AgentCapabilities::AcceptsRemoteConfig as u64,
        "AcceptsRemoteConfig",
    ),
    (
        pb::AgentCapabilities::ReportsEffectiveConfig as u64,
        "ReportsEffectiveConfig",
    ),
    (
        pb::AgentCapabilities::AcceptsPackages as u64,
        "AcceptsPackages",
    ),
    (
        pb::AgentCapabilities::ReportsPackageStatuses as u64,
        "ReportsPackageStatuses",
    ),
    (
        pb::AgentCapabilities::ReportsOwnTraces as u64,
        "ReportsOwnTraces",
    ),
    (
        pb::AgentCapabilities::ReportsOwnMetrics as u64,
        "ReportsOwnMetrics",
    ),
    (
        pb::AgentCapabilities::ReportsOwnLogs as u64,
        "ReportsOwnLogs",
    ),
    (
        pb::AgentCapabilities::AcceptsOpAmpConnectionSettings as u64,
        "AcceptsOpAMPConnectionSettings",
    ),
    (
        pb::AgentCapabilities::AcceptsOtherConnectionSettings as u64,
        "AcceptsOtherConnectionSettings",
    ),
    (
        pb::AgentCapabilities::AcceptsRestartCommand as u64,
        "AcceptsRestartCommand",
    ),
    (pb::AgentCapabilities::ReportsHealth as u64, "ReportsHealth"),
    (
        pb::AgentCapabilities::ReportsRemoteConfig as u64,
        "ReportsRemoteConfig",
    ),
    (
        pb::AgentCapabilities::ReportsHeartbeat as u64,
        "ReportsHeartbeat",
    ),
    (
        pb::AgentCapabilities::ReportsAvailableComponents as u64,
        "ReportsAvailableComponents",
    ),
];

/// The instance uid as the agent id: 16 bytes as a lowercase hyphenated
/// UUID string.
pub fn uid_string(uid: &[u8]) -> Result<String, String> {
    let bytes: &[u8; 16] = uid.try_into().map_err(|_| {
        format!(
            "instance_uid must be 16 bytes (a UUID), not {} bytes",
            uid.len()
        )
    })?;
    let hex = phoenix_processors::hash::hex(bytes);
    Ok(format!(
        "{}-{}-{}-{}-{}",
        &hex[0..8],
        &hex[8..12],
        &hex[12..16],
        &hex[16..20],
        &hex[20..32]
    ))
}

/// The capability bits by name; a bit the specification does not define
/// is listed as `bit<N>`.
pub fn capability_names(bits: u64) -> Vec<String> {
    (0..64)
        .map(|n| 1u64 << n)
        .filter(|bit| bits & bit != 0)
        .map(|bit| match CAPABILITIES.iter().find(|(b, _)| *b == bit) {
            Some((_, name)) => (*name).to_string(),
            None => format!("bit{}", bit.trailing_zeros()),
        })
        .collect()
}

/// Check and convert one `AgentToServer`.
pub fn report(m: &pb::AgentToServer) -> Result<OpampReport, String> {
    Ok(OpampReport {
        id: uid_string(&m.instance_uid)?,
        capability_bits: m.capabilities,
        capabilities: capability_names(m.capabilities),
        description: m.agent_description.as_ref().map(describe).transpose()?,
        health: m.health.as_ref().map(health).transpose()?,
        effective_config: m
            .effective_config
            .as_ref()
            .map(effective_config)
            .transpose()?,
        remote_config_status: m.remote_config_status.as_ref().map(remote_config_status),
    })
}

/// An attribute value as a string (see the module's doc).
pub fn value_string(v: Option<&pb::AnyValue>) -> String {
    match v.and_then(|v| v.value.as_ref()) {
        None => String::new(),
        Some(any_value::Value::StringValue(s)) => s.clone(),
        Some(any_value::Value::BoolValue(b)) => b.to_string(),
        Some(any_value::Value::IntValue(i)) => i.to_string(),
        Some(any_value::Value::DoubleValue(d)) => d.to_string(),
        Some(any_value::Value::BytesValue(b)) => phoenix_processors::hash::hex(b),
        Some(other) => json_value(Some(other)).to_string(),
    }
}

fn json_value(v: Option<&any_value::Value>) -> Value {
    match v {
        None => Value::Null,
        Some(any_value::Value::StringValue(s)) => Value::String(s.clone()),
        Some(any_value::Value::BoolValue(b)) => Value::Bool(*b),
        Some(any_value::Value::IntValue(i)) => Value::from(*i),
        Some(any_value::Value::DoubleValue(d)) => Value::from(*d),
        Some(any_value::Value::BytesValue(b)) => Value::String(phoenix_processors::hash::hex(b)),
        Some(any_value::Value::ArrayValue(a)) => Value::Array(
            a.values
                .iter()
                .map(|v| json_value(v.value.as_ref()))
                .collect(),
        ),
        Some(any_value::Value::KvlistValue(l)) => Value::Object(
            l.values
                .iter()
                .map(|kv| {
                    (
                        kv.key.clone(),
                        json_value(kv.value.as_ref().and_then(|v| v.value.as_ref())),
                    )
                })
                .collect(),
        ),
    }
}

fn valid_label_value(v: &str) -> bool {
    v.len() <= MAX_LABEL_VALUE && !v.chars().any(char::is_control)
}

/// The description, its labels, host name and version.
pub fn describe(d: &pb::AgentDescription) -> Result<OpampDescribed, String> {
    let count = d.identifying_attributes.len() + d.non_identifying_attributes.len();
    if count > MAX_ATTRIBUTES {
        return Err(format!(
            "the agent description has {count} attributes; at most {MAX_ATTRIBUTES} are accepted"
        ));
    }
    let strings = |list: &[pb::KeyValue]| -> BTreeMap<String, String> {
        list.iter()
            .map(|kv| {
                (
                    cut(kv.key.clone(), MAX_TEXT),
                    cut(value_string(kv.value.as_ref()), MAX_TEXT),
                )
            })
            .collect()
    };
    let description = OpampDescription {
        identifying: strings(&d.identifying_attributes),
        non_identifying: strings(&d.non_identifying_attributes),
    };
    let mut labels = BTreeMap::new();
    for (k, v) in description
        .identifying
        .iter()
        .chain(description.non_identifying.iter())
    {
        if labels.len() >= MAX_LABELS {
            break;
        }
        if valid_label_key(k) && valid_label_value(v) && !labels.contains_key(k) {
            labels.insert(k.clone(), v.clone());
        }
    }
    let attribute = |key: &str| {
        description
            .identifying
            .get(key)
            .or_else(|| description.non_identifying.get(key))
            .filter(|v| valid_label_value(v))
            .cloned()
            .unwrap_or_default()
    };
    // Only an identifying attribute counts: it is what names the agent.
    let config_kind = if description
        .identifying
        .get("service.name")
        .map(String::as_str)
        == Some(PHOENIX_SERVICE_NAME)
    {
        ConfigKind::Phoenix
    } else {
        ConfigKind::Opaque
    };
    Ok(OpampDescribed {
        host_name: attribute("host.name"),
        version: attribute("service.version"),
        labels,
        description,
        config_kind,
    })
}

fn time(unix_nano: u64) -> Option<String> {
    (unix_nano != 0).then(|| phoenix_processors::time::format_rfc3339_millis(unix_nano))
}

/// The health tree, at most [`MAX_COMPONENTS`] components in all.
pub fn health(h: &pb::ComponentHealth) -> Result<ComponentHealth, String> {
    let mut budget = MAX_COMPONENTS;
    health_within(h, &mut budget)
}

fn health_within(h: &pb::ComponentHealth, budget: &mut usize) -> Result<ComponentHealth, String> {
    let mut components = BTreeMap::new();
    for (name, c) in &h.component_health_map {
        if *budget == 0 {
            return Err(format!(
                "the health report has more than {MAX_COMPONENTS} components"
            ));
        }
        *budget -= 1;
        components.insert(cut(name.clone(), MAX_TEXT), health_within(c, budget)?);
    }
    Ok(ComponentHealth {
        healthy: h.healthy,
        status: cut(h.status.clone(), MAX_TEXT),
        last_error: cut(h.last_error.clone(), MAX_TEXT),
        start_time: time(h.start_time_unix_nano),
        status_time: time(h.status_time_unix_nano),
        components,
    })
}

/// The effective config's files: a UTF-8 body as text, any other as base64.
pub fn effective_config(c: &pb::EffectiveConfig) -> Result<EffectiveConfig, String> {
    let map = c
        .config_map
        .as_ref()
        .map(|m| &m.config_map)
        .into_iter()
        .flatten();
    let mut files = BTreeMap::new();
    for (name, file) in map {
        if files.len() >= MAX_CONFIG_FILES {
            return Err(format!(
                "the effective config has more than {MAX_CONFIG_FILES} files"
            ));
        }
        if name.len() > MAX_FILE_NAME {
            return Err(format!(
                "an effective config file name is longer than {MAX_FILE_NAME} bytes"
            ));
        }
        let (body, encoding) = match std::str::from_utf8(&file.body) {
            Ok(text) => (text.to_string(), "utf-8"),
            Err(_) => (
                base64::engine::general_purpose::STANDARD.encode(&file.body),
                "base64",
            ),
        };
        files.insert(
            name.clone(),
            ConfigFile {
                content_type: cut(file.content_type.clone(), MAX_TEXT),
                body,
                encoding: encoding.into(),
            },
        );
    }
    Ok(EffectiveConfig { files })
}

pub fn remote_config_status(s: &pb::RemoteConfigStatus) -> RemoteConfigStatus {
    let status = match pb::RemoteConfigStatuses::try_from(s.status) {
        Ok(pb::RemoteConfigStatuses::Applied) => "applied",
        Ok(pb::RemoteConfigStatuses::Applying) => "applying",
        Ok(pb::RemoteConfigStatuses::Failed) => "failed",
        Ok(pb::RemoteConfigStatuses::Unset) | Err(_) => "unset",
    };
    RemoteConfigStatus {
        last_remote_config_hash: phoenix_processors::hash::hex(&s.last_remote_config_hash),
        status: status.into(),
        error_message: cut(s.error_message.clone(), MAX_ERROR),
    }
}

/// Whether to answer with `ReportFullState`: the server has no state for
/// the instance (`previous`: the sequence number of its last message this
/// controller saw, `None` after a restart or a timeout), or a message was
/// missed (the number is not the previous + 1), and this message does not
/// itself carry the full state (an `AgentDescription`, which the first
/// message and every full report carry).
pub fn needs_full_state(
    previous: Option<u64>,
    sequence_num: u64,
    carries_description: bool,
) -> bool {
    if carries_description {
        return false;
    }
    match previous {
        None => true,
        Some(p) => sequence_num != p.wrapping_add(1),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kv(key: &str, value: any_value::Value) -> pb::KeyValue {
        pb::KeyValue {
            key: key.into(),
            value: Some(pb::AnyValue { value: Some(value) }),
        }
    }

    fn s(v: &str) -> any_value::Value {
        any_value::Value::StringValue(v.into())
    }

    #[test]
    fn the_uid_is_a_uuid_string_and_must_be_16_bytes() {
        let uid: Vec<u8> = (0u8..16).collect();
        assert_eq!(
            uid_string(&uid).unwrap(),
            "00010203-0405-0607-0809-0a0b0c0d0e0f"
        );
        assert!(uid_string(&[]).unwrap_err().contains("0 bytes"));
        assert!(uid_string(&[1; 17]).is_err());
    }

    #[test]
    fn capabilities_are_named_and_unknown_bits_kept() {
        assert_eq!(
            capability_names(0x1 | 0x4 | 0x800 | 0x2000),
            vec![
                "ReportsStatus",
                "ReportsEffectiveConfig",
                "ReportsHealth",
                "ReportsHeartbeat"
            ]
        );
        assert_eq!(capability_names(1 << 40), vec!["bit40"]);
        assert!(capability_names(0).is_empty());
        // Every defined bit has a name.
        assert_eq!(capability_names(0x7fff).len(), 15);
    }

    #[test]
    fn attributes_become_labels_with_string_values() {
        let d = pb::AgentDescription {
            identifying_attributes: vec![
                kv("service.name", s("io.opentelemetry.collector")),
                kv("service.version", s("0.120.0")),
                kv("service.instance.id", s("abc")),
            ],
            non_identifying_attributes: vec![
                kv("host.name", s("node-1")),
                kv("os.type", s("linux")),
                kv("replicas", any_value::Value::IntValue(3)),
                kv("ratio", any_value::Value::DoubleValue(0.5)),
                kv("canary", any_value::Value::BoolValue(true)),
                kv("raw", any_value::Value::BytesValue(vec![0xde, 0xad])),
                kv(
                    "list",
                    any_value::Value::ArrayValue(pb::ArrayValue {
                        values: vec![pb::AnyValue {
                            value: Some(s("a")),
                        }],
                    }),
                ),
                // Identifying wins.
                kv("service.name", s("other")),
                // Not a label key: kept in the description only.
                kv("bad key!", s("x")),
                kv("multi", s("line\nbreak")),
            ],
        };
        let out = describe(&d).unwrap();
        assert_eq!(out.host_name, "node-1");
        assert_eq!(out.version, "0.120.0");
        let l = &out.labels;
        assert_eq!(l["service.name"], "io.opentelemetry.collector");
        assert_eq!(l["replicas"], "3");
        assert_eq!(l["ratio"], "0.5");
        assert_eq!(l["canary"], "true");
        assert_eq!(l["raw"], "dead");
        assert_eq!(l["list"], "[\"a\"]");
        assert!(!l.contains_key("bad key!"));
        assert!(!l.contains_key("multi"));
        assert_eq!(out.description.non_identifying["bad key!"], "x");
        assert_eq!(out.description.non_identifying["service.name"], "other");
        assert_eq!(
            out.description.identifying["service.name"],
            "io.opentelemetry.collector"
        );
        assert_eq!(out.config_kind, ConfigKind::Opaque);
    }

    #[test]
    fn only_an_identifying_phoenix_agent_name_takes_phoenix_configs() {
        let named = |identifying: Vec<pb::KeyValue>, non_identifying: Vec<pb::KeyValue>| {
            describe(&pb::AgentDescription {
                identifying_attributes: identifying,
                non_identifying_attributes: non_identifying,
            })
            .unwrap()
            .config_kind
        };
        let phoenix = || kv("service.name", s(PHOENIX_SERVICE_NAME));
        assert_eq!(named(vec![phoenix()], vec![]), ConfigKind::Phoenix);
        assert_eq!(named(vec![], vec![phoenix()]), ConfigKind::Opaque);
        assert_eq!(
            named(vec![kv("service.name", s("phoenix-agent-x"))], vec![]),
            ConfigKind::Opaque
        );
        assert_eq!(named(vec![], vec![]), ConfigKind::Opaque);
    }

    #[test]
    fn descriptions_are_bounded() {
        let many = pb::AgentDescription {
            identifying_attributes: (0..300).map(|i| kv(&format!("k{i}"), s("v"))).collect(),
            non_identifying_attributes: vec![],
        };
        assert!(describe(&many).is_err());
        let some = pb::AgentDescription {
            identifying_attributes: (0..100).map(|i| kv(&format!("k{i:03}"), s("v"))).collect(),
            non_identifying_attributes: vec![],
        };
        let out = describe(&some).unwrap();
        assert_eq!(out.labels.len(), MAX_LABELS);
        assert_eq!(out.description.identifying.len(), 100);
        let long = pb::AgentDescription {
            identifying_attributes: vec![kv("k", s(&"x".repeat(10_000)))],
            non_identifying_attributes: vec![],
        };
        let out = describe(&long).unwrap();
        assert!(out.labels.is_empty());
        assert!(out.description.identifying["k"].len() < 4200);
    }

    #[test]
    fn health_nests_and_is_bounded() {
        let leaf = pb::ComponentHealth {
            healthy: false,
            last_error: "exporter down".into(),
            status: "StatusRecoverableError".into(),
            status_time_unix_nano: 1_700_000_000_000_000_000,
            ..Default::default()
        };
        let top = pb::ComponentHealth {
            healthy: true,
            start_time_unix_nano: 1_700_000_000_000_000_000,
            status: "StatusOK".into(),
            component_health_map: [("exporter:otlp".to_string(), leaf)].into(),
            ..Default::default()
        };
        let h = health(&top).unwrap();
        assert!(h.healthy);
        assert_eq!(h.start_time.as_deref(), Some("2023-11-14T22:13:20.000Z"));
        assert_eq!(h.status_time, None);
        let c = &h.components["exporter:otlp"];
        assert!(!c.healthy);
        assert_eq!(c.last_error, "exporter down");

        let wide = pb::ComponentHealth {
            component_health_map: (0..2000)
                .map(|i| (format!("c{i}"), pb::ComponentHealth::default()))
                .collect(),
            ..Default::default()
        };
        assert!(health(&wide).unwrap_err().contains("components"));
    }

    #[test]
    fn config_bodies_are_text_or_base64() {
        let c = pb::EffectiveConfig {
            config_map: Some(pb::AgentConfigMap {
                config_map: [
                    (
                        "collector.yaml".to_string(),
                        pb::AgentConfigFile {
                            body: b"receivers: {}\n".to_vec(),
                            content_type: "text/yaml".into(),
                        },
                    ),
                    (
                        "blob".to_string(),
                        pb::AgentConfigFile {
                            body: vec![0xff, 0xfe],
                            content_type: String::new(),
                        },
                    ),
                ]
                .into(),
            }),
        };
        let out = effective_config(&c).unwrap();
        let yaml = &out.files["collector.yaml"];
        assert_eq!(
            (
                yaml.body.as_str(),
                yaml.encoding.as_str(),
                yaml.content_type.as_str()
            ),
            ("receivers: {}\n", "utf-8", "text/yaml")
        );
        assert_eq!(out.files["blob"].body, "//4=");
        assert_eq!(out.files["blob"].encoding, "base64");
        assert!(
            effective_config(&pb::EffectiveConfig { config_map: None })
                .unwrap()
                .files
                .is_empty()
        );
    }

    #[test]
    fn remote_config_status_names_its_state() {
        let s = remote_config_status(&pb::RemoteConfigStatus {
            last_remote_config_hash: vec![0xab, 0x01],
            status: pb::RemoteConfigStatuses::Failed as i32,
            error_message: "bad yaml".into(),
        });
        assert_eq!(
            (s.last_remote_config_hash.as_str(), s.status.as_str()),
            ("ab01", "failed")
        );
        let unknown = remote_config_status(&pb::RemoteConfigStatus {
            status: 99,
            ..Default::default()
        });
        assert_eq!(unknown.status, "unset");
    }

    #[test]
    fn full_state_is_asked_for_when_state_is_missing_or_a_message_was_missed() {
        // First contact (or after a restart) with a heartbeat only.
        assert!(needs_full_state(None, 7, false));
        // A first message with the description is the full state.
        assert!(!needs_full_state(None, 0, true));
        // In order.
        assert!(!needs_full_state(Some(3), 4, false));
        // A gap, or a repeat.
        assert!(needs_full_state(Some(3), 5, false));
        assert!(needs_full_state(Some(3), 3, false));
        // A gap closed by a full report.
        assert!(!needs_full_state(Some(3), 9, true));
        assert!(!needs_full_state(Some(u64::MAX), 0, false));
    }

    #[test]
    fn a_report_without_a_valid_uid_is_refused() {
        let m = pb::AgentToServer {
            instance_uid: vec![1, 2, 3],
            ..Default::default()
        };
        assert!(report(&m).unwrap_err().contains("16 bytes"));
        let m = pb::AgentToServer {
            instance_uid: vec![7; 16],
            capabilities: 1,
            ..Default::default()
        };
        let r = report(&m).unwrap();
        assert_eq!(r.id, "07070707-0707-0707-0707-070707070707");
        assert_eq!(r.capabilities, vec!["ReportsStatus"]);
        assert!(r.description.is_none() && r.health.is_none());
    }
}
