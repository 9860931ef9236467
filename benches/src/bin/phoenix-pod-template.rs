//! What `configs/templates/process-pod-v1.yaml` saves, on a synthetic node
//! with pods: the template's processors on a synthetic scrape whose
//! processes carry `container.id`, with a fake pod snapshot in place of
//! the API server (the simulator's /proc has no cgroup files yet, so the
//! whole agent cannot measure it; this runs the same processors).
//!
//!   phoenix-pod-template [PROCESSES] [PODS]     default 2000 60
//!
//! Prints the baseline and the template as the console table does:
//! resources, series, datapoints, gzip bytes, series saved, critical
//! processes kept individually, CPU and memory totals against the baseline.

use std::sync::Arc;
use std::time::{Duration, Instant};

use phoenix_agent::pipeline::accounting::Accountant;
use phoenix_benches::batch::synthetic_batch;
use phoenix_benches::templates::template_text;
use phoenix_config::{AgentConfig, PipelineMode};
use phoenix_processors::model::{Batch, KeyValue, Value};
use phoenix_processors::processors::k8s::{
    ContainerMeta, Extraction, K8sAttributes, Owner, PodIndex, PodMeta, PodMetadata,
};
use phoenix_processors::{Processor, ProcessorConfig, semconv};

fn container_id(pod: usize, container: usize) -> String {
    format!("{:016x}", (pod * 16 + container + 1) as u64 * 0x9e37_79b9).repeat(4)
}

/// `pods` pods in four namespaces (the first few in kube-system), owned by
/// Deployments, StatefulSets, DaemonSets and CronJobs, two containers each.
fn fake_pods(pods: usize) -> Vec<PodMeta> {
    (0..pods)
        .map(|p| {
            let (namespace, kind, owner) = match p % 10 {
                0 if p < 30 => ("kube-system", "DaemonSet", format!("node-agent-{p}")),
                1..=5 => ("shop", "ReplicaSet", format!("web-{}-7d9c5b", p % 7)),
                6 | 7 => ("data", "StatefulSet", format!("db-{}", p % 3)),
                8 => ("batch", "Job", format!("report-{}", 29_300_160 + p)),
                _ => ("payments", "ReplicaSet", format!("api-{}-5f6a7b", p % 5)),
            };
            PodMeta {
                name: format!("{owner}-{p}"),
                namespace: namespace.into(),
                uid: format!("uid-{p}"),
                node_name: "worker-1".into(),
                labels: vec![("pod-template-hash".into(), "7d9c5b".into())],
                annotations: Vec::new(),
                owner: Some(Owner {
                    kind: kind.into(),
                    name: owner,
                }),
                containers: (0..2)
                    .map(|c| ContainerMeta {
                        name: format!("c{c}"),
                        id: container_id(p, c),
                    })
                    .collect(),
            }
        })
        .collect()
}

/// The synthetic scrape, nine processes in ten in a pod's container
/// (`container.id` as the procfs receiver will set it), the rest on the host.
fn scrape(processes: usize, pods: usize) -> Batch {
    let mut batch = synthetic_batch(processes);
    let key: Arc<str> = semconv::CONTAINER_ID.into();
    for (i, r) in batch.resources.iter_mut().enumerate() {
        if i % 10 == 9 {
            continue;
        }
        let id = container_id((i * 7) % pods, i % 2);
        r.attributes = r
            .attributes
            .with_all(&[KeyValue::new(key.clone(), Value::Str(id.into()))]);
    }
    batch
}

fn main() {
    let args: Vec<usize> = std::env::args()
        .skip(1)
        .filter_map(|a| a.parse().ok())
        .collect();
    let processes = args.first().copied().unwrap_or(2000);
    let pods = args.get(1).copied().unwrap_or(60).max(1);

    let config = AgentConfig::load(&template_text("process-pod-v1")).expect("valid template");
    let (_, pipeline) = config.pipelines.iter().next().expect("a pipeline");
    let metadata = Arc::new(PodMetadata::new(|| {}));
    let mut chain: Vec<Box<dyn Processor>> = Vec::new();
    for id in &pipeline.processors {
        let built = match &config.processors[id] {
            ProcessorConfig::K8sAttributes(k) => {
                metadata.publish(PodIndex::build(
                    &fake_pods(pods),
                    &Extraction::new(&k.extract),
                ));
                Box::new(K8sAttributes::new(k, metadata.clone()).expect("builds"))
            }
            other => other.build().expect("builds"),
        };
        chain.push(built);
    }

    let input = scrape(processes, pods);
    let mut baseline = Accountant::new();
    let mut template = Accountant::new();
    let mut elapsed = Duration::ZERO;
    let mut last = None;
    // The first interval warms the processors' state; the second is measured.
    for _ in 0..2 {
        let mut out = input.clone();
        let started = Instant::now();
        for p in &mut chain {
            p.process(&mut out);
        }
        elapsed = started.elapsed();
        let b = baseline.measure("baseline", PipelineMode::Shadow, &input, Duration::ZERO);
        let t = template.measure("process-pod-v1", PipelineMode::Shadow, &out, elapsed);
        last = Some((b, t, out));
    }
    let (b, t, out) = last.expect("measured");
    let critical = out
        .resources
        .iter()
        .filter(|r| {
            r.identity.is_some()
                && r.attributes.get_str(semconv::PHOENIX_PRIORITY)
                    == Some(semconv::PRIORITY_CRITICAL)
        })
        .count();
    // Every process the template's priority processor calls critical, on the input.
    let mut tagged = input.clone();
    for p in chain.iter_mut().take(2) {
        p.process(&mut tagged);
    }
    let tagged_critical = tagged
        .resources
        .iter()
        .filter(|r| {
            r.attributes.get_str(semconv::PHOENIX_PRIORITY) == Some(semconv::PRIORITY_CRITICAL)
        })
        .count();
    println!("{processes} processes, {pods} pods (9 in 10 processes in a pod)");
    println!(
        "| pipeline | resources | series | datapoints | gzip bytes | saved (series) | critical kept | CPU Σ | memory Σ |"
    );
    println!("|---|---:|---:|---:|---:|---:|---:|---:|---:|");
    println!(
        "| baseline | {} | {} | {} | {} | — | — | — | — |",
        b.resources, b.series, b.datapoints, b.bytes_gzip
    );
    println!(
        "| process-pod-v1 | {} | {} | {} | {} | {:.1}% | {critical}/{tagged_critical} | {:.3} | {:.3} |",
        t.resources,
        t.series,
        t.datapoints,
        t.bytes_gzip,
        100.0 * (1.0 - t.series as f64 / b.series as f64),
        t.cpu_total / b.cpu_total,
        t.memory_total / b.memory_total,
    );
    println!(
        "processors: {:.2} ms per interval (this build's profile)",
        elapsed.as_secs_f64() * 1e3
    );
}
