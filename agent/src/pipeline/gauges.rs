//! A pipeline's accounting, on `/metrics`.

use std::sync::Arc;

use super::accounting::PipelineStats;
use phoenix_telemetry::registry::{Counter, Gauge, Registry};

/// A pipeline's accounting on `/metrics`.
pub(super) struct PipelineGauges {
    intervals: Arc<Counter>,
    resources: Arc<Gauge>,
    series: Arc<Gauge>,
    datapoints: Arc<Gauge>,
    datapoints_total: Arc<Counter>,
    bytes_raw: Arc<Gauge>,
    bytes_gzip: Arc<Gauge>,
    processing_seconds: Arc<Gauge>,
    series_added: Arc<Counter>,
    series_removed: Arc<Counter>,
    comparison: Option<ComparisonGauges>,
}

/// A candidate's comparison with the baseline on `/metrics`.
struct ComparisonGauges {
    series_reduction: Arc<Gauge>,
    datapoints_reduction: Arc<Gauge>,
    bytes_reduction: Arc<Gauge>,
    critical_coverage: Arc<Gauge>,
    topn_fidelity: Arc<Gauge>,
    cpu_conservation: Arc<Gauge>,
    memory_conservation: Arc<Gauge>,
}

impl PipelineGauges {
    pub(super) fn new(registry: &Registry, pipeline: &str, candidate: bool) -> Self {
        let l = &["pipeline"];
        let v = &[pipeline];
        let gauge = |name: &str, help: &str| registry.gauge(name, help, l, v);
        let comparison = candidate.then(|| {
            let ratio = |kind: &str, help: &str| {
                registry.gauge(
                    "phoenix_experiment_ratio",
                    help,
                    &["pipeline", "kpi"],
                    &[pipeline, kind],
                )
            };
            const HELP: &str = "A candidate against the baseline in the last interval: reductions (1 - candidate/baseline), critical coverage and top-N fidelity (share kept visible), conservation (candidate total / baseline total).";
            ComparisonGauges {
                series_reduction: ratio("series_reduction", HELP),
                datapoints_reduction: ratio("datapoints_reduction", HELP),
                bytes_reduction: ratio("bytes_reduction", HELP),
                critical_coverage: ratio("critical_coverage", HELP),
                topn_fidelity: ratio("topn_fidelity", HELP),
                cpu_conservation: ratio("cpu_conservation", HELP),
                memory_conservation: ratio("memory_conservation", HELP),
            }
        });
        PipelineGauges {
            intervals: registry.counter(
                "phoenix_pipeline_intervals_total",
                "Intervals a pipeline has processed.",
                l,
                v,
            ),
            resources: gauge(
                "phoenix_pipeline_resources",
                "Resources (processes or rollups) in a pipeline's last output.",
            ),
            series: gauge(
                "phoenix_pipeline_series",
                "Distinct series (metric + attributes) in a pipeline's last output.",
            ),
            datapoints: gauge(
                "phoenix_pipeline_datapoints",
                "Datapoints in a pipeline's last output.",
            ),
            datapoints_total: registry.counter(
                "phoenix_pipeline_datapoints_total",
                "Datapoints a pipeline has output.",
                l,
                v,
            ),
            bytes_raw: gauge(
                "phoenix_pipeline_bytes",
                "Size of a pipeline's last output as an OTLP protobuf request, uncompressed.",
            ),
            bytes_gzip: gauge(
                "phoenix_pipeline_bytes_gzip",
                "Size of a pipeline's last output as an OTLP protobuf request, gzipped.",
            ),
            processing_seconds: gauge(
                "phoenix_pipeline_processing_cpu_seconds",
                "CPU time a pipeline's processors took in the last interval.",
            ),
            series_added: registry.counter(
                "phoenix_pipeline_series_added_total",
                "Series that appeared in a pipeline's output since the previous interval.",
                l,
                v,
            ),
            series_removed: registry.counter(
                "phoenix_pipeline_series_removed_total",
                "Series that disappeared from a pipeline's output since the previous interval.",
                l,
                v,
            ),
            comparison,
        }
    }

    pub(super) fn record(&self, s: &PipelineStats) {
        self.intervals.inc();
        self.resources.set(s.resources as f64);
        self.series.set(s.series as f64);
        self.datapoints.set(s.datapoints as f64);
        self.datapoints_total.add(s.datapoints as u64);
        self.bytes_raw.set(s.bytes_raw as f64);
        self.bytes_gzip.set(s.bytes_gzip as f64);
        self.processing_seconds.set(s.processing_cpu.as_secs_f64());
        self.series_added.add(s.series_added as u64);
        self.series_removed.add(s.series_removed as u64);
        if let (Some(g), Some(c)) = (&self.comparison, &s.comparison) {
            g.series_reduction.set(c.series_reduction);
            g.datapoints_reduction.set(c.datapoints_reduction);
            g.bytes_reduction.set(c.bytes_reduction);
            g.critical_coverage.set(c.critical_coverage());
            g.topn_fidelity.set(c.topn_fidelity);
            g.cpu_conservation.set(c.cpu_conservation);
            g.memory_conservation.set(c.memory_conservation);
        }
    }
}
