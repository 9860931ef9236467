//! Folding many resources into one: the shared core of `aggregate` (one
//! rollup per group) and `topk`/`budget` (the `others` rollup).
//!
//! Metrics are combined per (metric name, point attributes), so `cpu.mode=user`
//! and `cpu.mode=system` stay apart. Sums are exact for integer points (i64,
//! falling back to f64 only on overflow) and compensated (Neumaier) for
//! doubles, because the agent checks that totals are conserved.

use std::sync::Arc;

use smallvec::SmallVec;

use super::aggregate::AggregateFunction;
use crate::model::{Attributes, Metric, MetricDesc, MetricKind, Number, Point, Resource, Str};
use crate::semconv;

/// The descriptor of `phoenix.process.count`, built once per processor and
/// shared by every rollup it emits.
pub(crate) fn process_count_desc() -> Arc<MetricDesc> {
    Arc::new(MetricDesc {
        name: semconv::PHOENIX_PROCESS_COUNT.into(),
        description: "Number of processes this resource stands for.".into(),
        unit: "{process}".into(),
        kind: MetricKind::UP_DOWN_COUNTER,
    })
}

/// One accumulating rollup. Reused across intervals: `finish` empties it but
/// keeps its allocations.
#[derive(Debug, Default)]
pub(crate) struct Rollup {
    metrics: Vec<AccMetric>,
    /// Processes folded in so far (a folded rollup brings its own count).
    processes: i64,
    /// Resources folded in so far.
    resources: usize,
    /// Earliest non-zero start time of any folded point: the start of the
    /// process count's cumulative window.
    start: u64,
}

#[derive(Debug)]
struct AccMetric {
    desc: Arc<MetricDesc>,
    function: AggregateFunction,
    points: SmallVec<[AccPoint; 2]>,
}

#[derive(Debug)]
struct AccPoint {
    attributes: Attributes,
    start: u64,
    n: u64,
    /// Every value so far was an integer and their sum fits an i64.
    all_int: bool,
    int_sum: i64,
    sum: f64,
    compensation: f64,
    min: Number,
    max: Number,
}

impl AccPoint {
    fn new(p: &Point) -> AccPoint {
        let (all_int, int_sum) = match p.value {
            Number::Int(v) => (true, v),
            Number::Double(_) => (false, 0),
        };
        AccPoint {
            attributes: p.attributes.clone(),
            start: p.start_time_unix_nano,
            n: 1,
            all_int,
            int_sum,
            sum: p.value.as_f64(),
            compensation: 0.0,
            min: p.value,
            max: p.value,
        }
    }

    fn add(&mut self, p: &Point) {
        self.n += 1;
        if p.start_time_unix_nano != 0 && (self.start == 0 || p.start_time_unix_nano < self.start) {
            self.start = p.start_time_unix_nano;
        }
        match p.value {
            Number::Int(v) if self.all_int => match self.int_sum.checked_add(v) {
                Some(s) => self.int_sum = s,
                None => self.all_int = false,
            },
            Number::Int(_) => {}
            Number::Double(_) => self.all_int = false,
        }
        // Neumaier's variant of Kahan summation: keeps the low-order bits
        // a plain running sum drops when adding small values to a big one.
        let v = p.value.as_f64();
        let t = self.sum + v;
        if self.sum.abs() >= v.abs() {
            self.compensation += (self.sum - t) + v;
        } else {
            self.compensation += (v - t) + self.sum;
        }
        self.sum = t;
        if p.value.as_f64() < self.min.as_f64() {
            self.min = p.value;
        }
        if p.value.as_f64() > self.max.as_f64() {
            self.max = p.value;
        }
    }

    fn value(&self, function: AggregateFunction) -> Number {
        match function {
            AggregateFunction::Sum if self.all_int => Number::Int(self.int_sum),
            AggregateFunction::Sum => Number::Double(self.sum + self.compensation),
            AggregateFunction::Min => self.min,
            AggregateFunction::Max => self.max,
            AggregateFunction::Mean => {
                Number::Double((self.sum + self.compensation) / self.n.max(1) as f64)
            }
        }
    }
}

fn same_metric(a: &Arc<MetricDesc>, b: &Arc<MetricDesc>) -> bool {
    Arc::ptr_eq(a, b) || a.name == b.name
}

impl Rollup {
    pub(crate) fn is_empty(&self) -> bool {
        self.resources == 0
    }

    /// Fold one resource in. `function` is asked once per metric name per
    /// rollup, the first time that metric appears.
    pub(crate) fn add(
        &mut self,
        resource: &Resource,
        function: &dyn Fn(&MetricDesc) -> AggregateFunction,
    ) {
        self.resources += 1;
        let mut counted = false;
        for (j, metric) in resource.metrics.iter().enumerate() {
            if &*metric.desc.name == semconv::PHOENIX_PROCESS_COUNT {
                // A rollup folded into a rollup: add the processes it stands
                // for, not 1, and do not carry its count as a plain metric.
                self.processes = self
                    .processes
                    .saturating_add(metric.total().max(0.0) as i64);
                counted = true;
                continue;
            }
            // Resources of one scrape list their metrics in the same order,
            // so position j is almost always the right slot.
            let slot = match self.metrics.get(j) {
                Some(acc) if same_metric(&acc.desc, &metric.desc) => j,
                _ => match self
                    .metrics
                    .iter()
                    .position(|acc| same_metric(&acc.desc, &metric.desc))
                {
                    Some(i) => i,
                    None => {
                        self.metrics.push(AccMetric {
                            function: function(&metric.desc),
                            desc: metric.desc.clone(),
                            points: SmallVec::new(),
                        });
                        self.metrics.len() - 1
                    }
                },
            };
            let acc = &mut self.metrics[slot];
            for (q, point) in metric.points.iter().enumerate() {
                if point.start_time_unix_nano != 0
                    && (self.start == 0 || point.start_time_unix_nano < self.start)
                {
                    self.start = point.start_time_unix_nano;
                }
                let existing = match acc.points.get(q) {
                    Some(ap) if ap.attributes == point.attributes => Some(q),
                    _ => acc
                        .points
                        .iter()
                        .position(|ap| ap.attributes == point.attributes),
                };
                match existing {
                    Some(i) => acc.points[i].add(point),
                    None => acc.points.push(AccPoint::new(point)),
                }
            }
        }
        if !counted {
            self.processes = self.processes.saturating_add(1);
        }
    }

    /// The folded resource, with `phoenix.process.count` appended; leaves
    /// the rollup empty and ready for reuse.
    pub(crate) fn finish(
        &mut self,
        attributes: Attributes,
        count_desc: &Arc<MetricDesc>,
    ) -> Resource {
        let mut metrics = Vec::with_capacity(self.metrics.len() + 1);
        for acc in self.metrics.drain(..) {
            let points = acc
                .points
                .iter()
                .map(|ap| Point {
                    attributes: ap.attributes.clone(),
                    start_time_unix_nano: ap.start,
                    value: ap.value(acc.function),
                })
                .collect();
            metrics.push(Metric {
                desc: acc.desc,
                points,
            });
        }
        metrics.push(Metric {
            desc: count_desc.clone(),
            points: smallvec::smallvec![Point {
                attributes: Attributes::empty(),
                start_time_unix_nano: self.start,
                value: Number::Int(self.processes),
            }],
        });
        self.processes = 0;
        self.resources = 0;
        self.start = 0;
        Resource {
            attributes,
            metrics,
            identity: None,
        }
    }
}

/// Counts the distinct series (metric name + point attributes) a set of
/// resources would occupy once folded into one rollup: what `budget` must
/// reserve for `others`.
#[derive(Debug, Default)]
pub(crate) struct SeriesUnion {
    seen: Vec<(Str, Attributes)>,
}

impl SeriesUnion {
    pub(crate) fn clear(&mut self) {
        self.seen.clear();
    }

    pub(crate) fn add(&mut self, resource: &Resource) {
        let mut hint = 0;
        for metric in &resource.metrics {
            for point in &metric.points {
                // Same shape as the previous resource: the next slot matches.
                if let Some((name, attrs)) = self.seen.get(hint)
                    && *name == metric.desc.name
                    && *attrs == point.attributes
                {
                    hint += 1;
                    continue;
                }
                match self
                    .seen
                    .iter()
                    .position(|(n, a)| *n == metric.desc.name && *a == point.attributes)
                {
                    Some(i) => hint = i + 1,
                    None => {
                        self.seen
                            .push((metric.desc.name.clone(), point.attributes.clone()));
                        hint = self.seen.len();
                    }
                }
            }
        }
    }

    /// Distinct series seen, plus one for `phoenix.process.count` unless it
    /// is already among them.
    pub(crate) fn rollup_series(&self) -> usize {
        let has_count = self
            .seen
            .iter()
            .any(|(n, _)| &**n == semconv::PHOENIX_PROCESS_COUNT);
        self.seen.len() + usize::from(!has_count)
    }
}
