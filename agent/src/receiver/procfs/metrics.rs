//! The metrics the receiver can emit, under the configured naming, and the
//! descriptors and point attribute sets it builds once and shares across
//! every process.

use std::sync::Arc;

use phoenix_processors::semconv;
use phoenix_processors::{Attributes, KeyValue, MetricDesc, Value};

use phoenix_config::receiver::procfs::{Naming, PROCESS_STATES, ProcfsConfig, UNKNOWN_STATE, spec};

/// The descriptor of each metric, `None` when it is disabled: the option is
/// both the on/off switch the scrape loop tests and the shared `Arc` it clones.
#[derive(Debug, Clone, Default)]
pub struct Descs {
    pub cpu_time: Option<Arc<MetricDesc>>,
    pub cpu_utilization: Option<Arc<MetricDesc>>,
    pub memory_usage: Option<Arc<MetricDesc>>,
    pub memory_virtual: Option<Arc<MetricDesc>>,
    pub memory_utilization: Option<Arc<MetricDesc>>,
    pub disk_io: Option<Arc<MetricDesc>>,
    pub disk_operations: Option<Arc<MetricDesc>>,
    pub thread_count: Option<Arc<MetricDesc>>,
    pub fd_count: Option<Arc<MetricDesc>>,
    pub fd_limit: Option<Arc<MetricDesc>>,
    pub context_switches: Option<Arc<MetricDesc>>,
    pub paging_faults: Option<Arc<MetricDesc>>,
    pub signals_pending: Option<Arc<MetricDesc>>,
    pub memory_pss: Option<Arc<MetricDesc>>,
    pub memory_uss: Option<Arc<MetricDesc>>,
    pub memory_swap: Option<Arc<MetricDesc>>,
    pub uptime: Option<Arc<MetricDesc>>,
    /// Host metrics, on a resource of their own.
    pub process_count: Option<Arc<MetricDesc>>,
    pub process_created: Option<Arc<MetricDesc>>,
}

impl Descs {
    pub fn new(config: &ProcfsConfig) -> Descs {
        let desc = |name: &str| {
            let spec = spec(name)?;
            config.metric_enabled(name).then(|| {
                let (name, unit, _) = spec.named(config.naming);
                Arc::new(MetricDesc {
                    name: name.into(),
                    description: spec.description.into(),
                    unit: unit.into(),
                    kind: spec.kind,
                })
            })
        };
        Descs {
            cpu_time: desc(semconv::PROCESS_CPU_TIME),
            cpu_utilization: desc(semconv::PROCESS_CPU_UTILIZATION),
            memory_usage: desc(semconv::PROCESS_MEMORY_USAGE),
            memory_virtual: desc(semconv::PROCESS_MEMORY_VIRTUAL),
            memory_utilization: desc(semconv::PROCESS_MEMORY_UTILIZATION),
            disk_io: desc(semconv::PROCESS_DISK_IO),
            disk_operations: desc(semconv::PROCESS_DISK_OPERATIONS),
            thread_count: desc(semconv::PROCESS_THREAD_COUNT),
            fd_count: desc(semconv::PROCESS_UNIX_FILE_DESCRIPTOR_COUNT),
            fd_limit: desc(semconv::PROCESS_UNIX_FILE_DESCRIPTOR_LIMIT),
            context_switches: desc(semconv::PROCESS_CONTEXT_SWITCHES),
            paging_faults: desc(semconv::PROCESS_PAGING_FAULTS),
            signals_pending: desc(semconv::PROCESS_SIGNALS_PENDING),
            memory_pss: desc(semconv::PROCESS_MEMORY_PSS),
            memory_uss: desc(semconv::PROCESS_MEMORY_USS),
            memory_swap: desc(semconv::PROCESS_MEMORY_SWAP),
            uptime: desc(semconv::PROCESS_UPTIME),
            process_count: desc(semconv::SYSTEM_PROCESS_COUNT),
            process_created: desc(semconv::SYSTEM_PROCESS_CREATED),
        }
    }

    /// How many metrics a process resource carries at most (its `Vec` capacity).
    pub fn enabled_count(&self) -> usize {
        [
            &self.cpu_time,
            &self.cpu_utilization,
            &self.memory_usage,
            &self.memory_virtual,
            &self.memory_utilization,
            &self.disk_io,
            &self.disk_operations,
            &self.thread_count,
            &self.fd_count,
            &self.fd_limit,
            &self.context_switches,
            &self.paging_faults,
            &self.signals_pending,
            &self.memory_pss,
            &self.memory_uss,
            &self.memory_swap,
            &self.uptime,
        ]
        .iter()
        .filter(|d| d.is_some())
        .count()
    }

    /// Whether `/proc/PID/io` has to be read.
    pub fn needs_io(&self) -> bool {
        self.disk_io.is_some() || self.disk_operations.is_some()
    }

    /// Whether `/proc/PID/status` has to be read.
    pub fn needs_status(&self) -> bool {
        self.context_switches.is_some() || self.signals_pending.is_some()
    }

    /// Whether `/proc/PID/smaps_rollup` has to be read (the costly one).
    pub fn needs_smaps_rollup(&self) -> bool {
        self.memory_pss.is_some() || self.memory_uss.is_some() || self.memory_swap.is_some()
    }

    /// Whether any host-level metric is on.
    pub fn has_host_metrics(&self) -> bool {
        self.process_count.is_some() || self.process_created.is_some()
    }
}

/// The data-point attribute sets (`cpu.mode=user`, ...) under the
/// configured naming, built once; a point clones one, which is a
/// reference-count increment.
#[derive(Debug, Clone)]
pub struct PointAttrs {
    /// For single-point metrics. Shared too: an empty `Arc<[_]>` is still
    /// an allocation when made afresh.
    pub none: Attributes,
    pub cpu_user: Attributes,
    pub cpu_system: Attributes,
    /// `None` when the wait point is off.
    pub cpu_wait: Option<Attributes>,
    pub io_read: Attributes,
    pub io_write: Attributes,
    pub ctx_voluntary: Attributes,
    pub ctx_involuntary: Attributes,
    pub fault_major: Attributes,
    pub fault_minor: Attributes,
    /// `system.process.count`: one set per value the naming emits, in the
    /// order of [`StateCounts`]'s slots, and each state letter's slot.
    pub states: Vec<Attributes>,
    state_slots: [u8; 256],
}

impl PointAttrs {
    pub fn new(config: &ProcfsConfig) -> PointAttrs {
        let naming = config.naming;
        let one =
            |k: &str, v: &str| Attributes::new(vec![KeyValue::new(k.into(), Value::Str(v.into()))]);
        // The set of `metric`'s attribute meaning `meaning`, as this naming spells it.
        let attr = |metric: &str, meaning: &str| {
            let spec = spec(metric).expect("a metric of the table");
            let (_, _, attribute) = spec.named(naming);
            let attribute = attribute.expect("a metric with a point attribute");
            let value = attribute
                .values
                .iter()
                .find(|(m, _)| *m == meaning)
                .map_or(meaning, |(_, v)| v);
            one(attribute.key, value)
        };

        let (_, _, state_attribute) = spec(semconv::SYSTEM_PROCESS_COUNT)
            .expect("in the table")
            .named(naming);
        let state_key = state_attribute.map_or(semconv::PROCESS_STATE, |a| a.key);
        let value_of = |s: &phoenix_config::receiver::procfs::ProcessState| match naming {
            Naming::Semconv => s.semconv,
            Naming::Hostmetrics => s.hostmetrics,
        };
        let mut values: Vec<&str> = Vec::new();
        for s in PROCESS_STATES.iter().chain([&UNKNOWN_STATE]) {
            if !values.contains(&value_of(s)) {
                values.push(value_of(s));
            }
        }
        let unknown = values
            .iter()
            .position(|v| *v == value_of(&UNKNOWN_STATE))
            .expect("pushed above");
        let mut state_slots = [u8::try_from(unknown).unwrap_or(0); 256];
        for s in PROCESS_STATES {
            let slot = values
                .iter()
                .position(|v| *v == value_of(s))
                .unwrap_or(unknown);
            state_slots[usize::from(s.letter)] = u8::try_from(slot).unwrap_or(0);
        }

        PointAttrs {
            none: Attributes::empty(),
            cpu_user: attr(semconv::PROCESS_CPU_TIME, semconv::CPU_MODE_USER),
            cpu_system: attr(semconv::PROCESS_CPU_TIME, semconv::CPU_MODE_SYSTEM),
            cpu_wait: config
                .cpu_wait_enabled()
                .then(|| attr(semconv::PROCESS_CPU_TIME, semconv::CPU_MODE_WAIT)),
            io_read: attr(semconv::PROCESS_DISK_IO, semconv::DISK_IO_DIRECTION_READ),
            io_write: attr(semconv::PROCESS_DISK_IO, semconv::DISK_IO_DIRECTION_WRITE),
            ctx_voluntary: attr(
                semconv::PROCESS_CONTEXT_SWITCHES,
                semconv::CONTEXT_SWITCH_VOLUNTARY,
            ),
            ctx_involuntary: attr(
                semconv::PROCESS_CONTEXT_SWITCHES,
                semconv::CONTEXT_SWITCH_INVOLUNTARY,
            ),
            fault_major: attr(semconv::PROCESS_PAGING_FAULTS, semconv::PAGING_FAULT_MAJOR),
            fault_minor: attr(semconv::PROCESS_PAGING_FAULTS, semconv::PAGING_FAULT_MINOR),
            states: values.iter().map(|v| one(state_key, v)).collect(),
            state_slots,
        }
    }

    /// The slot in [`Self::states`] a `/proc/PID/stat` state letter counts in.
    pub fn state_slot(&self, letter: u8) -> usize {
        usize::from(self.state_slots[usize::from(letter)])
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use phoenix_config::receiver::procfs::Toggle;

    #[test]
    fn descriptors_exist_for_enabled_metrics_only() {
        let descs = Descs::new(&ProcfsConfig::default());
        assert_eq!(descs.enabled_count(), 4);
        assert!(descs.cpu_utilization.is_none());
        assert!(!descs.needs_status() && !descs.needs_smaps_rollup());
        assert!(!descs.has_host_metrics());
    }

    #[test]
    fn hostmetrics_naming_renames_metrics_units_and_point_attributes() {
        let mut config = ProcfsConfig {
            naming: Naming::Hostmetrics,
            ..ProcfsConfig::default()
        };
        config
            .metrics
            .insert("process.threads".into(), Toggle { enabled: true });
        let descs = Descs::new(&config);
        let threads = descs.thread_count.expect("enabled by its Collector name");
        assert_eq!(
            (&*threads.name, &*threads.unit),
            ("process.threads", "{threads}")
        );
        let points = PointAttrs::new(&config);
        let kv = |a: &Attributes| {
            let kv = &a.as_slice()[0];
            (kv.key.to_string(), kv.value.to_string())
        };
        assert_eq!(kv(&points.cpu_user), ("state".into(), "user".into()));
        assert_eq!(
            kv(points.cpu_wait.as_ref().expect("on with hostmetrics")),
            ("state".into(), "wait".into())
        );
        assert_eq!(kv(&points.io_read), ("direction".into(), "read".into()));
        assert_eq!(kv(&points.fault_major), ("type".into(), "major".into()));
        assert_eq!(
            kv(&points.states[points.state_slot(b'D')]),
            ("status".into(), "blocked".into())
        );
        assert_eq!(
            kv(&points.states[points.state_slot(b'Z')]),
            ("status".into(), "zombies".into())
        );
        assert_eq!(
            kv(&points.states[points.state_slot(b'%')]),
            ("status".into(), "unknown".into())
        );

        let semconv = PointAttrs::new(&ProcfsConfig::default());
        assert!(semconv.cpu_wait.is_none());
        assert_eq!(kv(&semconv.cpu_user), ("cpu.mode".into(), "user".into()));
        assert_eq!(
            kv(&semconv.states[semconv.state_slot(b'D')]),
            ("process.state".into(), "sleeping".into())
        );
        assert_eq!(
            kv(&semconv.states[semconv.state_slot(b'Z')]),
            ("process.state".into(), "defunct".into())
        );
    }
}
