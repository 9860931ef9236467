//! The metric model shared by receivers, processors and exporters.
//!
//! It mirrors the shape of OTLP (resources → metrics → points) but is built
//! for fan-out: strings are reference-counted and interned, attribute sets
//! are immutable `Arc` slices, so handing the same scrape to five pipelines
//! costs reference-count increments, not string copies.

mod attributes;
mod interner;

use std::sync::Arc;

use smallvec::SmallVec;

pub use attributes::{Attributes, KeyValue, Value};
pub use interner::Interner;

/// A shared, immutable string. Cloning it is a reference-count increment.
pub type Str = Arc<str>;

/// How a sum's points relate over time (OTLP `AggregationTemporality`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Temporality {
    Cumulative,
    Delta,
}

/// The instrument kind of a metric, in OTLP's vocabulary.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum MetricKind {
    /// A last-value measurement (`process.cpu.utilization`, `process.uptime`).
    Gauge,
    /// A sum: monotonic for counters (`process.cpu.time`), non-monotonic for
    /// up-down counters (`process.memory.usage`).
    Sum {
        monotonic: bool,
        temporality: Temporality,
    },
}

impl MetricKind {
    /// A cumulative monotonic sum: an OpenTelemetry Counter.
    pub const COUNTER: MetricKind = MetricKind::Sum {
        monotonic: true,
        temporality: Temporality::Cumulative,
    };
    /// A cumulative non-monotonic sum: an OpenTelemetry UpDownCounter.
    pub const UP_DOWN_COUNTER: MetricKind = MetricKind::Sum {
        monotonic: false,
        temporality: Temporality::Cumulative,
    };

    /// Whether adding values across resources yields a meaningful total
    /// (sums are additive; gauges such as utilization are too for CPU, but
    /// processors decide that per metric).
    pub fn is_sum(&self) -> bool {
        matches!(self, MetricKind::Sum { .. })
    }
}

/// What a metric is: name, unit, kind. Shared by every point of that metric
/// across every resource of a scrape.
#[derive(Clone, Debug, PartialEq)]
pub struct MetricDesc {
    pub name: Str,
    pub description: Str,
    pub unit: Str,
    pub kind: MetricKind,
}

/// A numeric value: OTLP distinguishes integer and double points.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Number {
    Int(i64),
    Double(f64),
}

impl Number {
    pub fn as_f64(self) -> f64 {
        match self {
            Number::Int(v) => v as f64,
            Number::Double(v) => v,
        }
    }
}

/// One data point: its own attributes (e.g. `cpu.mode=user`), the start of
/// its cumulative window, and a value.
#[derive(Clone, Debug, PartialEq)]
pub struct Point {
    pub attributes: Attributes,
    /// Start of the cumulative window (process creation time for counters);
    /// 0 when not applicable (gauges).
    pub start_time_unix_nano: u64,
    pub value: Number,
}

/// A metric of one resource: its description and its points (at most a
/// couple per process metric, so they live inline).
#[derive(Clone, Debug, PartialEq)]
pub struct Metric {
    pub desc: Arc<MetricDesc>,
    pub points: SmallVec<[Point; 2]>,
}

impl Metric {
    /// Sum of the metric's points (e.g. user + system CPU time).
    pub fn total(&self) -> f64 {
        self.points.iter().map(|p| p.value.as_f64()).sum()
    }
}

/// One monitored entity (for the procfs receiver: one process) and its metrics.
#[derive(Clone, Debug, PartialEq)]
pub struct Resource {
    pub attributes: Attributes,
    pub metrics: Vec<Metric>,
    /// Stable identity of the process behind this resource (a hash of pid
    /// and start time), never exported. Processors that keep a process
    /// individually keep it, rollups (aggregates, `others`) have `None`; it
    /// lets top-k hysteresis and coverage checks follow a process even after
    /// an `attributes` processor removed `process.pid`.
    pub identity: Option<u64>,
}

impl Resource {
    /// The metric with this name, if the resource has it.
    pub fn metric(&self, name: &str) -> Option<&Metric> {
        self.metrics.iter().find(|m| &*m.desc.name == name)
    }
}

/// Everything one scrape (or one pipeline's output of it) holds, stamped
/// with the time of the scrape.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Batch {
    pub time_unix_nano: u64,
    /// Attributes every resource of the batch carries (`host.name`,
    /// `phoenix.pipeline`, ...). Kept once here rather than copied into each
    /// resource; exporters merge them into every resource they emit, and a
    /// resource's own attribute wins on a key clash.
    pub common_attributes: Attributes,
    pub resources: Vec<Resource>,
}

impl Batch {
    /// Number of data points across all resources and metrics.
    pub fn datapoint_count(&self) -> usize {
        self.resources
            .iter()
            .flat_map(|r| r.metrics.iter())
            .map(|m| m.points.len())
            .sum()
    }
}
