//! The `procfs` receiver's configuration, shaped like the OpenTelemetry
//! Collector's hostmetrics process scraper (`metrics: {name: {enabled: ..}}`).
//!
//! Every metric and attribute has its semantic-conventions v1.44 name and,
//! where the Collector's `hostmetrics` process (and processes) scraper has
//! it, that scraper's name and unit: `naming: hostmetrics` emits those, so
//! dashboards and alerts built on the Collector keep working. Toggles accept
//! either name in either naming.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use phoenix_processors::semconv;
use serde::Deserialize;

use phoenix_processors::{MetricKind, Problem};

/// Which names the receiver emits.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Naming {
    /// OpenTelemetry semantic conventions v1.44.
    #[default]
    Semconv,
    /// What the Collector's `hostmetrics` process scraper emits: its metric
    /// names, units, point attributes and default resource attributes.
    Hostmetrics,
}

/// One resource attribute the receiver can set, and whether it is on
/// without configuration.
#[derive(Debug, Clone, Copy)]
pub struct AttributeSpec {
    pub name: &'static str,
    pub enabled_by_default: bool,
    /// Its name in the Collector's process scraper, `None` when that scraper
    /// does not set it (off by default with `naming: hostmetrics`).
    pub hostmetrics: Option<&'static str>,
}

const fn on(name: &'static str) -> AttributeSpec {
    AttributeSpec {
        name,
        enabled_by_default: true,
        hostmetrics: Some(name),
    }
}

const fn phoenix(name: &'static str) -> AttributeSpec {
    AttributeSpec {
        name,
        enabled_by_default: true,
        hostmetrics: None,
    }
}

/// Every resource attribute the receiver can set. The container ones cost
/// one read of `/proc/PID/cgroup` per process life and are absent for a
/// process outside a container, so they are on; the raw cgroup line is one
/// more distinct string per container and a label few backends want, so
/// it is opt-in. `host.name` is not the Collector scraper's (its users add
/// it with the `resourcedetection` processor), but it is this receiver's
/// equivalent of that processor, so it stays on in both namings.
pub const RESOURCE_ATTRIBUTES: &[AttributeSpec] = &[
    on(semconv::PROCESS_PID),
    on(semconv::PROCESS_PARENT_PID),
    phoenix(semconv::PROCESS_CREATION_TIME),
    on(semconv::PROCESS_EXECUTABLE_NAME),
    on(semconv::PROCESS_EXECUTABLE_PATH),
    on(semconv::PROCESS_COMMAND),
    on(semconv::PROCESS_COMMAND_LINE),
    on(semconv::PROCESS_OWNER),
    on(semconv::HOST_NAME),
    phoenix(semconv::CONTAINER_ID),
    phoenix(semconv::CONTAINER_RUNTIME_NAME),
    phoenix(semconv::K8S_POD_UID),
    AttributeSpec {
        name: semconv::PROCESS_LINUX_CGROUP,
        enabled_by_default: false,
        hostmetrics: Some("process.cgroup"),
    },
];

/// The attribute called `name` in either naming.
pub fn attribute_spec(name: &str) -> Option<&'static AttributeSpec> {
    RESOURCE_ATTRIBUTES
        .iter()
        .find(|a| a.name == name || a.hostmetrics == Some(name))
}

/// A point attribute and its values, as one naming spells them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PointAttribute {
    pub key: &'static str,
    /// `(semantic meaning, value emitted)`: the meanings are the semconv
    /// values, so the receiver asks for "user" and gets "user" or whatever
    /// this naming calls it.
    pub values: &'static [(&'static str, &'static str)],
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
    /// Its point attribute under semconv, if it has one.
    pub attribute: Option<PointAttribute>,
    /// What the Collector calls it; `None`: the Collector has no such
    /// metric, and `naming: hostmetrics` emits it under the semconv name.
    pub hostmetrics: Option<Hostmetrics>,
}

/// A metric as the Collector's `hostmetrics` scraper emits it.
#[derive(Debug, Clone, Copy)]
pub struct Hostmetrics {
    pub name: &'static str,
    pub unit: &'static str,
    pub attribute: Option<PointAttribute>,
}

impl MetricSpec {
    /// Name, unit and point attribute under `naming`.
    pub fn named(&self, naming: Naming) -> (&'static str, &'static str, Option<PointAttribute>) {
        match (naming, self.hostmetrics) {
            (Naming::Hostmetrics, Some(h)) => (h.name, h.unit, h.attribute),
            _ => (self.name, self.unit, self.attribute),
        }
    }
}

const CPU_MODES: &[(&str, &str)] = &[
    (semconv::CPU_MODE_USER, "user"),
    (semconv::CPU_MODE_SYSTEM, "system"),
    (semconv::CPU_MODE_WAIT, "wait"),
];
const CPU_MODE: PointAttribute = PointAttribute {
    key: semconv::CPU_MODE,
    values: CPU_MODES,
};
const CPU_STATE: PointAttribute = PointAttribute {
    key: "state",
    values: CPU_MODES,
};
const DIRECTIONS: &[(&str, &str)] = &[
    (semconv::DISK_IO_DIRECTION_READ, "read"),
    (semconv::DISK_IO_DIRECTION_WRITE, "write"),
];
const DISK_IO_DIRECTION: PointAttribute = PointAttribute {
    key: semconv::DISK_IO_DIRECTION,
    values: DIRECTIONS,
};
const DIRECTION: PointAttribute = PointAttribute {
    key: "direction",
    values: DIRECTIONS,
};
const SWITCHES: &[(&str, &str)] = &[
    (semconv::CONTEXT_SWITCH_VOLUNTARY, "voluntary"),
    (semconv::CONTEXT_SWITCH_INVOLUNTARY, "involuntary"),
];
const FAULTS: &[(&str, &str)] = &[
    (semconv::PAGING_FAULT_MAJOR, "major"),
    (semconv::PAGING_FAULT_MINOR, "minor"),
];

/// Process states: the semconv meaning, what `ps` shows for it, and the
/// Collector's `status` value. The Collector splits what semconv calls
/// sleeping into sleeping, blocked (uninterruptible, `D`) and idle (`I`).
pub const PROCESS_STATES: &[ProcessState] = &[
    ProcessState::new(b'R', "running", "running"),
    ProcessState::new(b'S', "sleeping", "sleeping"),
    ProcessState::new(b'D', "sleeping", "blocked"),
    ProcessState::new(b'I', "sleeping", "idle"),
    ProcessState::new(b'T', "stopped", "stopped"),
    ProcessState::new(b't', "stopped", "stopped"),
    ProcessState::new(b'W', "sleeping", "paging"),
    ProcessState::new(b'Z', "defunct", "zombies"),
    ProcessState::new(b'X', "defunct", "unknown"),
];

/// One `/proc/PID/stat` state letter and the value each naming gives it.
#[derive(Debug, Clone, Copy)]
pub struct ProcessState {
    pub letter: u8,
    pub semconv: &'static str,
    pub hostmetrics: &'static str,
}

impl ProcessState {
    const fn new(letter: u8, semconv: &'static str, hostmetrics: &'static str) -> Self {
        ProcessState {
            letter,
            semconv,
            hostmetrics,
        }
    }
}

/// What a state letter outside [`PROCESS_STATES`] counts as.
pub const UNKNOWN_STATE: ProcessState = ProcessState::new(b'?', "unknown", "unknown");

const fn metric(
    name: &'static str,
    description: &'static str,
    unit: &'static str,
    kind: MetricKind,
) -> MetricSpec {
    MetricSpec {
        name,
        description,
        unit,
        kind,
        enabled_by_default: false,
        attribute: None,
        hostmetrics: None,
    }
}

const fn same_name(name: &'static str, unit: &'static str) -> Option<Hostmetrics> {
    Some(Hostmetrics {
        name,
        unit,
        attribute: None,
    })
}

/// Every metric, in the order a resource lists them. The defaults match the
/// OpenTelemetry Collector's hostmetrics process scraper, so a user moving
/// over gets the same series; what it has off is off here too, and each
/// file only some metrics need is read only when one of them is on.
pub const METRICS: &[MetricSpec] = &[
    MetricSpec {
        enabled_by_default: true,
        attribute: Some(CPU_MODE),
        hostmetrics: Some(Hostmetrics {
            name: semconv::PROCESS_CPU_TIME,
            unit: "s",
            attribute: Some(CPU_STATE),
        }),
        ..metric(
            semconv::PROCESS_CPU_TIME,
            "Total CPU seconds broken down by different CPU modes.",
            "s",
            MetricKind::COUNTER,
        )
    },
    MetricSpec {
        attribute: Some(CPU_MODE),
        hostmetrics: Some(Hostmetrics {
            name: semconv::PROCESS_CPU_UTILIZATION,
            unit: "1",
            attribute: Some(CPU_STATE),
        }),
        ..metric(
            semconv::PROCESS_CPU_UTILIZATION,
            "Difference in process.cpu.time since the last measurement, divided by the elapsed time and number of CPUs available to the process.",
            "1",
            MetricKind::Gauge,
        )
    },
    MetricSpec {
        enabled_by_default: true,
        hostmetrics: same_name(semconv::PROCESS_MEMORY_USAGE, "By"),
        ..metric(
            semconv::PROCESS_MEMORY_USAGE,
            "The amount of physical memory in use.",
            "By",
            MetricKind::UP_DOWN_COUNTER,
        )
    },
    MetricSpec {
        enabled_by_default: true,
        hostmetrics: same_name(semconv::PROCESS_MEMORY_VIRTUAL, "By"),
        ..metric(
            semconv::PROCESS_MEMORY_VIRTUAL,
            "The amount of committed virtual memory.",
            "By",
            MetricKind::UP_DOWN_COUNTER,
        )
    },
    MetricSpec {
        hostmetrics: same_name(semconv::PROCESS_MEMORY_UTILIZATION, "1"),
        ..metric(
            semconv::PROCESS_MEMORY_UTILIZATION,
            "Resident memory as a share of the host's physical memory (MemTotal); a percentage (0-100) with naming: hostmetrics, as the Collector reports it.",
            "1",
            MetricKind::Gauge,
        )
    },
    MetricSpec {
        enabled_by_default: true,
        attribute: Some(DISK_IO_DIRECTION),
        hostmetrics: Some(Hostmetrics {
            name: semconv::PROCESS_DISK_IO,
            unit: "By",
            attribute: Some(DIRECTION),
        }),
        ..metric(
            semconv::PROCESS_DISK_IO,
            "Disk bytes transferred.",
            "By",
            MetricKind::COUNTER,
        )
    },
    MetricSpec {
        attribute: Some(DISK_IO_DIRECTION),
        hostmetrics: Some(Hostmetrics {
            name: semconv::PROCESS_DISK_OPERATIONS,
            unit: "{operations}",
            attribute: Some(DIRECTION),
        }),
        ..metric(
            semconv::PROCESS_DISK_OPERATIONS,
            "Read and write system calls made (syscr and syscw of /proc/PID/io), as the Collector counts disk operations.",
            "{operation}",
            MetricKind::COUNTER,
        )
    },
    MetricSpec {
        hostmetrics: same_name("process.threads", "{threads}"),
        ..metric(
            semconv::PROCESS_THREAD_COUNT,
            "Process threads count.",
            "{thread}",
            MetricKind::UP_DOWN_COUNTER,
        )
    },
    MetricSpec {
        hostmetrics: same_name("process.open_file_descriptors", "{count}"),
        ..metric(
            semconv::PROCESS_UNIX_FILE_DESCRIPTOR_COUNT,
            "Number of unix file descriptors in use by the process.",
            "{file_descriptor}",
            MetricKind::UP_DOWN_COUNTER,
        )
    },
    metric(
        semconv::PROCESS_UNIX_FILE_DESCRIPTOR_LIMIT,
        "The soft limit on open file descriptors (RLIMIT_NOFILE) of the process; absent when unlimited.",
        "{file_descriptor}",
        MetricKind::UP_DOWN_COUNTER,
    ),
    MetricSpec {
        attribute: Some(PointAttribute {
            key: semconv::PROCESS_CONTEXT_SWITCH_TYPE,
            values: SWITCHES,
        }),
        hostmetrics: Some(Hostmetrics {
            name: semconv::PROCESS_CONTEXT_SWITCHES,
            unit: "{count}",
            attribute: Some(PointAttribute {
                key: "type",
                values: SWITCHES,
            }),
        }),
        ..metric(
            semconv::PROCESS_CONTEXT_SWITCHES,
            "Number of times the process has been context switched.",
            "{context_switch}",
            MetricKind::COUNTER,
        )
    },
    MetricSpec {
        attribute: Some(PointAttribute {
            key: semconv::SYSTEM_PAGING_FAULT_TYPE,
            values: FAULTS,
        }),
        hostmetrics: Some(Hostmetrics {
            name: semconv::PROCESS_PAGING_FAULTS,
            unit: "{faults}",
            attribute: Some(PointAttribute {
                key: "type",
                values: FAULTS,
            }),
        }),
        ..metric(
            semconv::PROCESS_PAGING_FAULTS,
            "Number of page faults the process has made.",
            "{fault}",
            MetricKind::COUNTER,
        )
    },
    MetricSpec {
        hostmetrics: same_name(semconv::PROCESS_SIGNALS_PENDING, "{signals}"),
        ..metric(
            semconv::PROCESS_SIGNALS_PENDING,
            "Number of distinct signals pending for the process (thread-directed and process-wide).",
            "{signal}",
            MetricKind::UP_DOWN_COUNTER,
        )
    },
    metric(
        semconv::PROCESS_MEMORY_PSS,
        "Proportional set size: resident memory with each shared page divided among the processes mapping it (smaps_rollup).",
        "By",
        MetricKind::UP_DOWN_COUNTER,
    ),
    metric(
        semconv::PROCESS_MEMORY_USS,
        "Unique set size: resident memory private to the process, freed if it exited (smaps_rollup).",
        "By",
        MetricKind::UP_DOWN_COUNTER,
    ),
    metric(
        semconv::PROCESS_MEMORY_SWAP,
        "Memory of the process swapped out (smaps_rollup).",
        "By",
        MetricKind::UP_DOWN_COUNTER,
    ),
    MetricSpec {
        hostmetrics: same_name(semconv::PROCESS_UPTIME, "s"),
        ..metric(
            semconv::PROCESS_UPTIME,
            "The time the process has been running.",
            "s",
            MetricKind::Gauge,
        )
    },
    MetricSpec {
        attribute: Some(PointAttribute {
            key: semconv::PROCESS_STATE,
            values: &[],
        }),
        hostmetrics: Some(Hostmetrics {
            name: "system.processes.count",
            unit: "{processes}",
            attribute: Some(PointAttribute {
                key: "status",
                values: &[],
            }),
        }),
        ..metric(
            semconv::SYSTEM_PROCESS_COUNT,
            "Processes of the host in each state, counted in the scrape's pass over /proc (kernel threads included).",
            "{process}",
            MetricKind::UP_DOWN_COUNTER,
        )
    },
    MetricSpec {
        hostmetrics: same_name("system.processes.created", "{processes}"),
        ..metric(
            semconv::SYSTEM_PROCESS_CREATED,
            "Processes created since boot (the processes line of /proc/stat).",
            "{process}",
            MetricKind::COUNTER,
        )
    },
];

/// The metric called `name` in either naming.
pub fn spec(name: &str) -> Option<&'static MetricSpec> {
    METRICS
        .iter()
        .find(|m| m.name == name || m.hostmetrics.is_some_and(|h| h.name == name))
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
    /// Semconv names, or the Collector's.
    pub naming: Naming,
    /// The `wait` point of `process.cpu.time` and `.utilization` (block I/O
    /// delay); `None`: on with `naming: hostmetrics`, as the Collector emits
    /// it, off with semconv (one more series per process).
    pub cpu_wait: Option<bool>,
    /// Per-metric switches over the defaults (either name).
    pub metrics: BTreeMap<String, Toggle>,
    /// Per-resource-attribute switches over the defaults (either name).
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
            naming: Naming::Semconv,
            cpu_wait: None,
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
        let mut seen_metrics: BTreeMap<&str, &str> = BTreeMap::new();
        for name in self.metrics.keys() {
            match spec(name) {
                None => problems.push(Problem::new(
                    "metrics",
                    format!(
                        "unknown metric {name:?}; known metrics: {}",
                        known_metrics()
                    ),
                )),
                Some(m) => {
                    if let Some(other) = seen_metrics.insert(m.name, name) {
                        problems.push(Problem::new(
                            "metrics",
                            format!("{other:?} and {name:?} name the same metric; keep one"),
                        ));
                    }
                }
            }
        }
        let mut seen_attributes: BTreeMap<&str, &str> = BTreeMap::new();
        for name in self.resource_attributes.keys() {
            match attribute_spec(name) {
                None => {
                    let known: Vec<&str> = RESOURCE_ATTRIBUTES.iter().map(|a| a.name).collect();
                    problems.push(Problem::new(
                        "resource_attributes",
                        format!(
                            "unknown attribute {name:?}; known attributes: {}",
                            known.join(", ")
                        ),
                    ));
                }
                Some(a) => {
                    if let Some(other) = seen_attributes.insert(a.name, name) {
                        problems.push(Problem::new(
                            "resource_attributes",
                            format!("{other:?} and {name:?} name the same attribute; keep one"),
                        ));
                    }
                }
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

    /// Whether metric `name` (either naming) is on: its toggle, else its
    /// default; unknown names are off.
    pub fn metric_enabled(&self, name: &str) -> bool {
        let Some(wanted) = spec(name) else {
            return false;
        };
        self.metrics
            .iter()
            .find(|(k, _)| spec(k).is_some_and(|s| s.name == wanted.name))
            .map_or(wanted.enabled_by_default, |(_, t)| t.enabled)
    }

    /// Whether resource attribute `name` (either naming) is on: its toggle,
    /// else its default (with `naming: hostmetrics`, off for what the
    /// Collector's scraper does not set); unknown names are off.
    pub fn attribute_enabled(&self, name: &str) -> bool {
        let Some(wanted) = attribute_spec(name) else {
            return false;
        };
        let default = wanted.enabled_by_default
            && (self.naming == Naming::Semconv || wanted.hostmetrics.is_some());
        self.resource_attributes
            .iter()
            .find(|(k, _)| attribute_spec(k).is_some_and(|s| s.name == wanted.name))
            .map_or(default, |(_, t)| t.enabled)
    }

    /// The key attribute `name` is emitted under, `None` when it is off.
    pub fn attribute_key(&self, name: &str) -> Option<&'static str> {
        let spec = attribute_spec(name)?;
        self.attribute_enabled(name).then(|| match self.naming {
            Naming::Hostmetrics => spec.hostmetrics.unwrap_or(spec.name),
            Naming::Semconv => spec.name,
        })
    }

    /// Whether CPU time and utilization carry a `wait` point.
    pub fn cpu_wait_enabled(&self) -> bool {
        self.cpu_wait.unwrap_or(self.naming == Naming::Hostmetrics)
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
    fn hostmetrics_naming_takes_either_name_and_the_collectors_defaults() {
        let c = yaml(
            "naming: hostmetrics\nmetrics:\n  process.threads: { enabled: true }\n  \
             process.unix.file_descriptor.count: { enabled: true }\n\
             resource_attributes:\n  process.cgroup: { enabled: true }\n",
        )
        .expect("valid yaml");
        assert!(c.validate().is_empty(), "{:?}", c.validate());
        assert_eq!(c.naming, Naming::Hostmetrics);
        // Toggles by either name reach the same metric.
        assert!(c.metric_enabled("process.thread.count"));
        assert!(c.metric_enabled("process.open_file_descriptors"));
        assert!(c.cpu_wait_enabled(), "the Collector emits wait on Linux");
        assert_eq!(
            c.attribute_key("process.linux.cgroup"),
            Some("process.cgroup")
        );
        assert_eq!(c.attribute_key("process.pid"), Some("process.pid"));
        // Phoenix's own attributes are off unless asked for.
        assert_eq!(c.attribute_key("process.creation.time"), None);
        assert_eq!(c.attribute_key("container.id"), None);
        assert_eq!(c.attribute_key("host.name"), Some("host.name"));

        let semconv = ProcfsConfig::default();
        assert!(!semconv.cpu_wait_enabled());
        assert_eq!(semconv.attribute_key("process.cgroup"), None);
        assert_eq!(semconv.attribute_key("container.id"), Some("container.id"));
        let c = yaml("cpu_wait: true\nresource_attributes: { process.cgroup: { enabled: true } }")
            .expect("valid");
        assert!(c.cpu_wait_enabled());
        assert_eq!(
            c.attribute_key("process.cgroup"),
            Some("process.linux.cgroup")
        );
        assert!(yaml("naming: prometheus").is_err());
    }

    #[test]
    fn both_names_of_one_metric_is_a_problem() {
        let c = yaml(
            "metrics:\n  process.threads: { enabled: true }\n  process.thread.count: { enabled: false }\n\
             resource_attributes:\n  process.cgroup: { enabled: true }\n  process.linux.cgroup: { enabled: true }\n",
        )
        .expect("parses");
        let problems = c.validate();
        assert_eq!(problems.len(), 2, "{problems:?}");
        assert!(
            problems[0].message.contains("name the same metric"),
            "{problems:?}"
        );
        assert!(
            problems[1].message.contains("name the same attribute"),
            "{problems:?}"
        );
    }

    #[test]
    fn every_collector_name_is_unique_and_maps_back() {
        for m in METRICS {
            assert_eq!(spec(m.name).map(|s| s.name), Some(m.name));
            if let Some(h) = m.hostmetrics {
                assert_eq!(spec(h.name).map(|s| s.name), Some(m.name), "{}", h.name);
            }
        }
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
