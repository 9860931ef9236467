//! Properties every processor must hold on any batch: conservation of totals
//! through rollups, protection of critical processes (and of the priorities
//! a lossy processor's `protect` lists), the top-k bound, and determinism.

mod common;

use common::*;
use phoenix_processors::model::{Batch, Resource};
use phoenix_processors::{Problem, Processor, ProcessorConfig, semconv};
use proptest::prelude::*;

fn build(kind: &str, yaml_text: &str) -> Box<dyn Processor> {
    build_value(kind, yaml(yaml_text))
}

fn build_value(kind: &str, value: serde_norway::Value) -> Box<dyn Processor> {
    let config = ProcessorConfig::from_kind(kind, value).expect("valid config");
    assert_eq!(config.validate(), Vec::<Problem>::new());
    config.build().expect("builds")
}

/// A lossy config's YAML with `protect: [...]` added.
fn with_protect(yaml_text: &str, protect: &[&str]) -> serde_norway::Value {
    let mut value: serde_norway::Value = yaml(yaml_text);
    let list = protect.iter().map(|&p| p.into()).collect();
    value
        .as_mapping_mut()
        .expect("a lossy config is a mapping")
        .insert("protect".into(), serde_norway::Value::Sequence(list));
    value
}

/// Run `p` over a few intervals of `procs`: every resource whose priority is
/// in `protected` must come out exactly as it went in, in the same order.
fn protected_pass_through_unchanged(
    p: &mut dyn Processor,
    procs: &[Proc],
    protected: &[&str],
) -> Result<(), TestCaseError> {
    let is_protected = |r: &&Resource| {
        r.attributes
            .get_str(semconv::PHOENIX_PRIORITY)
            .is_some_and(|tag| protected.contains(&tag))
    };
    for input in intervals(procs) {
        let mut out = input.clone();
        p.process(&mut out);
        let protected_in: Vec<_> = input.resources.iter().filter(is_protected).collect();
        let protected_out: Vec<_> = out.resources.iter().filter(is_protected).collect();
        prop_assert_eq!(protected_in, protected_out);
    }
    Ok(())
}

/// One config of every lossy processor, tuned so that each actually drops or
/// merges something on a typical generated batch.
const LOSSY: &[(&str, &str)] = &[
    (
        "filter",
        "{ min_cpu_utilization: 1.0, min_memory: 2GiB, exclude: { match_type: regexp, attributes: [{ key: process.executable.name, value: '^(bash|sshd)$' }] }, metrics: { exclude: { names: [process.disk.io] } } }",
    ),
    (
        "filter",
        "{ include: { attributes: [{ key: process.owner, value: www-data }] }, min_age: 10d }",
    ),
    ("aggregate", "{ group_by: [process.executable.name] }"),
    (
        "aggregate",
        "{ group_by: [process.owner, host.name], functions: { process.memory.usage: max } }",
    ),
    (
        "aggregate",
        "{ track_children: [{ executable_name: '^(nginx|postgres|bash)$' }] }",
    ),
    ("topk", "{ k: 1, by: process.memory.usage }"),
    (
        "topk",
        "{ k: 3, score: { process.cpu.utilization: 2, process.memory.usage: 1 } }",
    ),
    ("topk", "{ k: 2, by: process.cpu.time, others: false }"),
    (
        "sample",
        "{ fraction: 0.0, priorities: [low, medium, high] }",
    ),
    ("sample", "{ fraction: 0.5 }"),
    (
        "budget",
        "{ max_series: 40, by: process.disk.io, min_hold_intervals: 0 }",
    ),
];

/// A parent for most processes, among those before it: a forest, so that
/// `track_children` has trees to fold.
fn forest(procs: &[Proc]) -> Vec<(i64, i64)> {
    procs
        .iter()
        .enumerate()
        .skip(1)
        .filter_map(|(i, p)| {
            let h = (p.pid as usize).wrapping_mul(2_654_435_761) >> 7;
            (!h.is_multiple_of(4)).then(|| (p.pid, procs[h % i].pid))
        })
        .collect()
}

/// Three consecutive intervals of the same processes with values moving,
/// so stateful processors (rates, hysteresis, budget's k) are exercised.
fn intervals(procs: &[Proc]) -> Vec<Batch> {
    let shape = Shape::default();
    let links = forest(procs);
    (0..3u64)
        .map(|i| {
            let moved: Vec<Proc> = procs
                .iter()
                .map(|p| {
                    let mut p = p.clone();
                    let bump = (p.pid as u32)
                        .wrapping_mul(2_654_435_761)
                        .rotate_left(i as u32 * 7)
                        >> 20;
                    p.cpu.0 = p.cpu.0.saturating_add(bump);
                    p.io.1 = p.io.1.saturating_add(bump * 3);
                    p.util.0 = (bump % 2048) as u16;
                    p
                })
                .collect();
            with_parents(shape.batch(&moved, T0 + i * 10 * SEC), &links)
        })
        .collect()
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

    #[test]
    fn aggregate_conserves_every_summable_metric(procs in procs_strategy(80), by_owner in any::<bool>()) {
        let mut p = if by_owner {
            build("aggregate", "{ group_by: [process.owner] }")
        } else {
            build("aggregate", "{}")
        };
        let input = batch(&procs);
        let mut out = input.clone();
        p.process(&mut out);
        prop_assert_eq!(totals(&out), totals(&input));
        prop_assert_eq!(process_count(&out), process_count(&input));
    }

    /// Whatever the parent links (a forest, or anything: loops, self-parents,
    /// links to pids not in the batch), track_children conserves every total
    /// and the process count, leaves protected processes as they were, and
    /// what it emits is either an input resource untouched or a root with
    /// its attributes.
    #[test]
    fn track_children_conserves_totals_on_any_parent_graph(
        procs in procs_strategy(80),
        parents in prop::collection::vec(prop::option::of(any::<prop::sample::Index>()), 80),
        only_forests in any::<bool>(),
        protect in prop::sample::subsequence(PRIORITIES.to_vec(), 0..=PRIORITIES.len()),
    ) {
        let links: Vec<(i64, i64)> = procs
            .iter()
            .enumerate()
            .filter_map(|(i, p)| {
                let parent = parents[i]?;
                let j = match only_forests {
                    true if i == 0 => return None,
                    true => parent.index(i),
                    false => parent.index(procs.len()),
                };
                Some((p.pid, procs[j].pid))
            })
            .collect();
        let text = "{ track_children: [{ executable_name: '^(nginx|postgres)$' }, { command_line: '^/usr/bin/bash --worker [0-9]*[02468]$' }] }";
        let mut p = build_value("aggregate", with_protect(text, &protect));
        let input = with_parents(batch(&procs), &links);
        let mut out = input.clone();
        p.process(&mut out);
        prop_assert_eq!(totals(&out), totals(&input));
        prop_assert_eq!(process_count(&out), process_count(&input));
        let mut protected = protect.clone();
        protected.push("critical");
        let is_protected = |r: &&Resource| {
            r.attributes
                .get_str(semconv::PHOENIX_PRIORITY)
                .is_some_and(|tag| protected.contains(&tag))
        };
        let protected_in: Vec<_> = input.resources.iter().filter(is_protected).collect();
        let protected_out: Vec<_> = out.resources.iter().filter(is_protected).collect();
        prop_assert_eq!(protected_in, protected_out);
        for r in &out.resources {
            match r.identity {
                Some(_) => prop_assert!(input.resources.contains(r)),
                None => {
                    prop_assert!(input.resources.iter().any(|i| i.attributes == r.attributes));
                    prop_assert!(r.metric(semconv::PHOENIX_PROCESS_COUNT).is_some_and(|m| m.total() >= 1.0));
                }
            }
        }
    }

    #[test]
    fn topk_with_others_conserves_every_summable_metric(procs in procs_strategy(80), k in 1usize..12) {
        let mut p = build("topk", &format!("{{ k: {k}, by: process.memory.usage }}"));
        for input in intervals(&procs) {
            let mut out = input.clone();
            p.process(&mut out);
            prop_assert_eq!(totals(&out), totals(&input));
            prop_assert_eq!(process_count(&out), process_count(&input));
        }
    }

    #[test]
    fn budget_conserves_every_summable_metric(procs in procs_strategy(80), max_series in 20usize..400) {
        let mut p = build("budget", &format!("{{ max_series: {max_series}, min_hold_intervals: 1 }}"));
        for input in intervals(&procs) {
            let mut out = input.clone();
            p.process(&mut out);
            prop_assert_eq!(totals(&out), totals(&input));
        }
    }

    #[test]
    fn critical_resources_survive_every_lossy_processor_unchanged(procs in procs_strategy(60)) {
        for (kind, text) in LOSSY {
            let mut p = build(kind, text);
            protected_pass_through_unchanged(&mut *p, &procs, &["critical"])
                .map_err(|e| TestCaseError::fail(format!("{kind} {text}: {e}")))?;
        }
    }

    /// `protect` adds priorities to critical, which stays protected whether
    /// listed or not (the subsequence may or may not include it).
    #[test]
    fn protected_priorities_survive_every_lossy_processor_unchanged(
        procs in procs_strategy(60),
        protect in prop::sample::subsequence(PRIORITIES.to_vec(), 0..=PRIORITIES.len()),
    ) {
        let mut protected = protect.clone();
        protected.push("critical");
        for (kind, text) in LOSSY {
            let mut p = build_value(kind, with_protect(text, &protect));
            protected_pass_through_unchanged(&mut *p, &procs, &protected)
                .map_err(|e| TestCaseError::fail(format!("{kind} {text} protect {protect:?}: {e}")))?;
        }
    }

    #[test]
    fn topk_output_has_at_most_k_plus_one_non_critical(procs in procs_strategy(80), k in 1usize..10, hysteresis in 0.0f64..1.0) {
        let mut p = build("topk", &format!("{{ k: {k}, by: process.cpu.time, hysteresis: {hysteresis} }}"));
        for input in intervals(&procs) {
            let mut out = input.clone();
            p.process(&mut out);
            let non_critical = out.resources.iter().filter(|r| !is_critical(r)).count();
            prop_assert!(non_critical <= k + 1, "{} non-critical for k = {}", non_critical, k);
        }
    }

    #[test]
    fn processors_are_deterministic(procs in procs_strategy(60)) {
        let mut all: Vec<(&str, &str)> = LOSSY.to_vec();
        all.push(("priority", "{ critical: ['^postgres$'], rules: [{ priority: high, min_cpu_utilization: 1.0 }] }"));
        all.push(("attributes", "{ actions: [{ action: hash, key: process.command_line }, { action: keep_only, keys: [process.executable.name, process.command_line] }] }"));
        for (kind, text) in all {
            let run = || {
                let mut p = build(kind, text);
                intervals(&procs)
                    .into_iter()
                    .map(|mut b| {
                        p.process(&mut b);
                        b
                    })
                    .collect::<Vec<_>>()
            };
            prop_assert_eq!(run(), run(), "{} {}", kind, text);
        }
    }
}

/// Anything a buggy receiver or an earlier processor could hand over: odd
/// numbers (NaN, infinities, i64 extremes), missing metrics, shared or
/// absent identities, unknown priority values, time running backwards.
mod hostile {
    use super::*;
    use phoenix_processors::model::{Attributes, KeyValue, Metric, Number, Point, Resource, Value};
    use phoenix_processors::semconv;

    fn number() -> impl Strategy<Value = Number> {
        prop_oneof![
            any::<i64>().prop_map(Number::Int),
            Just(Number::Int(i64::MAX)),
            Just(Number::Int(i64::MIN)),
            any::<f64>().prop_map(Number::Double),
            Just(Number::Double(f64::NAN)),
            Just(Number::Double(f64::INFINITY)),
            Just(Number::Double(-1.0)),
        ]
    }

    fn resource() -> impl Strategy<Value = Resource> {
        let shape = Shape::default();
        let descs = [
            shape.cpu_time.clone(),
            shape.cpu_util.clone(),
            shape.memory.clone(),
            shape.disk_io.clone(),
            shape.uptime.clone(),
        ];
        let point_attrs = [Attributes::empty(), shape.user.clone(), shape.read.clone()];
        (
            prop::option::of(0u64..4),
            prop::option::of(prop_oneof![
                Just("critical"),
                Just("low"),
                Just("high"),
                Just("bogus"),
            ]),
            prop::option::of(prop_oneof![
                Just("2023-11-14T22:12:50Z"),
                Just("2999-01-01T00:00:00Z"),
                Just("garbage"),
            ]),
            prop::collection::vec(
                (
                    0..descs.len(),
                    prop::collection::vec((0..point_attrs.len(), number(), any::<u64>()), 0..3),
                ),
                0..6,
            ),
            // Few pids, so loops, self-parents and duplicates are common.
            (prop::option::of(-1i64..6), prop::option::of(-1i64..6)),
        )
            .prop_map(move |(identity, priority, created, metrics, (pid, ppid))| {
                let mut attrs = vec![KeyValue::new(
                    semconv::PROCESS_EXECUTABLE_NAME.into(),
                    Value::Str(NAMES[identity.unwrap_or(0) as usize % NAMES.len()].into()),
                )];
                if let Some(p) = priority {
                    attrs.push(KeyValue::new(
                        semconv::PHOENIX_PRIORITY.into(),
                        Value::Str(p.into()),
                    ));
                }
                if let Some(c) = created {
                    attrs.push(KeyValue::new(
                        semconv::PROCESS_CREATION_TIME.into(),
                        Value::Str(c.into()),
                    ));
                }
                for (key, value) in [
                    (semconv::PROCESS_PID, pid),
                    (semconv::PROCESS_PARENT_PID, ppid),
                ] {
                    if let Some(v) = value {
                        attrs.push(KeyValue::new(key.into(), Value::Int(v)));
                    }
                }
                Resource {
                    attributes: Attributes::new(attrs),
                    metrics: metrics
                        .into_iter()
                        .map(|(d, points)| Metric {
                            desc: descs[d].clone(),
                            points: points
                                .into_iter()
                                .map(|(a, value, start)| Point {
                                    attributes: point_attrs[a].clone(),
                                    start_time_unix_nano: start,
                                    value,
                                })
                                .collect(),
                        })
                        .collect(),
                    identity,
                }
            })
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

        #[test]
        fn no_processor_panics_on_hostile_batches(
            batches in prop::collection::vec((any::<u64>(), prop::collection::vec(resource(), 0..20)), 1..4)
        ) {
            let mut all: Vec<(&str, &str)> = LOSSY.to_vec();
            all.push(("priority", "{ critical: ['^nginx$'], rules: [{ priority: high, min_cpu_utilization: 0.1, min_memory: 1 }] }"));
            all.push(("attributes", "{ actions: [{ action: hash, key: phoenix.priority }, { action: truncate, key: process.executable.name, max_length: 1 }] }"));
            all.push(("topk", "{ k: 2, score: { process.cpu.time: 1, process.disk.io: 1, process.uptime: 1 } }"));
            all.push(("budget", "{ max_series: 5, min_hold_intervals: 0, k_hysteresis: 0 }"));
            all.push(("aggregate", "{ protect: [high, low] }"));
            all.push(("aggregate", "{ track_children: [{ executable_name: '^(nginx|bash)$' }], protect: [high] }"));
            all.push(("budget", "{ max_series: 5, min_hold_intervals: 0, protect: [high] }"));
            for (kind, text) in all {
                let mut p = build(kind, text);
                for (time, resources) in &batches {
                    let mut b = Batch {
                        time_unix_nano: *time,
                        common_attributes: Attributes::empty(),
                        resources: resources.clone(),
                    };
                    p.process(&mut b);
                }
            }
        }
    }
}
