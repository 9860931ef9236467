//! The metrics the receiver can emit, their defaults, and the descriptors and
//! point attribute sets it builds once and shares across every process.

use std::sync::Arc;

use phoenix_processors::semconv;
use phoenix_processors::{Attributes, KeyValue, MetricDesc, Value};

use phoenix_config::receiver::procfs::{ProcfsConfig, spec};

/// The descriptor of each metric, `None` when it is disabled: the option is
/// both the on/off switch the scrape loop tests and the shared `Arc` it clones.
#[derive(Debug, Clone, Default)]
pub struct Descs {
    pub cpu_time: Option<Arc<MetricDesc>>,
    pub cpu_utilization: Option<Arc<MetricDesc>>,
    pub memory_usage: Option<Arc<MetricDesc>>,
    pub memory_virtual: Option<Arc<MetricDesc>>,
    pub disk_io: Option<Arc<MetricDesc>>,
    pub thread_count: Option<Arc<MetricDesc>>,
    pub fd_count: Option<Arc<MetricDesc>>,
    pub context_switches: Option<Arc<MetricDesc>>,
    pub paging_faults: Option<Arc<MetricDesc>>,
    pub uptime: Option<Arc<MetricDesc>>,
}

impl Descs {
    pub fn new(config: &ProcfsConfig) -> Descs {
        let desc = |name: &str| {
            let spec = spec(name)?;
            config.metric_enabled(name).then(|| {
                Arc::new(MetricDesc {
                    name: spec.name.into(),
                    description: spec.description.into(),
                    unit: spec.unit.into(),
                    kind: spec.kind,
                })
            })
        };
        Descs {
            cpu_time: desc(semconv::PROCESS_CPU_TIME),
            cpu_utilization: desc(semconv::PROCESS_CPU_UTILIZATION),
            memory_usage: desc(semconv::PROCESS_MEMORY_USAGE),
            memory_virtual: desc(semconv::PROCESS_MEMORY_VIRTUAL),
            disk_io: desc(semconv::PROCESS_DISK_IO),
            thread_count: desc(semconv::PROCESS_THREAD_COUNT),
            fd_count: desc(semconv::PROCESS_UNIX_FILE_DESCRIPTOR_COUNT),
            context_switches: desc(semconv::PROCESS_CONTEXT_SWITCHES),
            paging_faults: desc(semconv::PROCESS_PAGING_FAULTS),
            uptime: desc(semconv::PROCESS_UPTIME),
        }
    }

    /// How many metrics a resource carries at most (its `Vec` capacity).
    pub fn enabled_count(&self) -> usize {
        [
            &self.cpu_time,
            &self.cpu_utilization,
            &self.memory_usage,
            &self.memory_virtual,
            &self.disk_io,
            &self.thread_count,
            &self.fd_count,
            &self.context_switches,
            &self.paging_faults,
            &self.uptime,
        ]
        .iter()
        .filter(|d| d.is_some())
        .count()
    }
}

/// The data-point attribute sets (`cpu.mode=user`, ...), built once; a point
/// clones one, which is a reference-count increment.
#[derive(Debug, Clone)]
pub struct PointAttrs {
    /// For single-point metrics. Shared too: an empty `Arc<[_]>` is still
    /// an allocation when made afresh.
    pub none: Attributes,
    pub cpu_user: Attributes,
    pub cpu_system: Attributes,
    pub io_read: Attributes,
    pub io_write: Attributes,
    pub ctx_voluntary: Attributes,
    pub ctx_involuntary: Attributes,
    pub fault_major: Attributes,
    pub fault_minor: Attributes,
}

impl Default for PointAttrs {
    fn default() -> PointAttrs {
        let one =
            |k: &str, v: &str| Attributes::new(vec![KeyValue::new(k.into(), Value::Str(v.into()))]);
        PointAttrs {
            none: Attributes::empty(),
            cpu_user: one(semconv::CPU_MODE, semconv::CPU_MODE_USER),
            cpu_system: one(semconv::CPU_MODE, semconv::CPU_MODE_SYSTEM),
            io_read: one(semconv::DISK_IO_DIRECTION, semconv::DISK_IO_DIRECTION_READ),
            io_write: one(semconv::DISK_IO_DIRECTION, semconv::DISK_IO_DIRECTION_WRITE),
            ctx_voluntary: one(
                semconv::PROCESS_CONTEXT_SWITCH_TYPE,
                semconv::CONTEXT_SWITCH_VOLUNTARY,
            ),
            ctx_involuntary: one(
                semconv::PROCESS_CONTEXT_SWITCH_TYPE,
                semconv::CONTEXT_SWITCH_INVOLUNTARY,
            ),
            fault_major: one(
                semconv::SYSTEM_PAGING_FAULT_TYPE,
                semconv::PAGING_FAULT_MAJOR,
            ),
            fault_minor: one(
                semconv::SYSTEM_PAGING_FAULT_TYPE,
                semconv::PAGING_FAULT_MINOR,
            ),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn descriptors_exist_for_enabled_metrics_only() {
        let descs = Descs::new(&ProcfsConfig::default());
        assert_eq!(descs.enabled_count(), 4);
        assert!(descs.cpu_utilization.is_none());
    }
}
