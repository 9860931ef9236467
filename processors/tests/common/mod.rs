//! Synthetic batches for the processor tests: processes with random usage,
//! random priorities and executable names from a small set, built the way
//! the procfs receiver builds them (shared descriptors and point attribute
//! sets, one resource per process with a stable identity).
//!
//! Every double is a multiple of 1/1024 well below 2^43, so any sum of a few
//! hundred of them is exact in f64 whatever the order: conservation can be
//! checked with `==`, not a tolerance.

#![allow(dead_code)]

use std::collections::BTreeMap;
use std::sync::Arc;

use phoenix_processors::model::{
    Attributes, Batch, KeyValue, Metric, MetricDesc, MetricKind, Number, Point, Resource, Value,
};
use phoenix_processors::semconv;
use proptest::prelude::*;
use smallvec::smallvec;

pub const NAMES: &[&str] = &["nginx", "postgres", "java", "python3", "bash", "sshd"];
pub const OWNERS: &[&str] = &["root", "www-data", "postgres"];
pub const PRIORITIES: &[&str] = &["critical", "high", "medium", "low"];
pub const T0: u64 = 1_700_000_000_000_000_000;
pub const SEC: u64 = 1_000_000_000;

#[derive(Debug, Clone)]
pub struct Proc {
    pub pid: i64,
    pub name: usize,
    pub owner: usize,
    /// Index into PRIORITIES, or None for an untagged process.
    pub priority: Option<usize>,
    /// CPU seconds (user, system) in 1/1024 s.
    pub cpu: (u32, u32),
    /// Utilization (user, system) in 1/1024.
    pub util: (u16, u16),
    pub memory: u32,
    pub io: (u32, u32),
    pub threads: u8,
    /// Seconds since start at T0.
    pub age: u32,
}

pub fn proc_strategy() -> impl Strategy<Value = Proc> {
    (
        (1i64..5000, 0..NAMES.len(), 0..OWNERS.len()),
        prop::option::of(0..PRIORITIES.len()),
        (any::<u32>(), any::<u32>()),
        (0u16..2048, 0u16..2048),
        (
            any::<u32>(),
            (any::<u32>(), any::<u32>()),
            1u8..64,
            0u32..1_000_000,
        ),
    )
        .prop_map(
            |((pid, name, owner), priority, cpu, util, (memory, io, threads, age))| Proc {
                pid,
                name,
                owner,
                priority,
                cpu,
                util,
                memory,
                io,
                threads,
                age,
            },
        )
}

/// Processes with distinct pids (a pid appears once per scrape).
pub fn procs_strategy(max: usize) -> impl Strategy<Value = Vec<Proc>> {
    prop::collection::vec(proc_strategy(), 0..max).prop_map(|mut v| {
        let mut seen = std::collections::HashSet::new();
        v.retain(|p| seen.insert(p.pid));
        v
    })
}

/// Descriptors and point attributes shared by every resource of a batch.
pub struct Shape {
    pub cpu_time: Arc<MetricDesc>,
    pub cpu_util: Arc<MetricDesc>,
    pub memory: Arc<MetricDesc>,
    pub disk_io: Arc<MetricDesc>,
    pub threads: Arc<MetricDesc>,
    pub uptime: Arc<MetricDesc>,
    pub user: Attributes,
    pub system: Attributes,
    pub read: Attributes,
    pub write: Attributes,
}

fn desc(name: &str, unit: &str, kind: MetricKind) -> Arc<MetricDesc> {
    Arc::new(MetricDesc {
        name: name.into(),
        description: "".into(),
        unit: unit.into(),
        kind,
    })
}

fn one(k: &str, v: &str) -> Attributes {
    Attributes::new(vec![KeyValue::new(k.into(), Value::Str(v.into()))])
}

impl Default for Shape {
    fn default() -> Self {
        Shape {
            cpu_time: desc(semconv::PROCESS_CPU_TIME, "s", MetricKind::COUNTER),
            cpu_util: desc(semconv::PROCESS_CPU_UTILIZATION, "1", MetricKind::Gauge),
            memory: desc(
                semconv::PROCESS_MEMORY_USAGE,
                "By",
                MetricKind::UP_DOWN_COUNTER,
            ),
            disk_io: desc(semconv::PROCESS_DISK_IO, "By", MetricKind::COUNTER),
            threads: desc(
                semconv::PROCESS_THREAD_COUNT,
                "{thread}",
                MetricKind::UP_DOWN_COUNTER,
            ),
            uptime: desc(semconv::PROCESS_UPTIME, "s", MetricKind::Gauge),
            user: one(semconv::CPU_MODE, semconv::CPU_MODE_USER),
            system: one(semconv::CPU_MODE, semconv::CPU_MODE_SYSTEM),
            read: one(semconv::DISK_IO_DIRECTION, semconv::DISK_IO_DIRECTION_READ),
            write: one(semconv::DISK_IO_DIRECTION, semconv::DISK_IO_DIRECTION_WRITE),
        }
    }
}

fn point(attributes: &Attributes, start: u64, value: Number) -> Point {
    Point {
        attributes: attributes.clone(),
        start_time_unix_nano: start,
        value,
    }
}

fn s(k: &str, v: impl Into<Arc<str>>) -> KeyValue {
    KeyValue::new(k.into(), Value::Str(v.into()))
}

pub fn identity(pid: i64) -> u64 {
    (pid as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15) ^ 0x1234
}

impl Shape {
    pub fn resource(&self, p: &Proc, now: u64) -> Resource {
        let start = now.saturating_sub(u64::from(p.age) * SEC);
        let mut attrs = vec![
            KeyValue::new(semconv::PROCESS_PID.into(), Value::Int(p.pid)),
            s(semconv::PROCESS_EXECUTABLE_NAME, NAMES[p.name]),
            s(semconv::PROCESS_OWNER, OWNERS[p.owner]),
            s(
                semconv::PROCESS_COMMAND_LINE,
                format!("/usr/bin/{} --worker {}", NAMES[p.name], p.pid),
            ),
        ];
        if let Some(pr) = p.priority {
            attrs.push(s(semconv::PHOENIX_PRIORITY, PRIORITIES[pr]));
        }
        let d = |v: u32| Number::Double(f64::from(v) / 1024.0);
        let metrics = vec![
            Metric {
                desc: self.cpu_time.clone(),
                points: smallvec![
                    point(&self.user, start, d(p.cpu.0)),
                    point(&self.system, start, d(p.cpu.1)),
                ],
            },
            Metric {
                desc: self.cpu_util.clone(),
                points: smallvec![
                    point(&self.user, 0, d(u32::from(p.util.0))),
                    point(&self.system, 0, d(u32::from(p.util.1))),
                ],
            },
            Metric {
                desc: self.memory.clone(),
                points: smallvec![point(
                    &Attributes::empty(),
                    start,
                    Number::Int(i64::from(p.memory))
                )],
            },
            Metric {
                desc: self.disk_io.clone(),
                points: smallvec![
                    point(&self.read, start, Number::Int(i64::from(p.io.0))),
                    point(&self.write, start, Number::Int(i64::from(p.io.1))),
                ],
            },
            Metric {
                desc: self.threads.clone(),
                points: smallvec![point(
                    &Attributes::empty(),
                    start,
                    Number::Int(i64::from(p.threads))
                )],
            },
            Metric {
                desc: self.uptime.clone(),
                points: smallvec![point(
                    &Attributes::empty(),
                    0,
                    Number::Double(f64::from(p.age))
                )],
            },
        ];
        Resource {
            attributes: Attributes::new(attrs),
            metrics,
            identity: Some(identity(p.pid)),
        }
    }

    pub fn batch(&self, procs: &[Proc], now: u64) -> Batch {
        Batch {
            time_unix_nano: now,
            common_attributes: Attributes::new(vec![s(semconv::HOST_NAME, "host-1")]),
            resources: procs.iter().map(|p| self.resource(p, now)).collect(),
        }
    }
}

pub fn batch(procs: &[Proc]) -> Batch {
    Shape::default().batch(procs, T0)
}

pub fn is_critical(r: &Resource) -> bool {
    r.attributes.get_str(semconv::PHOENIX_PRIORITY) == Some("critical")
}

/// Sum of every summable metric per (metric name, point attributes), as
/// exact f64 (see the module comment). `process.uptime` (an age, combined
/// by max) and the rollups' own process count are not summable totals.
pub fn totals(batch: &Batch) -> BTreeMap<(String, String), f64> {
    let mut out = BTreeMap::new();
    for r in &batch.resources {
        for m in &r.metrics {
            let name = &*m.desc.name;
            if name == semconv::PROCESS_UPTIME || name == semconv::PHOENIX_PROCESS_COUNT {
                continue;
            }
            for p in &m.points {
                *out.entry((name.to_owned(), format!("{:?}", p.attributes)))
                    .or_insert(0.0) += p.value.as_f64();
            }
        }
    }
    out
}

/// Processes represented: 1 per individual resource, the count of a rollup.
pub fn process_count(batch: &Batch) -> i64 {
    batch
        .resources
        .iter()
        .map(|r| match r.metric(semconv::PHOENIX_PROCESS_COUNT) {
            Some(m) => m.total() as i64,
            None => 1,
        })
        .sum()
}

pub fn series(batch: &Batch) -> usize {
    batch.datapoint_count()
}

pub fn yaml<T: serde::de::DeserializeOwned>(text: &str) -> T {
    serde_norway::from_str(text).expect("valid YAML")
}

/// A quiet process: all usage zero, low priority untagged.
pub fn quiet(pid: i64) -> Proc {
    Proc {
        pid,
        name: 4,
        owner: 0,
        priority: None,
        cpu: (0, 0),
        util: (0, 0),
        memory: 0,
        io: (0, 0),
        threads: 1,
        age: 3600,
    }
}

/// Identities of the individually kept (non-rollup) resources, sorted.
pub fn kept(batch: &Batch) -> Vec<u64> {
    let mut ids: Vec<u64> = batch.resources.iter().filter_map(|r| r.identity).collect();
    ids.sort_unstable();
    ids
}

pub fn by_name<'a>(batch: &'a Batch, name: &str) -> Option<&'a Resource> {
    batch
        .resources
        .iter()
        .find(|r| r.attributes.get_str(semconv::PROCESS_EXECUTABLE_NAME) == Some(name))
}

/// Sets `process.parent_pid` on the resources of the given `(pid, parent)`
/// pairs (every resource with that pid), as the procfs receiver reports it.
pub fn with_parents(mut batch: Batch, links: &[(i64, i64)]) -> Batch {
    let parents: std::collections::HashMap<i64, i64> = links.iter().copied().collect();
    for r in &mut batch.resources {
        let Some(Value::Int(pid)) = r.attributes.get(semconv::PROCESS_PID) else {
            continue;
        };
        if let Some(&parent) = parents.get(pid) {
            r.attributes = r
                .attributes
                .with(semconv::PROCESS_PARENT_PID.into(), Value::Int(parent));
        }
    }
    batch
}
