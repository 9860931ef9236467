//! Per-pipeline accounting, every interval: what a pipeline's output costs
//! (series, datapoints, encoded bytes, its own CPU, churn) and, inside an
//! experiment, how many of the scrape's critical processes it keeps visible
//! (every pipeline, with or without a baseline) and what a candidate keeps
//! compared with the baseline (top-N fidelity, conservation of totals).

use std::collections::HashMap;
use std::io::Write as _;
use std::time::Duration;

use phoenix_processors::hash::{
    IdMap, IdSet, fnv1a_continue, hash_attributes, hash_attributes_from,
};
use phoenix_processors::model::{Batch, Str, Value};
use phoenix_processors::semconv;
use regex::RegexSet;
use serde::Serialize;

use crate::exporter::otlp::encode;
use phoenix_config::PipelineMode;

/// How many of the baseline's top processes (by CPU and by memory) a
/// candidate is expected to keep individually visible.
pub const TOP_N: usize = 10;

/// What one pipeline's output cost in one interval.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PipelineStats {
    pub pipeline: String,
    pub mode: PipelineMode,
    pub resources: usize,
    /// Distinct metric + attribute sets (what a backend bills as series).
    pub series: usize,
    pub datapoints: usize,
    /// Size of the OTLP protobuf export request, uncompressed and gzipped.
    pub bytes_raw: usize,
    pub bytes_gzip: usize,
    /// Whether `bytes_gzip` was extrapolated from the last measured
    /// compression ratio rather than measured this interval.
    pub bytes_gzip_estimated: bool,
    /// CPU time the pipeline's processors took this interval.
    pub processing_cpu: Duration,
    /// Series that appeared and disappeared since the previous interval.
    pub series_added: usize,
    pub series_removed: usize,
    /// Totals over the output, for conservation checks.
    pub cpu_total: f64,
    pub memory_total: f64,
    /// Processes of the scrape matching `critical_processes`, and how many
    /// of them this output shows individually (not folded into a rollup,
    /// not dropped). Every pipeline of an experiment has them, baseline or
    /// not; both 0 outside one and when it names no critical process.
    pub critical_total: usize,
    pub critical_visible: usize,
    /// Present for candidates inside an experiment.
    pub comparison: Option<Comparison>,
}

/// A candidate measured against the baseline on the same interval.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Comparison {
    pub baseline: String,
    /// 1 - candidate / baseline (0.8 = 80% fewer).
    pub series_reduction: f64,
    pub datapoints_reduction: f64,
    pub bytes_reduction: f64,
    /// Processes matching `critical_processes` in the scrape, and how many
    /// of them the candidate keeps as individual resources.
    pub critical_total: usize,
    pub critical_visible: usize,
    /// Share of the baseline's top-N CPU and top-N memory processes the
    /// candidate keeps individually visible (1.0 = all of them).
    pub topn_fidelity: f64,
    /// Candidate total / baseline total (1.0 = conserved).
    pub cpu_conservation: f64,
    pub memory_conservation: f64,
    /// The baseline's processes the candidate does not show individually:
    /// dropped, or folded into a rollup ([`super::losses`]).
    pub losses: Vec<super::losses::ProcessLoss>,
}

impl Comparison {
    /// Share of critical processes kept visible; 1.0 when there are none.
    pub fn critical_coverage(&self) -> f64 {
        if self.critical_total == 0 {
            1.0
        } else {
            self.critical_visible as f64 / self.critical_total as f64
        }
    }
}

/// Every pipeline's stats for one interval of one receiver.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct IntervalReport {
    pub time_unix_nano: u64,
    /// The receiver whose scrape this was, and how many resources it held.
    pub receiver: String,
    pub scraped_resources: usize,
    pub experiment_id: Option<String>,
    pub pipelines: Vec<PipelineStats>,
}

/// Series keys and process identities are already hashes.
type KeySet = IdSet;

/// The accounting state of one pipeline (the previous interval's series,
/// for churn). Lives as long as the pipeline.
#[derive(Default)]
pub struct Accountant {
    previous: KeySet,
    current: KeySet,
    encode_buffer: Vec<u8>,
    gzip_buffer: Vec<u8>,
    gzip_sample: Option<GzipSample>,
    intervals_since_gzip: u32,
}

impl Accountant {
    pub fn new() -> Self {
        Self::default()
    }

    /// Measure one pipeline output.
    pub fn measure(
        &mut self,
        pipeline: &str,
        mode: PipelineMode,
        output: &Batch,
        processing_cpu: Duration,
    ) -> PipelineStats {
        self.current.clear();
        let mut datapoints = 0;
        for r in &output.resources {
            let resource_hash = hash_attributes(&r.attributes);
            for m in &r.metrics {
                // The name's end is marked, so that a name and the first
                // attribute key cannot run into each other.
                let metric_hash = fnv1a_continue(
                    fnv1a_continue(resource_hash, m.desc.name.as_bytes()),
                    &[0xfd],
                );
                for p in &m.points {
                    self.current
                        .insert(hash_attributes_from(metric_hash, &p.attributes));
                    datapoints += 1;
                }
            }
        }
        let series = self.current.len();
        let series_added = self.current.difference(&self.previous).count();
        let series_removed = self.previous.difference(&self.current).count();
        std::mem::swap(&mut self.previous, &mut self.current);

        let (bytes_raw, bytes_gzip, bytes_gzip_estimated) = self.encoded_sizes(output);
        let (cpu_total, memory_total) = totals(output);
        PipelineStats {
            pipeline: pipeline.to_string(),
            mode,
            resources: output.resources.len(),
            series,
            datapoints,
            bytes_raw,
            bytes_gzip,
            bytes_gzip_estimated,
            processing_cpu,
            series_added,
            series_removed,
            cpu_total,
            memory_total,
            critical_total: 0,
            critical_visible: 0,
            comparison: None,
        }
    }

    /// The OTLP protobuf size, exact, and its gzipped size. Compressing a
    /// whole scrape costs more than scraping it, so gzip is measured on
    /// the first interval, every `GZIP_SAMPLE_EVERY` intervals, and when the
    /// raw size moved by more than 20% since; in between the last measured
    /// ratio is applied to the exact raw size.
    fn encoded_sizes(&mut self, output: &Batch) -> (usize, usize, bool) {
        let raw = encode::encoded_len(output);
        self.intervals_since_gzip += 1;
        let stale = self.gzip_sample.is_none_or(|s| {
            self.intervals_since_gzip >= GZIP_SAMPLE_EVERY
                || (raw as f64 - s.raw as f64).abs() > 0.2 * s.raw as f64
        });
        if stale {
            self.encode_buffer.clear();
            encode::encode_request(output, &mut self.encode_buffer);
            let mut gz = flate2::write::GzEncoder::new(
                std::mem::take(&mut self.gzip_buffer),
                // What OTLP exporters (ours included) send with by default.
                flate2::Compression::default(),
            );
            if let Ok(mut compressed) = gz.write_all(&self.encode_buffer).and_then(|_| gz.finish())
            {
                self.gzip_sample = Some(GzipSample {
                    raw,
                    gzip: compressed.len(),
                });
                compressed.clear();
                self.gzip_buffer = compressed;
            }
            self.intervals_since_gzip = 0;
        }
        match self.gzip_sample {
            Some(s) if s.raw == raw => (raw, s.gzip, !stale),
            Some(s) if s.raw > 0 => (
                raw,
                (raw as f64 * s.gzip as f64 / s.raw as f64) as usize,
                true,
            ),
            _ => (raw, 0, true),
        }
    }
}

/// How often (in intervals) a pipeline's output is really gzipped to measure
/// its compressed size.
pub const GZIP_SAMPLE_EVERY: u32 = 10;

/// The last gzip measurement: sizes before and after.
#[derive(Clone, Copy, Debug)]
struct GzipSample {
    raw: usize,
    gzip: usize,
}

/// CPU (utilization if present, else CPU time) and memory totals.
fn totals(batch: &Batch) -> (f64, f64) {
    let mut cpu_util = 0.0;
    let mut has_util = false;
    let mut cpu_time = 0.0;
    let mut memory = 0.0;
    for r in &batch.resources {
        for m in &r.metrics {
            match &*m.desc.name {
                semconv::PROCESS_CPU_UTILIZATION => {
                    has_util = true;
                    cpu_util += m.total();
                }
                semconv::PROCESS_CPU_TIME => cpu_time += m.total(),
                semconv::PROCESS_MEMORY_USAGE => memory += m.total(),
                _ => {}
            }
        }
    }
    (if has_util { cpu_util } else { cpu_time }, memory)
}

/// An experiment's view of the pipelines' outputs: which processes of the
/// scrape are critical, how many of them each output keeps visible, and how
/// candidates compare with the baseline. Holds the compiled
/// `critical_processes`, a per-process cache of their verdict, and scratch
/// space reused from one output and one interval to the next.
pub struct Comparator {
    critical: RegexSet,
    /// Per process: the executable name the verdict was made on (a process
    /// that execs keeps its identity but may change its name), the verdict,
    /// and the last scrape the process was in.
    verdicts: IdMap<Verdict>,
    /// Scrapes judged so far: the generation a verdict is stamped with.
    scrapes: u64,
    /// The identities the output being assessed shows individually.
    visible: KeySet,
}

struct Verdict {
    name: Option<Str>,
    critical: bool,
    seen: u64,
}

/// What [`Comparator::assess`] makes of one pipeline's output.
#[derive(Debug, Default)]
pub struct Assessment {
    /// Critical processes of the scrape the output shows individually.
    pub critical_visible: usize,
    /// Present for a candidate: its comparison with the baseline.
    pub comparison: Option<Comparison>,
}

impl Comparator {
    pub fn new(critical_processes: &[String]) -> Result<Self, regex::Error> {
        Ok(Comparator {
            critical: RegexSet::new(critical_processes)?,
            verdicts: HashMap::default(),
            scrapes: 0,
            visible: KeySet::default(),
        })
    }

    /// The identities of critical processes in the scrape (the baseline's
    /// input). Nothing is looked at when no pattern is configured.
    pub fn critical_identities(&mut self, snapshot: &Batch) -> CriticalProcesses {
        if self.critical.is_empty() {
            return CriticalProcesses::default();
        }
        self.scrapes += 1;
        let scrape = self.scrapes;
        let mut out = Vec::new();
        for r in &snapshot.resources {
            let Some(id) = r.identity else { continue };
            let name = match r.attributes.get(semconv::PROCESS_EXECUTABLE_NAME) {
                Some(Value::Str(s)) => Some(s),
                _ => None,
            };
            let critical = match self.verdicts.get_mut(&id) {
                Some(v) if v.name.as_ref() == name => {
                    v.seen = scrape;
                    v.critical
                }
                _ => {
                    let critical = name.is_some_and(|n| self.critical.is_match(n));
                    self.verdicts.insert(
                        id,
                        Verdict {
                            name: name.cloned(),
                            critical,
                            seen: scrape,
                        },
                    );
                    critical
                }
            };
            if critical {
                out.push(id);
            }
        }
        // Forget processes that are gone.
        self.verdicts.retain(|_, v| v.seen == scrape);
        CriticalProcesses(out)
    }

    /// Assess one pipeline's output of the interval: how many of the
    /// scrape's `critical` processes it shows individually and, for a
    /// candidate (given the baseline's output of the same interval), how it
    /// compares with the baseline. Costs nothing when there is neither.
    pub fn assess(
        &mut self,
        critical: &CriticalProcesses,
        output: (&PipelineStats, &Batch),
        baseline: Option<(&PipelineStats, &Batch)>,
    ) -> Assessment {
        if critical.is_empty() && baseline.is_none() {
            return Assessment::default();
        }
        self.visible.clear();
        self.visible
            .extend(output.1.resources.iter().filter_map(|r| r.identity));
        let critical_visible = critical
            .0
            .iter()
            .filter(|id| self.visible.contains(id))
            .count();
        Assessment {
            critical_visible,
            comparison: baseline
                .map(|b| compare(b, output, &self.visible, (critical.len(), critical_visible))),
        }
    }
}

/// Compare `candidate` with `baseline` (both pipeline outputs of the same
/// interval), given what the candidate shows individually and its critical
/// coverage (total, visible).
fn compare(
    baseline: (&PipelineStats, &Batch),
    candidate: (&PipelineStats, &Batch),
    visible: &KeySet,
    (critical_total, critical_visible): (usize, usize),
) -> Comparison {
    let (bs, bb) = baseline;
    let (cs, cb) = candidate;
    let mut top: KeySet = top_identities(bb, semconv::PROCESS_CPU_UTILIZATION)
        .or_else(|| top_identities(bb, semconv::PROCESS_CPU_TIME))
        .unwrap_or_default();
    top.extend(top_identities(bb, semconv::PROCESS_MEMORY_USAGE).unwrap_or_default());
    let topn_fidelity = if top.is_empty() {
        1.0
    } else {
        top.iter().filter(|id| visible.contains(id)).count() as f64 / top.len() as f64
    };
    Comparison {
        baseline: bs.pipeline.clone(),
        series_reduction: reduction(bs.series, cs.series),
        datapoints_reduction: reduction(bs.datapoints, cs.datapoints),
        bytes_reduction: reduction(bs.bytes_raw, cs.bytes_raw),
        critical_total,
        critical_visible,
        topn_fidelity,
        cpu_conservation: ratio(cs.cpu_total, bs.cpu_total),
        memory_conservation: ratio(cs.memory_total, bs.memory_total),
        losses: super::losses::losses(
            bb,
            cb,
            visible,
            (bs.cpu_total, bs.memory_total),
            (cs.cpu_total, cs.memory_total),
        ),
    }
}

/// Identities of the critical processes of one scrape.
#[derive(Debug, Default)]
pub struct CriticalProcesses(Vec<u64>);

impl CriticalProcesses {
    /// How many processes of the scrape are critical.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

fn reduction(baseline: usize, candidate: usize) -> f64 {
    if baseline == 0 {
        0.0
    } else {
        1.0 - candidate as f64 / baseline as f64
    }
}

fn ratio(candidate: f64, baseline: f64) -> f64 {
    if baseline == 0.0 {
        if candidate == 0.0 { 1.0 } else { f64::INFINITY }
    } else {
        candidate / baseline
    }
}

/// The identities of the top-N individual resources by `metric`, or None
/// when no resource has the metric.
fn top_identities(batch: &Batch, metric: &str) -> Option<KeySet> {
    let mut ranked: Vec<(f64, u64)> = batch
        .resources
        .iter()
        .filter_map(|r| Some((r.metric(metric)?.total(), r.identity?)))
        .collect();
    if ranked.is_empty() {
        return None;
    }
    // Highest first; ties broken by identity so the set is deterministic.
    ranked.sort_by(|a, b| b.0.total_cmp(&a.0).then(a.1.cmp(&b.1)));
    Some(ranked.into_iter().take(TOP_N).map(|(_, id)| id).collect())
}

/// CPU time consumed by the calling thread so far.
pub fn thread_cpu_time() -> Duration {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime writes into the timespec we own.
    let rc = unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
    if rc != 0 {
        return Duration::ZERO;
    }
    Duration::new(ts.tv_sec as u64, ts.tv_nsec as u32)
}

#[cfg(test)]
pub(super) mod tests {
    use super::*;
    use phoenix_processors::model::{
        Attributes, KeyValue, Metric, MetricDesc, MetricKind, Number, Point, Resource,
    };
    use smallvec::smallvec;
    use std::sync::Arc;

    pub(in crate::pipeline) fn process(pid: i64, name: &str, cpu: f64, memory: i64) -> Resource {
        let desc = |n: &str, kind| {
            Arc::new(MetricDesc {
                name: n.into(),
                description: "".into(),
                unit: "".into(),
                kind,
            })
        };
        let point = |v| Point {
            attributes: Attributes::empty(),
            start_time_unix_nano: 0,
            value: v,
        };
        Resource {
            attributes: Attributes::new(vec![
                KeyValue::new(semconv::PROCESS_PID.into(), Value::Int(pid)),
                KeyValue::new(
                    semconv::PROCESS_EXECUTABLE_NAME.into(),
                    Value::Str(name.into()),
                ),
            ]),
            metrics: vec![
                Metric {
                    desc: desc(semconv::PROCESS_CPU_UTILIZATION, MetricKind::Gauge),
                    points: smallvec![point(Number::Double(cpu))],
                },
                Metric {
                    desc: desc(semconv::PROCESS_MEMORY_USAGE, MetricKind::UP_DOWN_COUNTER),
                    points: smallvec![point(Number::Int(memory))],
                },
            ],
            identity: Some(pid as u64),
        }
    }

    pub(in crate::pipeline) fn batch(resources: Vec<Resource>) -> Batch {
        Batch {
            time_unix_nano: 1,
            common_attributes: Attributes::empty(),
            resources,
        }
    }

    /// A scrape of two workers (pids 1 and 3) and a postgres (pid 2).
    pub(in crate::pipeline) fn workers_and_postgres() -> Batch {
        batch(vec![
            process(1, "worker", 0.1, 10),
            process(2, "postgres", 0.2, 20),
            process(3, "worker", 0.3, 30),
        ])
    }

    #[test]
    fn counts_series_datapoints_bytes_and_churn() {
        let mut a = Accountant::new();
        let first = batch(vec![process(1, "a", 0.1, 10), process(2, "b", 0.2, 20)]);
        let s = a.measure("metrics/x", PipelineMode::Export, &first, Duration::ZERO);
        assert_eq!((s.resources, s.series, s.datapoints), (2, 4, 4));
        assert_eq!((s.series_added, s.series_removed), (4, 0));
        assert!(s.bytes_raw > 0 && s.bytes_gzip > 0);
        assert!((s.cpu_total - 0.3).abs() < 1e-12);
        assert_eq!(s.memory_total, 30.0);

        // Process 2 exits, process 3 starts: two series out, two in.
        let second = batch(vec![process(1, "a", 0.1, 10), process(3, "c", 0.2, 20)]);
        let s = a.measure("metrics/x", PipelineMode::Export, &second, Duration::ZERO);
        assert_eq!((s.series_added, s.series_removed), (2, 2));
        // Same values again: no churn.
        let s = a.measure("metrics/x", PipelineMode::Export, &second, Duration::ZERO);
        assert_eq!((s.series_added, s.series_removed), (0, 0));
    }

    #[test]
    fn gzip_is_measured_now_and_then_and_extrapolated_between() {
        let mut a = Accountant::new();
        let b = batch((1..=50).map(|p| process(p, "w", 0.1, p * 4096)).collect());
        let first = a.measure("m", PipelineMode::Export, &b, Duration::ZERO);
        assert!(
            !first.bytes_gzip_estimated,
            "the first interval is measured"
        );
        assert!(first.bytes_gzip > 0 && first.bytes_gzip < first.bytes_raw);
        let mut estimated = 0;
        for _ in 0..GZIP_SAMPLE_EVERY {
            let s = a.measure("m", PipelineMode::Export, &b, Duration::ZERO);
            assert_eq!(s.bytes_raw, first.bytes_raw);
            assert_eq!(s.bytes_gzip, first.bytes_gzip, "same output, same size");
            estimated += usize::from(s.bytes_gzip_estimated);
        }
        assert_eq!(
            estimated as u32,
            GZIP_SAMPLE_EVERY - 1,
            "one fresh measurement per period"
        );
        // A big change in size is measured at once.
        let bigger = batch((1..=100).map(|p| process(p, "w", 0.1, p * 4096)).collect());
        let s = a.measure("m", PipelineMode::Export, &bigger, Duration::ZERO);
        assert!(!s.bytes_gzip_estimated);
        assert_eq!(s.bytes_raw, encode::encoded_len(&bigger));
    }

    #[test]
    fn a_process_that_execs_is_judged_again() {
        let mut comparator = Comparator::new(&["^postgres$".to_string()]).unwrap();
        // pid 7 starts as a shell, then execs postgres: same identity.
        let before = comparator.critical_identities(&batch(vec![process(7, "sh", 0.0, 1)]));
        assert!(before.0.is_empty());
        let after = comparator.critical_identities(&batch(vec![process(7, "postgres", 0.0, 1)]));
        assert_eq!(after.0, vec![7]);
    }

    #[test]
    fn compares_a_candidate_with_the_baseline() {
        // 12 processes: "postgres" is critical; the candidate keeps only
        // pids 1..=5 individually plus a rollup without identity.
        let all: Vec<Resource> = (1..=12)
            .map(|pid| {
                process(
                    pid,
                    if pid == 12 { "postgres" } else { "worker" },
                    pid as f64,
                    pid * 100,
                )
            })
            .collect();
        let baseline = batch(all.clone());
        let mut kept: Vec<Resource> = all[..5].to_vec();
        let mut others = process(
            0,
            "others",
            (6..=12).map(|p| p as f64).sum(),
            (6..=12).map(|p| p * 100).sum(),
        );
        others.identity = None;
        kept.push(others);
        let candidate = batch(kept);

        let mut comparator = Comparator::new(&["^postgres$".to_string()]).unwrap();
        let critical = comparator.critical_identities(&baseline);
        let mut acc_b = Accountant::new();
        let mut acc_c = Accountant::new();
        let bs = acc_b.measure(
            "metrics/baseline",
            PipelineMode::Export,
            &baseline,
            Duration::ZERO,
        );
        let cs = acc_c.measure(
            "metrics/candidate",
            PipelineMode::Shadow,
            &candidate,
            Duration::ZERO,
        );
        let a = comparator.assess(&critical, (&cs, &candidate), Some((&bs, &baseline)));
        assert_eq!(a.critical_visible, 0);
        let c = a.comparison.expect("a candidate is compared");

        assert_eq!(c.critical_total, 1);
        assert_eq!(c.critical_visible, 0, "postgres went into the rollup");
        assert_eq!(c.critical_coverage(), 0.0);
        assert!((c.series_reduction - 0.5).abs() < 1e-12, "{c:?}");
        // Top 10 by CPU and by memory are both pids 3..=12; 3, 4, 5 stay visible.
        assert!((c.topn_fidelity - 0.3).abs() < 1e-12, "{c:?}");
        assert!((c.cpu_conservation - 1.0).abs() < 1e-12);
        assert!((c.memory_conservation - 1.0).abs() < 1e-12);
    }

    #[test]
    fn every_pipeline_reports_its_critical_coverage_without_a_baseline() {
        // A promoted config: one exporting pipeline, nothing to compare with.
        let scrape = workers_and_postgres();
        let mut comparator = Comparator::new(&["^postgres$".to_string()]).unwrap();
        let critical = comparator.critical_identities(&scrape);
        assert_eq!(critical.len(), 1);
        let mut accountant = Accountant::new();

        // Keeps postgres as its own resource.
        let keeps = batch(vec![process(2, "postgres", 0.2, 20)]);
        let stats = accountant.measure("metrics/a", PipelineMode::Export, &keeps, Duration::ZERO);
        let a = comparator.assess(&critical, (&stats, &keeps), None);
        assert_eq!(a.critical_visible, critical.len());
        assert!(a.comparison.is_none(), "no baseline, no comparison");

        // Drops it, and folds the others into a rollup without identity.
        let mut others = process(0, "others", 0.4, 40);
        others.identity = None;
        let drops = batch(vec![others]);
        let stats = accountant.measure("metrics/a", PipelineMode::Export, &drops, Duration::ZERO);
        let a = comparator.assess(&critical, (&stats, &drops), None);
        assert_eq!(a.critical_visible, 0);
        assert!(a.comparison.is_none());
    }

    #[test]
    fn no_critical_patterns_no_work() {
        let scrape = batch((1..=20).map(|p| process(p, "postgres", 0.1, 10)).collect());
        let mut comparator = Comparator::new(&[]).unwrap();
        let critical = comparator.critical_identities(&scrape);
        assert!(critical.is_empty());
        assert!(comparator.verdicts.is_empty(), "no process was judged");
        let stats = Accountant::new().measure("m", PipelineMode::Export, &scrape, Duration::ZERO);
        let a = comparator.assess(&critical, (&stats, &scrape), None);
        assert_eq!((critical.len(), a.critical_visible), (0, 0));
        assert!(a.comparison.is_none());
        assert_eq!(
            comparator.visible.capacity(),
            0,
            "the output was not even looked at"
        );
    }

    #[test]
    fn verdicts_of_processes_that_are_gone_are_forgotten() {
        let mut comparator = Comparator::new(&["^postgres$".to_string()]).unwrap();
        comparator.critical_identities(&batch(vec![
            process(1, "postgres", 0.0, 1),
            process(2, "sh", 0.0, 1),
        ]));
        assert_eq!(comparator.verdicts.len(), 2);
        let critical = comparator.critical_identities(&batch(vec![process(1, "postgres", 0.0, 1)]));
        assert_eq!(critical.0, vec![1]);
        assert_eq!(comparator.verdicts.len(), 1);
    }
}
