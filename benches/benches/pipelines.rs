//! Whole pipelines: each template's processor chain on synthetic scrapes of
//! 2,000 and 10,000 processes, the per-pipeline accounting, and — the claim
//! that matters — five pipelines (the baseline and the four lossy
//! templates) against the scrape that feeds them, in one run on the same
//! real population.
//!
//! Run: `cargo bench -p phoenix-benches --bench pipelines -- --warm-up-time 1 --measurement-time 3`

use std::hint::black_box;
use std::time::{Duration, Instant};

use criterion::{BatchSize, BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use phoenix_agent::pipeline::Topology;
use phoenix_agent::pipeline::accounting::Accountant;
use phoenix_agent::receiver::procfs::ProcfsReceiver;
use phoenix_benches::batch::synthetic_batch;
use phoenix_benches::sleepers::Sleepers;
use phoenix_benches::templates::{TEMPLATES, template_text};
use phoenix_config::{AgentConfig, ComponentId, PipelineConfig, PipelineMode, ReceiverConfig};
use phoenix_processors::Processor;
use phoenix_processors::model::Batch;
use phoenix_telemetry::registry::Registry;

/// The processors of a template's only pipeline, built fresh.
fn chain(name: &str) -> Vec<Box<dyn Processor>> {
    let config = AgentConfig::load(&template_text(name)).expect("valid template");
    let pipeline = config.pipelines.values().next().expect("a pipeline");
    pipeline
        .processors
        .iter()
        .map(|id| config.processors[id].build().expect("builds"))
        .collect()
}

fn run_chain(chain: &mut [Box<dyn Processor>], mut batch: Batch) -> Batch {
    for p in chain.iter_mut() {
        p.process(&mut batch);
    }
    batch
}

fn templates(c: &mut Criterion) {
    let mut group = c.benchmark_group("template");
    for n in [2_000, 10_000] {
        let batch = synthetic_batch(n);
        group.throughput(Throughput::Elements(batch.datapoint_count() as u64));
        for name in TEMPLATES {
            let mut processors = chain(name);
            // Warm the state (rates, hysteresis) as in steady operation.
            run_chain(&mut processors, batch.clone());
            group.bench_with_input(BenchmarkId::new(*name, n), &batch, |b, batch| {
                b.iter_batched(
                    || batch.clone(),
                    |input| black_box(run_chain(&mut processors, input)),
                    BatchSize::LargeInput,
                )
            });
        }
        let mut accountant = Accountant::new();
        group.bench_with_input(BenchmarkId::new("accounting", n), &batch, |b, batch| {
            b.iter(|| {
                black_box(accountant.measure(
                    "metrics/x",
                    PipelineMode::Export,
                    batch,
                    Duration::ZERO,
                ))
            })
        });
    }
    group.finish();
}

/// Five shadow pipelines on one procfs receiver: the baseline and four
/// lossy templates' chains, each with its own processor ids, as an agent
/// running them side by side would.
fn five_pipelines() -> AgentConfig {
    let mut config = AgentConfig::load(
        "receivers:
  procfs:
    metrics:
      process.cpu.utilization: { enabled: true }
      process.thread.count: { enabled: true }
service:
  pipelines:
    metrics/baseline: { receivers: [procfs], mode: shadow }
",
    )
    .expect("base config");
    for name in [
        "process-standard-v1",
        "process-aggressive-v1",
        "process-critical-v1",
        "process-dynamic-v1",
    ] {
        let template = AgentConfig::load(&template_text(name)).expect("valid template");
        let (id, pipeline) = template.pipelines.into_iter().next().expect("a pipeline");
        let variant = id.name().unwrap_or("x").to_string();
        let mut ids = Vec::new();
        for pid in &pipeline.processors {
            let unique = ComponentId::parse(&format!(
                "{}/{variant}-{}",
                pid.kind(),
                pid.name().unwrap_or("main")
            ))
            .expect("id");
            config
                .processors
                .insert(unique.clone(), template.processors[pid].clone());
            ids.push(unique);
        }
        config.pipelines.insert(
            id,
            PipelineConfig {
                receivers: vec![ComponentId::parse("procfs").expect("id")],
                processors: ids,
                exporters: Vec::new(),
                mode: PipelineMode::Shadow,
            },
        );
    }
    config
}

fn against_scrape(c: &mut Criterion) {
    const POPULATION: usize = 2_000;
    let _sleepers = Sleepers::spawn(POPULATION);
    let registry = Registry::new();
    let config = five_pipelines();
    let (topology, _) = Topology::build(&config, None, &registry).expect("builds");
    let procfs = ComponentId::parse("procfs").expect("id");
    let ReceiverConfig::Procfs(receiver_config) = &config.receivers[&procfs];
    let mut receiver = ProcfsReceiver::new(receiver_config, &registry).expect("receiver");
    // Two scrapes: the second has utilization, as in steady operation.
    receiver.scrape();
    let snapshot = receiver.scrape();
    let processes = snapshot.resources.len();
    for _ in 0..3 {
        topology.run_interval(&procfs, &snapshot);
    }

    let mut group = c.benchmark_group("five_pipelines_vs_scrape");
    group
        .sample_size(20)
        .throughput(Throughput::Elements(processes as u64));
    group.bench_function("scrape", |b| b.iter(|| black_box(receiver.scrape())));
    group.bench_function("five_pipelines", |b| {
        b.iter(|| black_box(topology.run_interval(&procfs, &snapshot)))
    });
    group.finish();

    // Interleaved medians, so both see the same machine noise.
    let (mut scrape, mut pipelines) = (Vec::new(), Vec::new());
    for _ in 0..30 {
        let t = Instant::now();
        black_box(receiver.scrape());
        scrape.push(t.elapsed().as_secs_f64());
        let t = Instant::now();
        black_box(topology.run_interval(&procfs, &snapshot));
        pipelines.push(t.elapsed().as_secs_f64());
    }
    let median = |v: &mut Vec<f64>| {
        v.sort_by(f64::total_cmp);
        v[v.len() / 2]
    };
    let (s, p) = (median(&mut scrape), median(&mut pipelines));
    println!(
        "\n{processes} processes: scrape {:.2} ms ({:.2} µs/process), five pipelines {:.2} ms ({:.2} µs/process), pipelines/scrape = {:.2}x",
        s * 1e3,
        s * 1e6 / processes as f64,
        p * 1e3,
        p * 1e6 / processes as f64,
        p / s
    );
}

criterion_group!(benches, templates, against_scrape);
criterion_main!(benches);
