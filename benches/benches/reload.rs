//! Reload latency: parse + validate + build + swap of each template over a
//! running agent, through the same `Service::reload` every trigger uses.
//!
//! Each iteration applies the template, then the baseline again, so every
//! measured reload really rebuilds the template's pipeline (the receiver and
//! the exporter are kept, as in production). Reported per reload.

use std::time::{Duration, Instant};

use criterion::{Criterion, criterion_group, criterion_main};
use phoenix_agent::pipeline::{ReloadSource, Service};
use phoenix_agent::telemetry::server::Health;
use phoenix_benches::templates::{TEMPLATES, template_text};
use phoenix_config::AgentConfig;
use phoenix_telemetry::registry::Registry;

/// A template with a long interval, so no scrape runs during the
/// measurement (its OTLP exporter connects lazily: no network is needed).
fn local(text: &str) -> String {
    text.replace("collection_interval: 10s", "collection_interval: 1h")
}

fn baseline() -> String {
    "receivers:
  procfs:
    collection_interval: 1h
    root_path: ${env:PHOENIX_ROOT_PATH:-/}
    metrics:
      process.cpu.utilization: { enabled: true }
      process.thread.count: { enabled: true }
exporters:
  otlp_grpc:
    endpoint: ${env:OTLP_ENDPOINT:-http://localhost:4317}
    compression: gzip
service:
  pipelines:
    metrics/baseline: { receivers: [procfs], exporters: [otlp_grpc] }
"
    .to_string()
}

fn reload(c: &mut Criterion) {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    let base = baseline();
    let mut group = c.benchmark_group("reload");
    group
        .sample_size(30)
        .measurement_time(Duration::from_secs(3));
    for name in TEMPLATES {
        let text = local(&template_text(name));
        let service = runtime.block_on(async {
            Service::start(
                AgentConfig::load(&base).expect("baseline"),
                &base,
                ReloadSource::Startup,
                &Registry::new(),
                Health::new(),
            )
            .expect("start")
        });
        group.bench_function(*name, |b| {
            b.iter_custom(|iterations| {
                let mut total = Duration::ZERO;
                for _ in 0..iterations {
                    runtime.block_on(async {
                        let started = Instant::now();
                        service
                            .reload(&text, ReloadSource::Http)
                            .await
                            .expect("template applies");
                        total += started.elapsed();
                        service
                            .reload(&base, ReloadSource::Http)
                            .await
                            .expect("baseline applies");
                    });
                }
                total
            })
        });
        runtime.block_on(service.shutdown());
    }
    group.finish();
}

criterion_group!(benches, reload);
criterion_main!(benches);
