//! Criterion benches of every processor on synthetic scrapes of 2,000 and
//! 10,000 processes shaped like the procfs receiver's output (shared metric
//! descriptors and point attribute sets, interned-style shared strings).
//!
//! Throughput is in data points. The batch is cloned outside the timed part
//! (`iter_batched`): a pipeline gets its own copy of the scrape anyway, and
//! what is measured is `process()` alone.
//!
//! Run: `cargo bench -p phoenix-benches --bench processors -- --warm-up-time 1 --measurement-time 3`

use std::collections::BTreeMap;
use std::hint::black_box;

use criterion::{BatchSize, BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use phoenix_benches::batch::synthetic_batch;
use phoenix_processors::processors::{
    AggregateConfig, AttributeAction, AttributeMatch, AttributePattern, AttributesConfig,
    BudgetConfig, FilterConfig, MatchType, MetricFilter, NameMatch, Priority, PriorityConfig,
    PriorityRule, SampleConfig, TopKConfig,
};
use phoenix_processors::{ProcessorConfig, semconv};

fn configs() -> Vec<(&'static str, ProcessorConfig)> {
    vec![
        (
            "filter",
            ProcessorConfig::Filter(FilterConfig {
                protect: Vec::new(),
                include: None,
                exclude: Some(AttributeMatch {
                    match_type: MatchType::Regexp,
                    attributes: vec![AttributePattern {
                        key: semconv::PROCESS_EXECUTABLE_NAME.into(),
                        value: "^(kworker|ksoftirqd|migration|rcu_sched)$".into(),
                    }],
                }),
                metrics: MetricFilter {
                    include: None,
                    exclude: Some(NameMatch {
                        match_type: MatchType::Strict,
                        names: vec![semconv::PROCESS_MEMORY_VIRTUAL.into()],
                    }),
                },
                min_cpu_utilization: Some(0.005),
                min_memory: Some(50 << 20),
                min_age: None,
            }),
        ),
        (
            "priority",
            ProcessorConfig::Priority(PriorityConfig {
                critical: vec![
                    "^(postgres|mysqld|redis-server|nginx|kubelet|containerd|dockerd)$".into(),
                ],
                high: vec!["^(java|node|python3)$".into()],
                medium: vec![],
                rules: vec![PriorityRule {
                    priority: Priority::High,
                    executable_name: None,
                    command_line: Some("--worker-id 0012".into()),
                    owner: None,
                    attributes: Default::default(),
                    min_cpu_utilization: None,
                    min_memory: None,
                }],
                default: Priority::Low,
            }),
        ),
        (
            "attributes",
            ProcessorConfig::Attributes(AttributesConfig {
                actions: vec![
                    AttributeAction::Delete {
                        key: semconv::PROCESS_PID.into(),
                    },
                    AttributeAction::Hash {
                        key: semconv::PROCESS_COMMAND_LINE.into(),
                    },
                    AttributeAction::KeepOnly {
                        keys: vec![
                            semconv::PROCESS_EXECUTABLE_NAME.into(),
                            semconv::PROCESS_COMMAND_LINE.into(),
                            semconv::PROCESS_OWNER.into(),
                        ],
                    },
                ],
            }),
        ),
        (
            "aggregate",
            ProcessorConfig::Aggregate(AggregateConfig::default()),
        ),
        (
            "topk",
            ProcessorConfig::TopK(TopKConfig {
                protect: Vec::new(),
                k: 20,
                by: Some(semconv::PROCESS_CPU_UTILIZATION.into()),
                score: None,
                hysteresis: 0.2,
                others: true,
            }),
        ),
        (
            "topk_score",
            ProcessorConfig::TopK(TopKConfig {
                protect: Vec::new(),
                k: 20,
                by: None,
                score: Some(BTreeMap::from([
                    (semconv::PROCESS_CPU_TIME.to_owned(), 2.0),
                    (semconv::PROCESS_MEMORY_USAGE.to_owned(), 1.0),
                ])),
                hysteresis: 0.2,
                others: true,
            }),
        ),
        (
            "sample",
            ProcessorConfig::Sample(SampleConfig {
                protect: Vec::new(),
                fraction: 0.25,
                priorities: vec![Priority::Low],
                unprioritized: true,
            }),
        ),
        (
            "budget",
            ProcessorConfig::Budget(BudgetConfig {
                protect: Vec::new(),
                max_series: 2000,
                by: None,
                score: None,
                hysteresis: 0.2,
                others: true,
                k_hysteresis: 0.1,
                min_hold_intervals: 6,
                min_k: 0,
                max_k: None,
            }),
        ),
    ]
}

fn processors(c: &mut Criterion) {
    for n in [2_000usize, 10_000] {
        let batch = synthetic_batch(n);
        let mut group = c.benchmark_group(format!("processors/{n}"));
        group.throughput(Throughput::Elements(batch.datapoint_count() as u64));
        // Not a processor: what giving a pipeline its own copy of the scrape
        // costs, for comparison (the agent clones once per pipeline).
        group.bench_function(BenchmarkId::from_parameter("clone"), |b| {
            b.iter_with_large_drop(|| black_box(&batch).clone())
        });
        for (name, config) in configs() {
            assert!(
                config.validate().is_empty(),
                "{name}: {:?}",
                config.validate()
            );
            let mut processor = config.build().expect("bench config builds");
            group.bench_function(BenchmarkId::from_parameter(name), |b| {
                b.iter_batched(
                    || batch.clone(),
                    |mut batch| {
                        processor.process(&mut batch);
                        // Return it so dropping the output is not timed.
                        black_box(batch)
                    },
                    BatchSize::LargeInput,
                )
            });
        }
        group.finish();
    }
}

criterion_group!(benches, processors);
criterion_main!(benches);
