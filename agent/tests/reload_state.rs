//! A reload keeps the state of what it does not change: the receiver's
//! process cache (CPU utilization continues at once) and the processors of
//! pipelines whose processor chain is unchanged (top-k hysteresis).

use std::time::Duration;

use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest;
use phoenix_agent::pipeline::{ReloadSource, Service};
use phoenix_agent::telemetry::server::Health;
use phoenix_config::AgentConfig;
use phoenix_telemetry::registry::Registry;

fn config(out: &std::path::Path, other_processors: &str) -> String {
    format!(
        "receivers:
  procfs:
    collection_interval: 300ms
    metrics:
      process.cpu.utilization: {{ enabled: true }}
processors:
  topk/cpu: {{ k: 2, by: process.cpu.utilization }}
  aggregate/by_name: {{ group_by: [process.executable.name] }}
exporters:
  file: {{ path: {} }}
service:
  pipelines:
    metrics/top: {{ receivers: [procfs], processors: [topk/cpu], exporters: [file] }}
    metrics/other: {{ receivers: [procfs], processors: [{other_processors}], exporters: [file] }}
",
        out.display()
    )
}

/// Lines of the file exporter's output whose resources carry `pipeline`.
fn lines_of(out: &std::path::Path, pipeline: &str) -> Vec<ExportMetricsServiceRequest> {
    std::fs::read_to_string(out)
        .unwrap_or_default()
        .lines()
        .filter_map(|l| serde_json::from_str::<ExportMetricsServiceRequest>(l).ok())
        .filter(|r| {
            format!("{:?}", r.resource_metrics.first().map(|rm| &rm.resource)).contains(pipeline)
        })
        .collect()
}

fn has_utilization(request: &ExportMetricsServiceRequest) -> bool {
    request
        .resource_metrics
        .iter()
        .flat_map(|rm| &rm.scope_metrics)
        .flat_map(|sm| &sm.metrics)
        .any(|m| m.name == "process.cpu.utilization")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unchanged_components_keep_their_state_across_a_reload() {
    let dir = std::env::temp_dir().join(format!("phoenix-reload-state-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let out = dir.join("metrics.jsonl");
    let first = config(&out, "");
    let registry = Registry::new();
    let service = Service::start(
        AgentConfig::load(&first).unwrap(),
        &first,
        ReloadSource::Startup,
        &registry,
        Health::new(),
    )
    .unwrap();
    // Two intervals: the second has utilization (it needs a CPU-time delta).
    for _ in 0..100 {
        if lines_of(&out, "metrics/top").len() >= 2 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let before = lines_of(&out, "metrics/top").len();
    assert!(before >= 2);

    let second = config(&out, "aggregate/by_name");
    let outcome = service
        .reload(&second, ReloadSource::Http)
        .await
        .expect("valid reload");
    assert!(outcome.changed);
    assert_eq!(outcome.summary.receivers_kept, ["procfs"]);
    assert_eq!(outcome.summary.exporters_kept, ["file"]);
    assert_eq!(
        outcome.summary.pipelines_kept,
        ["metrics/top"],
        "{:?}",
        outcome.summary
    );
    assert_eq!(outcome.summary.pipelines_new, ["metrics/other"]);

    // The very next interval after the reload still has CPU utilization: the
    // receiver's CPU history survived (a new receiver has none on its first scrape).
    for _ in 0..100 {
        if lines_of(&out, "metrics/top").len() > before {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let after = lines_of(&out, "metrics/top");
    assert!(after.len() > before, "an interval after the reload");
    assert!(
        has_utilization(&after[before]),
        "utilization continues across the reload"
    );

    // The same config again is a no-op.
    let again = service.reload(&second, ReloadSource::Http).await.unwrap();
    assert!(!again.changed);
    service.shutdown().await;
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_shorter_interval_takes_effect_without_waiting_out_the_old_one() {
    let dir = std::env::temp_dir().join(format!("phoenix-reload-interval-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let out = dir.join("metrics.jsonl");
    let text = |interval: &str| {
        format!(
            "receivers: {{ procfs: {{ collection_interval: {interval} }} }}
exporters: {{ file: {{ path: {} }} }}
service: {{ pipelines: {{ metrics/a: {{ receivers: [procfs], exporters: [file] }} }} }}
",
            out.display()
        )
    };
    let slow = text("1h");
    let service = Service::start(
        AgentConfig::load(&slow).unwrap(),
        &slow,
        ReloadSource::Startup,
        &Registry::new(),
        Health::new(),
    )
    .unwrap();
    let lines = || {
        std::fs::read_to_string(&out)
            .map(|t| t.lines().count())
            .unwrap_or(0)
    };
    for _ in 0..100 {
        if lines() >= 1 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(
        lines(),
        1,
        "the first tick is immediate, the next one an hour away"
    );
    let outcome = service
        .reload(&text("200ms"), ReloadSource::Http)
        .await
        .unwrap();
    assert_eq!(
        outcome.summary.receivers_kept,
        ["procfs"],
        "only the interval changed"
    );
    // Well within an hour: ticks every 200 ms from the reload on.
    for _ in 0..200 {
        if lines() >= 4 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(
        lines() >= 4,
        "the new interval applies at once: {} intervals",
        lines()
    );
    service.shutdown().await;
    let _ = std::fs::remove_dir_all(&dir);
}
