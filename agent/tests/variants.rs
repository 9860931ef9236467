//! Pipeline variants on one scrape: however many pipelines, /proc is read
//! once per interval; shadow pipelines are measured, never exported.

use std::time::Duration;

use phoenix_agent::pipeline::{ReloadSource, Service};
use phoenix_agent::telemetry::server::Health;
use phoenix_config::AgentConfig;
use phoenix_telemetry::registry::Registry;

fn sample(page: &str, series: &str) -> f64 {
    page.lines()
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' '))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or_else(|| panic!("{series} not on the page:\n{page}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn five_pipelines_share_one_scrape_and_shadows_export_nothing() {
    let dir = std::env::temp_dir().join(format!("phoenix-variants-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let out = dir.join("metrics.jsonl");
    let text = format!(
        "receivers:
  procfs: {{ collection_interval: 100ms, metrics: {{ process.cpu.utilization: {{ enabled: true }} }} }}
processors:
  priority: {{ critical: ['^phoenix'] }}
  topk/cpu: {{ k: 3 }}
  aggregate/by_name: {{}}
  budget: {{ max_series: 40 }}
exporters:
  file: {{ path: {} }}
service:
  pipelines:
    metrics/baseline: {{ receivers: [procfs], exporters: [file] }}
    metrics/top: {{ receivers: [procfs], processors: [priority, topk/cpu], exporters: [file] }}
    metrics/agg: {{ receivers: [procfs], processors: [priority, aggregate/by_name], exporters: [file] }}
    metrics/budget: {{ receivers: [procfs], processors: [priority, budget], exporters: [file], mode: shadow }}
    metrics/shadow: {{ receivers: [procfs], processors: [topk/cpu], mode: shadow }}
experiment: {{ id: t, baseline: metrics/baseline, critical_processes: ['^phoenix'] }}
",
        out.display()
    );
    let registry = Registry::new();
    let service = Service::start(
        AgentConfig::load(&text).unwrap(),
        &text,
        ReloadSource::Startup,
        &registry,
        Health::new(),
    )
    .unwrap();
    tokio::time::sleep(Duration::from_millis(1200)).await;
    service.shutdown().await;

    let page = registry.render();
    let scrapes = sample(&page, "phoenix_receiver_scrapes_total{receiver=\"procfs\"}");
    assert!(scrapes >= 3.0, "{scrapes} scrapes");
    for p in ["baseline", "top", "agg", "budget", "shadow"] {
        let intervals = sample(
            &page,
            &format!("phoenix_pipeline_intervals_total{{pipeline=\"metrics/{p}\"}}"),
        );
        assert_eq!(
            intervals, scrapes,
            "metrics/{p} ran once per scrape, on that scrape"
        );
    }
    let written = std::fs::read_to_string(&out).unwrap();
    let lines_of = |p: &str| {
        written
            .lines()
            .filter(|l| l.contains(&format!("\"metrics/{p}\"")))
            .count()
    };
    assert_eq!(lines_of("baseline") as f64, scrapes);
    assert_eq!(lines_of("top") as f64, scrapes);
    assert_eq!(
        lines_of("budget"),
        0,
        "a shadow pipeline exports nothing, even with exporters listed"
    );
    assert_eq!(lines_of("shadow"), 0);
    // Shadows are measured all the same.
    assert!(
        sample(
            &page,
            "phoenix_pipeline_series{pipeline=\"metrics/budget\"}"
        ) > 0.0
    );
    // The agent itself is critical here: candidates that run `priority`
    // first keep it visible, whatever else they fold away.
    for p in ["top", "agg", "budget"] {
        let series = format!(
            "phoenix_experiment_ratio{{pipeline=\"metrics/{p}\",kpi=\"critical_coverage\"}}"
        );
        assert_eq!(sample(&page, &series), 1.0, "metrics/{p}");
    }
    let _ = std::fs::remove_dir_all(&dir);
}
