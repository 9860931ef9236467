//! The agent's own types in the protocol's shape. Kept apart from the
//! session so that a change to either side shows up here, and is tested
//! field by field.

use phoenix_proto::v1;

use crate::pipeline::accounting::{Comparison, IntervalReport, PipelineStats};
use phoenix_config::PipelineMode;

/// One interval's report, every field carried over.
pub fn interval_stats(report: &IntervalReport) -> v1::IntervalStats {
    v1::IntervalStats {
        time_unix_nano: report.time_unix_nano,
        receiver: report.receiver.clone(),
        scraped_resources: count(report.scraped_resources),
        experiment_id: report.experiment_id.clone().unwrap_or_default(),
        pipelines: report.pipelines.iter().map(pipeline_stats).collect(),
    }
}

fn pipeline_stats(p: &PipelineStats) -> v1::PipelineStats {
    v1::PipelineStats {
        pipeline: p.pipeline.clone(),
        mode: mode(p.mode).to_string(),
        resources: count(p.resources),
        series: count(p.series),
        datapoints: count(p.datapoints),
        bytes_raw: count(p.bytes_raw),
        bytes_gzip: count(p.bytes_gzip),
        processing_cpu_seconds: p.processing_cpu.as_secs_f64(),
        series_added: count(p.series_added),
        series_removed: count(p.series_removed),
        cpu_total: p.cpu_total,
        memory_total: p.memory_total,
        comparison: p.comparison.as_ref().map(comparison),
        critical_total: count(p.critical_total),
        critical_visible: count(p.critical_visible),
    }
}

fn comparison(c: &Comparison) -> v1::Comparison {
    v1::Comparison {
        baseline: c.baseline.clone(),
        series_reduction: c.series_reduction,
        datapoints_reduction: c.datapoints_reduction,
        bytes_reduction: c.bytes_reduction,
        critical_total: count(c.critical_total),
        critical_visible: count(c.critical_visible),
        topn_fidelity: c.topn_fidelity,
        cpu_conservation: c.cpu_conservation,
        memory_conservation: c.memory_conservation,
        losses: c
            .losses
            .iter()
            .map(|l| v1::ProcessLoss {
                executable: l.executable.to_string(),
                processes: l.processes,
                cpu_share: l.cpu_share,
                memory_share: l.memory_share,
                folded: l.folded,
            })
            .collect(),
    }
}

/// The words the config uses (`mode: shadow`), which the proto documents.
pub fn mode(m: PipelineMode) -> &'static str {
    match m {
        PipelineMode::Export => "export",
        PipelineMode::Shadow => "shadow",
    }
}

/// `usize` is at most 64 bits on every target the agent builds for; the
/// saturation only keeps this total.
fn count(n: usize) -> u64 {
    u64::try_from(n).unwrap_or(u64::MAX)
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    fn stats(pipeline: &str, mode: PipelineMode, comparison: Option<Comparison>) -> PipelineStats {
        PipelineStats {
            pipeline: pipeline.into(),
            mode,
            resources: 1,
            series: 2,
            datapoints: 3,
            bytes_raw: 4,
            bytes_gzip: 5,
            bytes_gzip_estimated: false,
            processing_cpu: Duration::from_millis(1500),
            series_added: 6,
            series_removed: 7,
            cpu_total: 8.5,
            memory_total: 9.5,
            critical_total: 4,
            critical_visible: 4,
            comparison,
        }
    }

    #[test]
    fn every_field_is_carried_over() {
        let report = IntervalReport {
            time_unix_nano: 1_700_000_000_000_000_000,
            receiver: "procfs".into(),
            scraped_resources: 321,
            experiment_id: Some("exp-1".into()),
            pipelines: vec![
                stats("metrics/baseline", PipelineMode::Export, None),
                stats(
                    "metrics/candidate",
                    PipelineMode::Shadow,
                    Some(Comparison {
                        baseline: "metrics/baseline".into(),
                        series_reduction: 0.1,
                        datapoints_reduction: 0.2,
                        bytes_reduction: 0.3,
                        critical_total: 4,
                        critical_visible: 3,
                        topn_fidelity: 0.9,
                        cpu_conservation: 1.0,
                        memory_conservation: 0.99,
                        losses: vec![crate::pipeline::losses::ProcessLoss {
                            executable: "backup-agent".into(),
                            processes: 2,
                            cpu_share: 0.58,
                            memory_share: 0.1,
                            folded: false,
                        }],
                    }),
                ),
            ],
        };
        let out = interval_stats(&report);
        assert_eq!(out.time_unix_nano, report.time_unix_nano);
        assert_eq!(out.receiver, "procfs");
        assert_eq!(out.scraped_resources, 321);
        assert_eq!(out.experiment_id, "exp-1");
        assert_eq!(out.pipelines.len(), 2);
        let base = &out.pipelines[0];
        assert_eq!(
            base,
            &v1::PipelineStats {
                pipeline: "metrics/baseline".into(),
                mode: "export".into(),
                resources: 1,
                series: 2,
                datapoints: 3,
                bytes_raw: 4,
                bytes_gzip: 5,
                processing_cpu_seconds: 1.5,
                series_added: 6,
                series_removed: 7,
                cpu_total: 8.5,
                memory_total: 9.5,
                comparison: None,
                critical_total: 4,
                critical_visible: 4,
            }
        );
        let candidate = &out.pipelines[1];
        assert_eq!(candidate.mode, "shadow");
        assert_eq!(
            candidate.comparison,
            Some(v1::Comparison {
                baseline: "metrics/baseline".into(),
                series_reduction: 0.1,
                datapoints_reduction: 0.2,
                bytes_reduction: 0.3,
                critical_total: 4,
                critical_visible: 3,
                topn_fidelity: 0.9,
                cpu_conservation: 1.0,
                memory_conservation: 0.99,
                losses: vec![v1::ProcessLoss {
                    executable: "backup-agent".into(),
                    processes: 2,
                    cpu_share: 0.58,
                    memory_share: 0.1,
                    folded: false,
                }],
            })
        );
    }

    #[test]
    fn no_experiment_is_an_empty_id() {
        let report = IntervalReport {
            time_unix_nano: 1,
            receiver: "procfs/host".into(),
            scraped_resources: 0,
            experiment_id: None,
            pipelines: vec![],
        };
        assert_eq!(interval_stats(&report).experiment_id, "");
    }
}
