//! The `procfs` receiver's configuration, shaped like the OpenTelemetry
//! Collector's hostmetrics process scraper (`metrics: {name: {enabled: ..}}`).

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use phoenix_processors::semconv;
use serde::Deserialize;

use phoenix_processors::{MetricKind, Problem};

/// One resource attribute the receiver can set, and whether it is on
/// without configuration.
#[derive(Debug, Clone, Copy)]
pub struct AttributeSpec {
    pub name: &'static str,
    pub enabled_by_default: bool,
}

const fn on(name: &'static str) -> AttributeSpec {
    AttributeSpec {
        name,
        enabled_by_default: true,
    }
}

/// Every resource attribute the receiver can set. The container ones cost
/// one read of `/proc/PID/cgroup` per process life and are absent for a
/// process outside a container, so they are on; the raw cgroup line is one
/// more distinct string per container and a label few backends want, so
/// it is opt-in.
pub const RESOURCE_ATTRIBUTES: &[AttributeSpec] = &[
    on(semconv::PROCESS_PID),
    on(semconv::PROCESS_PARENT_PID),
    on(semconv::PROCESS_CREATION_TIME),
    on(semconv::PROCESS_EXECUTABLE_NAME),
    on(semconv::PROCESS_EXECUTABLE_PATH),
    on(semconv::PROCESS_COMMAND),
    on(semconv::PROCESS_COMMAND_LINE),
    on(semconv::PROCESS_OWNER),
    on(semconv::HOST_NAME),
    on(semconv::CONTAINER_ID),
    on(semconv::CONTAINER_RUNTIME_NAME),
    on(semconv::K8S_POD_UID),
    AttributeSpec {
        name: semconv::PROCESS_LINUX_CGROUP,
        enabled_by_default: false,
    },
];

pub fn attribute_spec(name: &str) -> Option<&'static AttributeSpec> {
    RESOURCE_ATTRIBUTES.iter().find(|a| a.name == name)
}

/// One metric the receiver knows: semconv name, description, unit, kind, and
/// whether it is on without configuration.
#[derive(Debug, Clone, Copy)]
pub struct MetricSpec {
    pub name: &'static str,
    pub description: &'static str,
    pub unit: &'static str,
    pub kind: MetricKind,
    pub enabled_by_default: bool,
}

/// Every metric, in the order a resource lists them. The defaults match the
/// OpenTelemetry Collector's hostmetrics process scraper, so a user moving
/// over gets the same series.
pub const METRICS: &[MetricSpec] = &[
    MetricSpec {
        name: semconv::PROCESS_CPU_TIME,
        description: "Total CPU seconds broken down by different CPU modes.",
        unit: "s",
        kind: MetricKind::COUNTER,
        enabled_by_default: true,
    },
    MetricSpec {
        name: semconv::PROCESS_CPU_UTILIZATION,
        description: "Difference in process.cpu.time since the last measurement, divided by the elapsed time and number of CPUs available to the process.",
        unit: "1",
        kind: MetricKind::Gauge,
        enabled_by_default: false,
    },
    MetricSpec {
        name: semconv::PROCESS_MEMORY_USAGE,
        description: "The amount of physical memory in use.",
        unit: "By",
        kind: MetricKind::UP_DOWN_COUNTER,
        enabled_by_default: true,
    },
    MetricSpec {
        name: semconv::PROCESS_MEMORY_VIRTUAL,
        description: "The amount of committed virtual memory.",
        unit: "By",
        kind: MetricKind::UP_DOWN_COUNTER,
        enabled_by_default: true,
    },
    MetricSpec {
        name: semconv::PROCESS_DISK_IO,
        description: "Disk bytes transferred.",
        unit: "By",
        kind: MetricKind::COUNTER,
        enabled_by_default: true,
    },
    MetricSpec {
        name: semconv::PROCESS_THREAD_COUNT,
        description: "Process threads count.",
        unit: "{thread}",
        kind: MetricKind::UP_DOWN_COUNTER,
        enabled_by_default: false,
    },
    MetricSpec {
        name: semconv::PROCESS_UNIX_FILE_DESCRIPTOR_COUNT,
        description: "Number of unix file descriptors in use by the process.",
        unit: "{file_descriptor}",
        kind: MetricKind::UP_DOWN_COUNTER,
        enabled_by_default: false,
    },
    MetricSpec {
        name: semconv::PROCESS_CONTEXT_SWITCHES,
        description: "Number of times the process has been context switched.",
        unit: "{context_switch}",
        kind: MetricKind::COUNTER,
        enabled_by_default: false,
    },
    MetricSpec {
        name: semconv::PROCESS_PAGING_FAULTS,
        description: "Number of page faults the process has made.",
        unit: "{fault}",
        kind: MetricKind::COUNTER,
        enabled_by_default: false,
    },
    MetricSpec {
        name: semconv::PROCESS_UPTIME,
        description: "The time the process has been running.",
        unit: "s",
        kind: MetricKind::Gauge,
        enabled_by_default: false,
    },
];

pub fn spec(name: &str) -> Option<&'static MetricSpec> {
    METRICS.iter().find(|m| m.name == name)
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ProcfsConfig {
    /// How often to scrape (the pipeline runtime's timer reads it).
    #[serde(deserialize_with = "crate::duration::deserialize")]
    pub collection_interval: Duration,
    /// Where the host's filesystem is: `<root_path>/proc` and
    /// `<root_path>/etc/passwd` are read (`/host` in a DaemonSet).
    pub root_path: PathBuf,
    /// Kernel threads have no memory, I/O or command line worth a series each.
    pub include_kernel_threads: bool,
    /// Per-metric switches over the defaults (defaults in `metrics.rs`).
    pub metrics: BTreeMap<String, Toggle>,
    /// Per-resource-attribute switches over the defaults (in `RESOURCE_ATTRIBUTES`).
    pub resource_attributes: BTreeMap<String, Toggle>,
    /// `host.name` instead of `gethostname(2)`: the node name for a DaemonSet
    /// (`${env:NODE_NAME}`), whose pod has its own host name.
    pub host_name: Option<String>,
}

/// `{ enabled: true|false }`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Toggle {
    pub enabled: bool,
}

impl Default for ProcfsConfig {
    fn default() -> Self {
        ProcfsConfig {
            collection_interval: Duration::from_secs(10),
            root_path: PathBuf::from("/"),
            include_kernel_threads: false,
            metrics: BTreeMap::new(),
            resource_attributes: BTreeMap::new(),
            host_name: None,
        }
    }
}

/// The longest interval accepted: beyond a day a process scraper is not
/// monitoring anything, and unbounded values would overflow timers.
pub const MAX_COLLECTION_INTERVAL: Duration = Duration::from_secs(24 * 3600);

impl ProcfsConfig {
    /// Every problem with the configuration, each a sentence naming the
    /// offending key (empty when it is valid).
    pub fn validate(&self) -> Vec<Problem> {
        let mut problems = Vec::new();
        if self.collection_interval.is_zero() {
            problems.push(Problem::sentence(
                "collection_interval",
                "must be greater than 0",
            ));
        } else if self.collection_interval > MAX_COLLECTION_INTERVAL {
            problems.push(Problem::sentence(
                "collection_interval",
                format!(
                    "must be at most {}h",
                    MAX_COLLECTION_INTERVAL.as_secs() / 3600
                ),
            ));
        }
        if self.root_path.as_os_str().is_empty() {
            problems.push(Problem::sentence(
                "root_path",
                "must not be empty (use / for this host)",
            ));
        }
        if let Some(name) = &self.host_name
            && name.trim().is_empty()
        {
            problems.push(Problem::sentence(
                "host_name",
                "is empty (an unset environment variable?); remove it to use the detected host name",
            ));
        }
        let known_metrics = || {
            METRICS
                .iter()
                .map(|m| m.name)
                .collect::<Vec<_>>()
                .join(", ")
        };
        for name in self.metrics.keys() {
            if spec(name).is_none() {
                problems.push(Problem::new(
                    "metrics",
                    format!(
                        "unknown metric {name:?}; known metrics: {}",
                        known_metrics()
                    ),
                ));
            }
        }
        for name in self.resource_attributes.keys() {
            if attribute_spec(name).is_none() {
                let known: Vec<&str> = RESOURCE_ATTRIBUTES.iter().map(|a| a.name).collect();
                problems.push(Problem::new(
                    "resource_attributes",
                    format!(
                        "unknown attribute {name:?}; known attributes: {}",
                        known.join(", ")
                    ),
                ));
            }
        }
        if !METRICS.iter().any(|m| self.metric_enabled(m.name)) {
            problems.push(Problem::new(
                "metrics",
                format!(
                    "every metric is disabled, so the receiver would emit nothing; enable one of: {}",
                    known_metrics()
                ),
            ));
        }
        problems
    }

    /// Whether metric `name` is on: its toggle, else its default; unknown names are off.
    pub fn metric_enabled(&self, name: &str) -> bool {
        let Some(spec) = spec(name) else {
            return false;
        };
        self.metrics
            .get(name)
            .map_or(spec.enabled_by_default, |t| t.enabled)
    }

    /// Whether resource attribute `name` is on: its toggle, else its default; unknown names are off.
    pub fn attribute_enabled(&self, name: &str) -> bool {
        let Some(spec) = attribute_spec(name) else {
            return false;
        };
        self.resource_attributes
            .get(name)
            .map_or(spec.enabled_by_default, |t| t.enabled)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn yaml(text: &str) -> Result<ProcfsConfig, serde_norway::Error> {
        serde_norway::from_str(text)
    }

    #[test]
    fn defaults_match_the_collector_process_scraper() {
        let on: Vec<&str> = METRICS
            .iter()
            .filter(|m| m.enabled_by_default)
            .map(|m| m.name)
            .collect();
        assert_eq!(
            on,
            [
                "process.cpu.time",
                "process.memory.usage",
                "process.memory.virtual",
                "process.disk.io"
            ]
        );
    }

    #[test]
    fn kinds_and_units_follow_semconv() {
        let k = |n| spec(n).map(|s| (s.kind, s.unit));
        assert_eq!(k("process.cpu.time"), Some((MetricKind::COUNTER, "s")));
        assert_eq!(k("process.cpu.utilization"), Some((MetricKind::Gauge, "1")));
        assert_eq!(
            k("process.memory.usage"),
            Some((MetricKind::UP_DOWN_COUNTER, "By"))
        );
        assert_eq!(
            k("process.unix.file_descriptor.count"),
            Some((MetricKind::UP_DOWN_COUNTER, "{file_descriptor}"))
        );
        assert_eq!(
            k("process.context_switches"),
            Some((MetricKind::COUNTER, "{context_switch}"))
        );
        assert_eq!(k("process.uptime"), Some((MetricKind::Gauge, "s")));
        assert_eq!(k("process.cpu.seconds"), None);
    }

    #[test]
    fn defaults() {
        let c = ProcfsConfig::default();
        assert_eq!(c.collection_interval, Duration::from_secs(10));
        assert_eq!(c.root_path, PathBuf::from("/"));
        assert!(!c.include_kernel_threads);
        assert!(c.validate().is_empty(), "{:?}", c.validate());
        assert!(c.metric_enabled("process.cpu.time"));
        assert!(c.metric_enabled("process.disk.io"));
        assert!(!c.metric_enabled("process.cpu.utilization"));
        assert!(!c.metric_enabled("process.uptime"));
        assert!(!c.metric_enabled("no.such.metric"));
        for a in RESOURCE_ATTRIBUTES {
            assert_eq!(
                c.attribute_enabled(a.name),
                a.enabled_by_default,
                "{}",
                a.name
            );
        }
        assert!(c.attribute_enabled("container.id"));
        assert!(c.attribute_enabled("container.runtime.name"));
        assert!(c.attribute_enabled("k8s.pod.uid"));
        assert!(!c.attribute_enabled("process.linux.cgroup"));
        assert!(!c.attribute_enabled("process.env"));
        // An empty mapping is the default configuration.
        assert_eq!(yaml("{}").expect("empty"), c);
    }

    #[test]
    fn collector_shaped_yaml() {
        let c = yaml(
            "collection_interval: 500ms\nroot_path: /host\ninclude_kernel_threads: true\n\
             metrics:\n  process.cpu.utilization: { enabled: true }\n  process.disk.io: { enabled: false }\n\
             resource_attributes:\n  process.command_line: { enabled: false }\n  process.linux.cgroup: { enabled: true }\n\
             host_name: node-7\n",
        )
        .expect("valid yaml");
        assert_eq!(c.collection_interval, Duration::from_millis(500));
        assert_eq!(c.root_path, PathBuf::from("/host"));
        assert!(c.include_kernel_threads);
        assert!(c.metric_enabled("process.cpu.utilization"));
        assert!(!c.metric_enabled("process.disk.io"));
        assert!(c.metric_enabled("process.cpu.time"));
        assert!(!c.attribute_enabled("process.command_line"));
        assert!(c.attribute_enabled("process.command"));
        assert!(c.attribute_enabled("process.linux.cgroup"));
        assert_eq!(c.host_name.as_deref(), Some("node-7"));
        assert!(c.validate().is_empty());
    }

    #[test]
    fn unknown_keys_are_rejected_by_serde() {
        assert!(yaml("collection_intervall: 10s").is_err());
        assert!(yaml("metrics: { process.cpu.time: { enabled: true, extra: 1 } }").is_err());
        assert!(yaml("collection_interval: soon").is_err());
    }

    #[test]
    fn validate_reports_every_problem() {
        let c = yaml(
            "collection_interval: 0s\nroot_path: ''\nhost_name: ' '\n\
             metrics:\n  process.cpu.seconds: { enabled: true }\n\
             resource_attributes:\n  process.env: { enabled: true }\n",
        )
        .expect("parses; validation is separate");
        let problems = c.validate();
        let fields: Vec<&str> = problems.iter().map(|p| p.field.as_str()).collect();
        assert_eq!(
            fields,
            [
                "collection_interval",
                "root_path",
                "host_name",
                "metrics",
                "resource_attributes"
            ],
            "{problems:#?}"
        );
        assert!(problems[3].message.contains("\"process.cpu.seconds\""));
        // The message lists what is known, so the user can fix a typo.
        assert!(
            problems[3]
                .message
                .contains("process.cpu.time, process.cpu.utilization")
        );
        assert!(problems[4].message.contains("\"process.env\""));
        assert!(problems[4].message.contains("process.owner"));
    }

    #[test]
    fn all_metrics_off_is_a_problem() {
        let mut c = ProcfsConfig::default();
        for m in METRICS {
            c.metrics
                .insert(m.name.to_string(), Toggle { enabled: false });
        }
        let problems = c.validate();
        assert_eq!(problems.len(), 1);
        assert!(problems[0].message.contains("every metric is disabled"));
    }
}
