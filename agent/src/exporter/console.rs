//! `console` exporter: the live side-by-side table of every pipeline, one
//! per interval on stdout ([`render_table`]), and with `verbosity: detailed`
//! the top processes of each pipeline it exports ([`render_summary`]).

use std::collections::HashMap;
use std::fmt::Write as _;
use std::io::Write as _;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use phoenix_processors::model::{Attributes, Batch, Resource, Value};
use phoenix_processors::semconv::{
    PHOENIX_PIPELINE, PROCESS_COMMAND, PROCESS_CPU_TIME, PROCESS_CPU_UTILIZATION,
    PROCESS_EXECUTABLE_NAME, PROCESS_MEMORY_USAGE, PROCESS_PID,
};
use phoenix_processors::time::format_rfc3339_seconds;

use phoenix_config::exporter::{ConsoleConfig, Verbosity};

use super::{BoxFuture, BuildContext, ExportBatch, Exporter, ExporterMetrics, ShutdownReport};
use crate::pipeline::accounting::IntervalReport;

/// Processes listed per ranking in the detailed view.
pub const TOP_N: usize = 5;

pub fn build(c: &ConsoleConfig, ctx: &BuildContext) -> anyhow::Result<Arc<dyn Exporter>> {
    Ok(Arc::new(ConsoleExporter {
        verbosity: c.verbosity,
        metrics: ExporterMetrics::new(ctx),
        warned: AtomicBool::new(false),
        id: ctx.id.clone(),
    }))
}

pub struct ConsoleExporter {
    verbosity: Verbosity,
    metrics: ExporterMetrics,
    /// stdout failing (closed pipe) is logged once; the counter keeps count.
    warned: AtomicBool,
    id: String,
}

impl ConsoleExporter {
    fn write(&self, text: &str) {
        // One locked write per block, so blocks of pipelines submitting at
        // the same time do not interleave. Never `println!`: it panics when
        // stdout is closed.
        let mut out = std::io::stdout().lock();
        match out.write_all(text.as_bytes()).and_then(|()| out.flush()) {
            Ok(()) => {
                self.metrics.sent.inc();
                self.metrics.bytes.add(text.len() as u64);
            }
            Err(e) => {
                self.metrics.failed.inc();
                self.metrics.dropped.inc();
                if !self.warned.swap(true, Ordering::Relaxed) {
                    tracing::warn!(exporter = %self.id, error = %e,
                        "console exporter cannot write to stdout; further failures are only counted");
                }
            }
        }
    }
}

impl Exporter for ConsoleExporter {
    /// The comparison table of every pipeline is printed once per interval
    /// by `observe_interval`; a batch adds its top processes when detailed.
    fn submit(&self, batch: ExportBatch) {
        if self.verbosity == Verbosity::Detailed {
            self.write(&render_summary(&batch, self.verbosity));
        }
    }

    fn observe_interval(&self, report: &IntervalReport) {
        self.write(&render_table(report));
    }

    fn shutdown(&self, _deadline: Duration) -> BoxFuture<'_, ShutdownReport> {
        // Everything is written as it comes; nothing is held back.
        Box::pin(async { ShutdownReport::default() })
    }
}

/// The side-by-side table of every pipeline of one interval: what each
/// costs, inside an experiment how many critical processes each keeps
/// visible, and for candidates what they save and keep against the baseline.
pub fn render_table(report: &IntervalReport) -> String {
    let mut out = String::with_capacity(256 + 160 * report.pipelines.len());
    let _ = write!(
        out,
        "{} {}: {} processes scraped",
        format_rfc3339_seconds(report.time_unix_nano),
        report.receiver,
        report.scraped_resources
    );
    if let Some(id) = &report.experiment_id {
        let _ = write!(out, ", experiment {id}");
    }
    out.push('\n');
    // Critical coverage is every pipeline's inside an experiment; the rest
    // only candidates have, and only when a baseline ran on this scrape.
    let experiment = report.experiment_id.is_some();
    let compared = report.pipelines.iter().any(|p| p.comparison.is_some());
    let _ = write!(
        out,
        "  {:<28} {:<6} {:>6} {:>7} {:>7} {:>10} {:>11} {:>7}",
        "pipeline", "mode", "res", "series", "points", "gzip", "churn", "cpu ms"
    );
    if experiment {
        let _ = write!(out, " {:>9}", "critical");
    }
    if compared {
        let _ = write!(
            out,
            " {:>7} {:>6} {:>6} {:>6}",
            "saved", "top-N", "cpu Σ", "mem Σ"
        );
    }
    out.push('\n');
    for p in &report.pipelines {
        let mode = match p.mode {
            phoenix_config::PipelineMode::Export => "export",
            phoenix_config::PipelineMode::Shadow => "shadow",
        };
        let _ = write!(
            out,
            "  {:<28} {:<6} {:>6} {:>7} {:>7} {:>10} {:>11} {:>7.2}",
            truncate_cell(&p.pipeline, 28),
            mode,
            p.resources,
            p.series,
            p.datapoints,
            format_bytes(p.bytes_gzip as f64),
            format!("+{}/-{}", p.series_added, p.series_removed),
            p.processing_cpu.as_secs_f64() * 1e3,
        );
        if experiment {
            let _ = write!(
                out,
                " {:>9}",
                format!("{}/{}", p.critical_visible, p.critical_total)
            );
        }
        match &p.comparison {
            Some(c) => {
                let _ = write!(
                    out,
                    " {:>6.1}% {:>5.0}% {:>6.3} {:>6.3}",
                    c.series_reduction * 100.0,
                    c.topn_fidelity * 100.0,
                    c.cpu_conservation,
                    c.memory_conservation,
                );
            }
            None if compared => {
                let _ = write!(out, " {:>7}", "baseline");
            }
            None => {}
        }
        out.push('\n');
    }
    // A blank line between intervals keeps a scrolling terminal readable.
    out.push('\n');
    out
}

fn truncate_cell(s: &str, width: usize) -> String {
    if s.chars().count() <= width {
        return s.to_string();
    }
    let mut t: String = s.chars().take(width - 1).collect();
    t.push('…');
    t
}

/// What the console shows about one pipeline's batch.
#[derive(Debug, Clone, PartialEq)]
pub struct PipelineSummary {
    /// `phoenix.pipeline` of the batch, or `-` when it has none.
    pub pipeline: String,
    pub time_unix_nano: u64,
    /// Resources, i.e. processes (or rollups such as `others`).
    pub processes: usize,
    /// Distinct (resource, metric, point attributes).
    pub series: usize,
    pub datapoints: usize,
    /// Metric the CPU ranking uses: utilization when the batch has it,
    /// else cumulative CPU time; `None` when it has neither.
    pub cpu_metric: Option<&'static str>,
    pub top_cpu: Vec<Ranked>,
    pub top_memory: Vec<Ranked>,
}

/// A process in a ranking.
#[derive(Debug, Clone, PartialEq)]
pub struct Ranked {
    pub name: String,
    pub pid: Option<i64>,
    /// Sum of the metric's points (user + system CPU, ...).
    pub value: f64,
}

/// Count and rank one batch.
pub fn summarize(batch: &Batch) -> PipelineSummary {
    let has = |metric: &str| batch.resources.iter().any(|r| r.metric(metric).is_some());
    let cpu_metric = if has(PROCESS_CPU_UTILIZATION) {
        Some(PROCESS_CPU_UTILIZATION)
    } else if has(PROCESS_CPU_TIME) {
        Some(PROCESS_CPU_TIME)
    } else {
        None
    };
    PipelineSummary {
        pipeline: batch
            .common_attributes
            .get_str(PHOENIX_PIPELINE)
            .unwrap_or("-")
            .to_string(),
        time_unix_nano: batch.time_unix_nano,
        processes: batch.resources.len(),
        series: batch.resources.iter().map(series_of).sum(),
        datapoints: batch.datapoint_count(),
        cpu_metric,
        top_cpu: cpu_metric.map(|m| top(batch, m)).unwrap_or_default(),
        top_memory: top(batch, PROCESS_MEMORY_USAGE),
    }
}

/// Distinct (metric name, point attributes) of a resource: a point
/// repeating an earlier one's identity is the same series.
fn series_of(resource: &Resource) -> usize {
    let mut seen: HashMap<&str, Vec<&Attributes>> = HashMap::new();
    let mut count = 0;
    for metric in &resource.metrics {
        let attrs = seen.entry(&metric.desc.name).or_default();
        for point in &metric.points {
            if !attrs.contains(&&point.attributes) {
                attrs.push(&point.attributes);
                count += 1;
            }
        }
    }
    count
}

/// The `TOP_N` resources with the largest total of `metric`.
fn top(batch: &Batch, metric: &str) -> Vec<Ranked> {
    let mut ranked: Vec<(f64, &Resource)> = batch
        .resources
        .iter()
        .filter_map(|r| Some((r.metric(metric)?.total(), r)))
        .filter(|(v, _)| v.is_finite())
        .collect();
    ranked.sort_by(|a, b| b.0.total_cmp(&a.0));
    ranked.truncate(TOP_N);
    ranked
        .into_iter()
        .map(|(value, r)| Ranked {
            name: display_name(&batch.common_attributes, &r.attributes),
            pid: match r.attributes.get(PROCESS_PID) {
                Some(Value::Int(pid)) => Some(*pid),
                _ => None,
            },
            value,
        })
        .collect()
}

/// Name shown for a process: its executable, else its command, else `?`.
/// Control characters are replaced (a process can name itself with terminal
/// escape sequences) and long names are cut.
fn display_name(common: &Attributes, own: &Attributes) -> String {
    const MAX_CHARS: usize = 24;
    let raw = [PROCESS_EXECUTABLE_NAME, PROCESS_COMMAND]
        .iter()
        .find_map(|k| own.get_str(k).or_else(|| common.get_str(k)))
        .filter(|s| !s.is_empty())
        .unwrap_or("?");
    let mut name: String = raw
        .chars()
        .take(MAX_CHARS)
        .map(|c| if c.is_control() { '?' } else { c })
        .collect();
    if raw.chars().nth(MAX_CHARS).is_some() {
        name.pop();
        name.push('…');
    }
    name
}

/// The console text for one batch (ends with a newline).
pub fn render_summary(batch: &Batch, verbosity: Verbosity) -> String {
    format_summary(&summarize(batch), verbosity)
}

/// Text for an already computed summary.
pub fn format_summary(s: &PipelineSummary, verbosity: Verbosity) -> String {
    let mut out = String::with_capacity(128 + 64 * 2 * TOP_N);
    let _ = writeln!(
        out,
        "{} {}: {} {}, {} series, {} datapoints",
        format_rfc3339_seconds(s.time_unix_nano),
        s.pipeline,
        s.processes,
        if s.processes == 1 {
            "process"
        } else {
            "processes"
        },
        s.series,
        s.datapoints,
    );
    if verbosity == Verbosity::Detailed {
        if let Some(metric) = s.cpu_metric {
            let _ = writeln!(out, "  top cpu ({metric}):");
            for r in &s.top_cpu {
                let value = if metric == PROCESS_CPU_UTILIZATION {
                    format!("{:.1}%", r.value * 100.0)
                } else {
                    format!("{:.2}s", r.value)
                };
                push_ranked(&mut out, r, &value);
            }
        }
        if !s.top_memory.is_empty() {
            let _ = writeln!(out, "  top memory ({PROCESS_MEMORY_USAGE}):");
            for r in &s.top_memory {
                push_ranked(&mut out, r, &format_bytes(r.value));
            }
        }
    }
    out
}

fn push_ranked(out: &mut String, r: &Ranked, value: &str) {
    let pid = r.pid.map_or_else(|| "-".to_string(), |p| p.to_string());
    let _ = writeln!(out, "    {:<24} pid {:<8} {:>10}", r.name, pid, value);
}

/// Bytes in binary units with one decimal (`512.0 MiB`).
fn format_bytes(v: f64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut v = v;
    let mut unit = 0;
    while v.abs() >= 1024.0 && unit < UNITS.len() - 1 {
        v /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{v:.0} B")
    } else {
        format!("{v:.1} {}", UNITS[unit])
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use phoenix_processors::model::{KeyValue, Metric, MetricDesc, MetricKind, Number, Point};
    use smallvec::{SmallVec, smallvec};

    fn kv(k: &str, v: Value) -> KeyValue {
        KeyValue::new(k.into(), v)
    }

    fn metric(name: &str, kind: MetricKind, points: SmallVec<[Point; 2]>) -> Metric {
        Metric {
            desc: Arc::new(MetricDesc {
                name: name.into(),
                description: "".into(),
                unit: "".into(),
                kind,
            }),
            points,
        }
    }

    fn point(attrs: Vec<KeyValue>, v: Number) -> Point {
        Point {
            attributes: Attributes::new(attrs),
            start_time_unix_nano: 0,
            value: v,
        }
    }

    fn process(pid: i64, name: &str, util: f64, mem: i64) -> Resource {
        Resource {
            identity: None,
            attributes: Attributes::new(vec![
                kv(PROCESS_PID, Value::Int(pid)),
                kv(PROCESS_EXECUTABLE_NAME, Value::Str(name.into())),
            ]),
            metrics: vec![
                metric(
                    PROCESS_CPU_UTILIZATION,
                    MetricKind::Gauge,
                    smallvec![
                        point(
                            vec![kv("cpu.mode", Value::Str("user".into()))],
                            Number::Double(util)
                        ),
                        point(
                            vec![kv("cpu.mode", Value::Str("system".into()))],
                            Number::Double(0.0)
                        ),
                    ],
                ),
                metric(
                    PROCESS_MEMORY_USAGE,
                    MetricKind::UP_DOWN_COUNTER,
                    smallvec![point(vec![], Number::Int(mem))],
                ),
            ],
        }
    }

    fn batch() -> Batch {
        let mut resources: Vec<Resource> = (1..=6)
            .map(|i| process(i, &format!("proc{i}"), i as f64 / 100.0, (7 - i) << 20))
            .collect();
        resources.push(process(
            99,
            "evil\x1b[2Jname-that-is-far-too-long-to-show",
            0.5,
            1 << 30,
        ));
        Batch {
            // 2023-11-14T22:13:20Z
            time_unix_nano: 1_700_000_000_000_000_000,
            common_attributes: Attributes::new(vec![kv(
                PHOENIX_PIPELINE,
                Value::Str("metrics/baseline".into()),
            )]),
            resources,
        }
    }

    #[test]
    fn basic_is_one_line_with_the_counts() {
        let text = render_summary(&batch(), Verbosity::Basic);
        assert_eq!(
            text,
            "2023-11-14T22:13:20Z metrics/baseline: 7 processes, 21 series, 21 datapoints\n"
        );
    }

    #[test]
    fn detailed_ranks_top_processes_by_cpu_and_memory() {
        let text = render_summary(&batch(), Verbosity::Detailed);
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 1 + 1 + TOP_N + 1 + TOP_N, "{text}");
        assert_eq!(lines[1], "  top cpu (process.cpu.utilization):");
        assert!(
            lines[2].starts_with("    evil?[2Jname-that-is-fa… pid 99 "),
            "{text}"
        );
        assert!(
            lines[2].contains("pid 99") && lines[2].ends_with("50.0%"),
            "{text}"
        );
        assert!(
            lines[3].contains("proc6") && lines[3].ends_with("6.0%"),
            "{text}"
        );
        assert!(lines[6].contains("proc3"), "{text}");
        assert_eq!(lines[7], "  top memory (process.memory.usage):");
        assert!(
            lines[8].contains("pid 99") && lines[8].ends_with("1.0 GiB"),
            "{text}"
        );
        assert!(
            lines[9].contains("proc1") && lines[9].ends_with("6.0 MiB"),
            "{text}"
        );
        assert!(
            !text.contains('\x1b'),
            "control characters never reach the terminal"
        );
    }

    #[test]
    fn falls_back_to_cpu_time_and_counts_repeated_points_once() {
        let b = Batch {
            time_unix_nano: 0,
            common_attributes: Attributes::empty(),
            resources: vec![Resource {
                identity: None,
                attributes: Attributes::new(vec![kv(PROCESS_COMMAND, Value::Str("sh".into()))]),
                metrics: vec![metric(
                    PROCESS_CPU_TIME,
                    MetricKind::COUNTER,
                    smallvec![
                        point(vec![], Number::Double(1.25)),
                        point(vec![], Number::Double(1.0)),
                    ],
                )],
            }],
        };
        let s = summarize(&b);
        assert_eq!((s.processes, s.series, s.datapoints), (1, 1, 2));
        assert_eq!(s.cpu_metric, Some(PROCESS_CPU_TIME));
        let text = format_summary(&s, Verbosity::Detailed);
        assert!(
            text.starts_with("1970-01-01T00:00:00Z -: 1 process, 1 series"),
            "{text}"
        );
        assert!(
            text.contains("sh") && text.contains("pid -") && text.contains("2.25s"),
            "{text}"
        );
        assert!(!text.contains("top memory"), "{text}");
    }

    #[test]
    fn the_table_shows_every_pipeline_with_its_comparison() {
        use crate::pipeline::accounting::{Comparison, PipelineStats};
        use phoenix_config::PipelineMode;
        let stats = |name: &str, mode, series, comparison| PipelineStats {
            pipeline: name.into(),
            mode,
            resources: series / 10,
            series,
            datapoints: series,
            bytes_raw: series * 40,
            bytes_gzip: series * 10,
            bytes_gzip_estimated: false,
            processing_cpu: Duration::from_micros(250),
            series_added: 3,
            series_removed: 1,
            cpu_total: 1.0,
            memory_total: 1.0,
            critical_total: 3,
            critical_visible: 3,
            comparison,
        };
        let report = IntervalReport {
            time_unix_nano: 1_700_000_000_000_000_000,
            receiver: "procfs".into(),
            scraped_resources: 200,
            experiment_id: Some("demo".into()),
            pipelines: vec![
                stats("metrics/baseline", PipelineMode::Export, 2000, None),
                stats(
                    "metrics/topk",
                    PipelineMode::Shadow,
                    150,
                    Some(Comparison {
                        baseline: "metrics/baseline".into(),
                        series_reduction: 0.925,
                        datapoints_reduction: 0.925,
                        bytes_reduction: 0.9,
                        critical_total: 3,
                        critical_visible: 3,
                        topn_fidelity: 0.85,
                        cpu_conservation: 1.0,
                        memory_conservation: 1.0,
                        losses: Vec::new(),
                    }),
                ),
            ],
        };
        let text = render_table(&report);
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(
            lines[0],
            "2023-11-14T22:13:20Z procfs: 200 processes scraped, experiment demo"
        );
        assert!(
            lines[1].contains("saved") && lines[1].contains("critical"),
            "{text}"
        );
        assert!(
            lines[2].contains("metrics/baseline")
                && lines[2].contains(" 3/3 ")
                && lines[2].ends_with("baseline"),
            "{text}"
        );
        let topk = lines[3];
        for cell in [
            "metrics/topk",
            "shadow",
            "150",
            "+3/-1",
            "0.25",
            "92.5%",
            "3/3",
            "85%",
            "1.000",
        ] {
            assert!(topk.contains(cell), "{cell:?} missing in {topk:?}");
        }
        // Outside an experiment there are no comparison columns.
        let plain = IntervalReport {
            experiment_id: None,
            pipelines: vec![stats("metrics/a", PipelineMode::Export, 10, None)],
            ..report
        };
        assert!(!render_table(&plain).contains("saved"));
        assert!(!render_table(&plain).contains("critical"));
        // An experiment without a baseline: critical coverage, nothing compared.
        let mut promoted = stats("metrics/promoted", PipelineMode::Export, 10, None);
        promoted.critical_visible = 2;
        let rollout = IntervalReport {
            experiment_id: Some("demo".into()),
            pipelines: vec![promoted],
            ..plain
        };
        let text = render_table(&rollout);
        let lines: Vec<&str> = text.lines().collect();
        assert!(
            lines[1].ends_with("critical") && !lines[1].contains("saved"),
            "{text}"
        );
        assert!(lines[2].ends_with(" 2/3"), "{text}");
    }

    #[test]
    fn bytes_format_in_binary_units() {
        assert_eq!(format_bytes(512.0), "512 B");
        assert_eq!(format_bytes(1536.0), "1.5 KiB");
    }

    #[test]
    fn verbosity_parses_lowercase() {
        let c: ConsoleConfig = serde_json::from_str(r#"{"verbosity":"detailed"}"#).expect("parses");
        assert_eq!(c.verbosity, Verbosity::Detailed);
        assert_eq!(
            serde_json::from_str::<ConsoleConfig>("{}").expect("parses"),
            ConsoleConfig::default()
        );
        assert!(serde_json::from_str::<ConsoleConfig>(r#"{"verbosity":"loud"}"#).is_err());
    }
}
