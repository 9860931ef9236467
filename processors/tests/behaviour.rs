//! What each processor does, on hand-made batches.

mod common;

use common::*;
use phoenix_processors::model::{Batch, Number, Resource, Value};
use phoenix_processors::processors::{
    Aggregate, AggregateConfig, AttributeActions, AttributesConfig, Budget, BudgetConfig, Filter,
    FilterConfig, PriorityConfig, PriorityTagger, Sample, SampleConfig, TopK, TopKConfig,
};
use phoenix_processors::{Processor, semconv};

fn run(p: &mut dyn Processor, mut batch: Batch) -> Batch {
    p.process(&mut batch);
    batch
}

fn priority_of(batch: &Batch, pid: i64) -> Option<String> {
    batch
        .resources
        .iter()
        .find(|r| r.attributes.get(semconv::PROCESS_PID) == Some(&Value::Int(pid)))
        .and_then(|r| r.attributes.get_str(semconv::PHOENIX_PRIORITY))
        .map(str::to_owned)
}

fn with_memory(pid: i64, memory: u32) -> Proc {
    Proc {
        memory,
        ..quiet(pid)
    }
}

// ---------------------------------------------------------------- topk

/// Two processes trade ranks k and k+1 every interval: with hysteresis the
/// membership set never changes after the first interval.
#[test]
fn topk_hysteresis_two_processes_swapping_ranks_do_not_flap() {
    let sequence = |flip: bool| {
        let (a, b) = if flip { (500, 490) } else { (490, 500) };
        let mut procs = vec![
            with_memory(1, 1000),
            with_memory(2, 900),
            with_memory(3, a),
            with_memory(4, b),
        ];
        procs.extend((10..30).map(|pid| with_memory(pid, 10)));
        batch(&procs)
    };
    let config: TopKConfig = yaml("{ k: 3, by: process.memory.usage }");
    let mut topk = TopK::new(&config).unwrap();
    let first = kept(&run(&mut topk, sequence(false)));
    assert_eq!(first.len(), 3);
    for i in 1..20 {
        assert_eq!(
            kept(&run(&mut topk, sequence(i % 2 == 1))),
            first,
            "interval {i}"
        );
    }

    // Control: without hysteresis the same sequence flaps, so the test above
    // does test something.
    let config: TopKConfig = yaml("{ k: 3, by: process.memory.usage, hysteresis: 0 }");
    let mut topk = TopK::new(&config).unwrap();
    let first = kept(&run(&mut topk, sequence(false)));
    assert_ne!(kept(&run(&mut topk, sequence(true))), first);
}

#[test]
fn topk_member_falling_beyond_the_hysteresis_window_is_replaced() {
    let config: TopKConfig = yaml("{ k: 2, by: process.memory.usage, hysteresis: 0.5 }");
    let mut topk = TopK::new(&config).unwrap();
    let procs = |m3: u32| {
        batch(&[
            with_memory(1, 100),
            with_memory(2, 90),
            with_memory(3, m3),
            with_memory(4, 70),
            with_memory(5, 60),
        ])
    };
    assert_eq!(
        kept(&run(&mut topk, procs(10))),
        kept(&batch(&[quiet(1), quiet(2)]))
    );
    // pid 2 at rank 3 (index 2) is within k + ceil(k * 0.5) = 3: it stays.
    assert_eq!(kept(&run(&mut topk, procs(95))).len(), 2);
    assert!(kept(&run(&mut topk, procs(95))).contains(&identity(2)));
    // Two newcomers above it push it to index 3: out; the best newcomer in.
    let out = run(
        &mut topk,
        batch(&[
            with_memory(1, 100),
            with_memory(2, 50),
            with_memory(3, 95),
            with_memory(4, 96),
            with_memory(5, 60),
        ]),
    );
    assert_eq!(kept(&out), kept(&batch(&[quiet(1), quiet(4)])));
}

#[test]
fn topk_others_rollup_sums_and_counts_what_it_folds() {
    let config: TopKConfig = yaml("{ k: 1, by: process.memory.usage }");
    let mut topk = TopK::new(&config).unwrap();
    let mut critical = with_memory(9, 1);
    critical.priority = Some(0);
    let out = run(
        &mut topk,
        batch(&[
            with_memory(1, 100),
            with_memory(2, 20),
            with_memory(3, 30),
            critical,
        ]),
    );
    // The critical one, the top one, and others.
    assert_eq!(out.resources.len(), 3);
    let others = out.resources.last().unwrap();
    assert_eq!(others.identity, None);
    assert_eq!(
        others.attributes.get_str(semconv::PROCESS_EXECUTABLE_NAME),
        Some("others")
    );
    assert_eq!(
        others.attributes.get_str(semconv::PHOENIX_ROLLUP),
        Some("others")
    );
    assert_eq!(others.attributes.len(), 2);
    assert_eq!(
        others
            .metric(semconv::PROCESS_MEMORY_USAGE)
            .unwrap()
            .total(),
        50.0
    );
    let count = others.metric(semconv::PHOENIX_PROCESS_COUNT).unwrap();
    assert_eq!(count.points[0].value, Number::Int(2));
    assert_eq!(&*count.desc.unit, "{process}");
    // Uptime is an age: the rollup reports the oldest member, not a sum.
    assert_eq!(
        others.metric(semconv::PROCESS_UPTIME).unwrap().total(),
        3600.0
    );
}

#[test]
fn topk_without_others_drops_the_rest() {
    let config: TopKConfig = yaml("{ k: 1, by: process.memory.usage, others: false }");
    let out = run(
        &mut TopK::new(&config).unwrap(),
        batch(&[with_memory(1, 100), with_memory(2, 20)]),
    );
    assert_eq!(kept(&out), vec![identity(1)]);
    assert_eq!(out.resources.len(), 1);
}

#[test]
fn topk_ranks_counters_by_their_rate() {
    // pid 1 has burned far more CPU in total but is idle now; pid 2 is busy.
    let config: TopKConfig = yaml("{ k: 1, by: process.cpu.time, hysteresis: 0 }");
    let mut topk = TopK::new(&config).unwrap();
    let shape = Shape::default();
    let at = |t: u64, busy: u32| {
        let old = Proc {
            cpu: (1_000_000 * 1024, 0),
            age: 100_000,
            ..quiet(1)
        };
        let new = Proc {
            cpu: (busy * 1024, 0),
            age: 100_000,
            ..quiet(2)
        };
        shape.batch(&[old, new], T0 + t * SEC)
    };
    assert_eq!(kept(&run(&mut topk, at(0, 10))), vec![identity(1)]);
    assert_eq!(kept(&run(&mut topk, at(10, 60))), vec![identity(2)]);
}

#[test]
fn topk_cpu_utilization_falls_back_to_cpu_time_rate_when_not_scraped() {
    let config: TopKConfig = yaml("{ k: 1 }");
    let mut topk = TopK::new(&config).unwrap();
    let strip = |mut b: Batch| {
        for r in &mut b.resources {
            r.metrics
                .retain(|m| &*m.desc.name != semconv::PROCESS_CPU_UTILIZATION);
        }
        b
    };
    let p = |pid, cpu: u32| Proc {
        cpu: (cpu * 1024, 0),
        age: 100,
        ..quiet(pid)
    };
    let out = run(&mut topk, strip(batch(&[p(1, 5), p(2, 50)])));
    assert_eq!(kept(&out), vec![identity(2)]);
}

#[test]
fn topk_score_weighs_normalised_metrics() {
    let p = |pid, util: u16, memory| Proc {
        util: (util, 0),
        memory,
        ..quiet(pid)
    };
    let procs = [p(1, 1024, 10), p(2, 100, 1000)];
    let cpu_heavy: TopKConfig =
        yaml("{ k: 1, score: { process.cpu.utilization: 3, process.memory.usage: 1 } }");
    let mem_heavy: TopKConfig =
        yaml("{ k: 1, score: { process.cpu.utilization: 1, process.memory.usage: 3 } }");
    assert_eq!(
        kept(&run(&mut TopK::new(&cpu_heavy).unwrap(), batch(&procs))),
        vec![identity(1)]
    );
    assert_eq!(
        kept(&run(&mut TopK::new(&mem_heavy).unwrap(), batch(&procs))),
        vec![identity(2)]
    );
}

// ---------------------------------------------------------------- budget

fn budget_batch(critical: usize, others: usize) -> Batch {
    let mut procs: Vec<Proc> = (0..critical as i64)
        .map(|i| Proc {
            priority: Some(0),
            ..with_memory(10_000 + i, 1)
        })
        .collect();
    procs.extend((0..others as i64).map(|i| with_memory(i + 1, (i as u32 * 7919) % 1000)));
    batch(&procs)
}

#[test]
fn budget_settles_under_max_series() {
    // 9 points per process; 200 processes = 1800 series against 500.
    let config: BudgetConfig = yaml("{ max_series: 500, by: process.memory.usage }");
    let mut budget = Budget::new(&config).unwrap();
    for i in 0..20 {
        let out = run(&mut budget, budget_batch(5, 200));
        assert!(series(&out) <= 500, "interval {i}: {} series", series(&out));
        assert!(
            series(&out) > 400,
            "interval {i}: budget badly used: {}",
            series(&out)
        );
    }
    // k: (500 - 5 * 9 critical - (9 + 1) for others) / 9 = 49.
    assert_eq!(budget.current_k(), Some(49));
}

#[test]
fn budget_k_changes_respect_min_hold_intervals() {
    let config: BudgetConfig = yaml("{ max_series: 600, min_hold_intervals: 4, k_hysteresis: 0 }");
    let mut budget = Budget::new(&config).unwrap();
    let mut ks = Vec::new();
    for i in 0..40 {
        // The critical load swings every other interval, so the ideal k
        // changes all the time.
        let critical = if (i / 2) % 2 == 0 { 2 } else { 30 };
        let out = run(&mut budget, budget_batch(critical, 100));
        ks.push(budget.current_k().unwrap());
        // Settled: after a fall, the budget holds until the next change.
        if i > 0 && ks[i] < ks[i - 1] {
            assert!(series(&out) <= 600);
        }
    }
    let changes: Vec<usize> = (1..ks.len()).filter(|&i| ks[i] != ks[i - 1]).collect();
    assert!(changes.len() >= 3, "k never moved: {ks:?}");
    for pair in changes.windows(2) {
        assert!(pair[1] - pair[0] >= 4, "k changed too soon: {ks:?}");
    }
}

#[test]
fn budget_k_ignores_small_rises() {
    let config: BudgetConfig =
        yaml("{ max_series: 600, min_hold_intervals: 0, k_hysteresis: 0.5 }");
    let mut budget = Budget::new(&config).unwrap();
    run(&mut budget, budget_batch(20, 100));
    let k = budget.current_k().unwrap();
    // Fewer critical processes: ideal k rises a little, by less than 50%.
    run(&mut budget, budget_batch(15, 100));
    assert_eq!(budget.current_k(), Some(k));
    // More: it falls at once, the budget being a ceiling.
    run(&mut budget, budget_batch(25, 100));
    assert!(budget.current_k().unwrap() < k);
}

#[test]
fn budget_respects_min_k_and_max_k() {
    let config: BudgetConfig = yaml("{ max_series: 100000, max_k: 7 }");
    let mut budget = Budget::new(&config).unwrap();
    let out = run(&mut budget, budget_batch(0, 50));
    assert_eq!(budget.current_k(), Some(7));
    assert_eq!(out.resources.len(), 8);
    let config: BudgetConfig = yaml("{ max_series: 1, min_k: 3 }");
    let mut budget = Budget::new(&config).unwrap();
    run(&mut budget, budget_batch(0, 50));
    assert_eq!(budget.current_k(), Some(3));
}

// ---------------------------------------------------------------- filter

#[test]
fn filter_include_and_exclude_by_attributes() {
    let procs: Vec<Proc> = (0..6)
        .map(|i| Proc {
            name: i,
            ..quiet(i as i64 + 1)
        })
        .collect();
    let include: FilterConfig = yaml(
        "{ include: { match_type: regexp, attributes: [{ key: process.executable.name, value: '^(nginx|java)$' }] } }",
    );
    let out = run(&mut Filter::new(&include).unwrap(), batch(&procs));
    assert_eq!(kept(&out), kept(&batch(&[quiet(1), quiet(3)])));

    let exclude: FilterConfig = yaml(
        "{ exclude: { attributes: [{ key: process.pid, value: 2 }, { key: host.name, value: host-1 }] } }",
    );
    let out = run(&mut Filter::new(&exclude).unwrap(), batch(&procs));
    assert_eq!(out.resources.len(), 5);
    assert!(!kept(&out).contains(&identity(2)));
}

#[test]
fn filter_drops_idle_processes_only_when_every_threshold_agrees() {
    let config: FilterConfig = yaml("{ min_cpu_utilization: 0.1, min_memory: 1KiB }");
    let mut filter = Filter::new(&config).unwrap();
    let p = |pid, util: u16, memory| Proc {
        util: (util, 0),
        memory,
        ..quiet(pid)
    };
    let out = run(
        &mut filter,
        batch(&[p(1, 0, 0), p(2, 512, 0), p(3, 0, 4096), p(4, 512, 4096)]),
    );
    assert_eq!(kept(&out), kept(&batch(&[quiet(2), quiet(3), quiet(4)])));

    // Without the utilization metric, CPU cannot be judged: nothing dropped.
    let mut b = batch(&[p(1, 0, 0)]);
    b.resources[0]
        .metrics
        .retain(|m| &*m.desc.name != semconv::PROCESS_CPU_UTILIZATION);
    assert_eq!(run(&mut filter, b).resources.len(), 1);
}

#[test]
fn filter_min_age_from_uptime_or_creation_time() {
    let config: FilterConfig = yaml("{ min_age: 1m }");
    let mut filter = Filter::new(&config).unwrap();
    let young = Proc {
        age: 30,
        ..quiet(1)
    };
    let old = Proc {
        age: 90,
        ..quiet(2)
    };
    assert_eq!(
        kept(&run(&mut filter, batch(&[young.clone(), old.clone()]))),
        vec![identity(2)]
    );

    // Without process.uptime: the creation time attribute against batch time.
    let mut b = batch(&[young, old]);
    for (r, created) in b
        .resources
        .iter_mut()
        .zip(["2023-11-14T22:12:50Z", "2023-11-14T22:11:00.5Z"])
    {
        r.metrics
            .retain(|m| &*m.desc.name != semconv::PROCESS_UPTIME);
        r.attributes = r.attributes.with(
            semconv::PROCESS_CREATION_TIME.into(),
            Value::Str(created.into()),
        );
    }
    // T0 is 2023-11-14T22:13:20Z: 30 s and 139.5 s old.
    assert_eq!(kept(&run(&mut filter, b)), vec![identity(2)]);
}

#[test]
fn filter_removes_metrics_by_name_and_drops_emptied_resources() {
    let config: FilterConfig = yaml(
        "{ metrics: { include: { match_type: regexp, names: ['^process\\.(cpu|memory)\\.'] }, exclude: { names: [process.cpu.utilization] } } }",
    );
    let out = run(&mut Filter::new(&config).unwrap(), batch(&[quiet(1)]));
    let names: Vec<&str> = out.resources[0]
        .metrics
        .iter()
        .map(|m| &*m.desc.name)
        .collect();
    assert_eq!(
        names,
        [semconv::PROCESS_CPU_TIME, semconv::PROCESS_MEMORY_USAGE]
    );

    let config: FilterConfig = yaml("{ metrics: { include: { names: [no.such.metric] } } }");
    let mut critical = quiet(2);
    critical.priority = Some(0);
    let out = run(
        &mut Filter::new(&config).unwrap(),
        batch(&[quiet(1), critical]),
    );
    // The critical one keeps everything.
    assert_eq!(kept(&out), vec![identity(2)]);
    assert_eq!(out.resources[0].metrics.len(), 6);
}

// ---------------------------------------------------------------- priority

#[test]
fn priority_rules_first_then_lists_then_default() {
    let config: PriorityConfig = yaml(
        r#"
        critical: ["^postgres$"]
        high: ["^(java|postgres)$"]
        medium: ["^nginx$"]
        rules:
          - { priority: medium, executable_name: "^postgres$", owner: "^www-data$" }
          - { priority: high, command_line: "--worker 7$" }
        default: low
        "#,
    );
    let mut tagger = PriorityTagger::new(&config).unwrap();
    let p = |pid, name, owner| Proc {
        name,
        owner,
        ..quiet(pid)
    };
    let out = run(
        &mut tagger,
        batch(&[
            p(1, 1, 0),
            p(2, 1, 1),
            p(3, 2, 0),
            p(4, 0, 0),
            p(5, 4, 0),
            p(7, 4, 0),
        ]),
    );
    assert_eq!(priority_of(&out, 1).as_deref(), Some("critical"));
    assert_eq!(priority_of(&out, 2).as_deref(), Some("medium"));
    assert_eq!(priority_of(&out, 3).as_deref(), Some("high"));
    assert_eq!(priority_of(&out, 4).as_deref(), Some("medium"));
    assert_eq!(priority_of(&out, 5).as_deref(), Some("low"));
    assert_eq!(priority_of(&out, 7).as_deref(), Some("high"));
}

#[test]
fn priority_thresholds_are_evaluated_every_interval() {
    let config: PriorityConfig =
        yaml("{ rules: [{ priority: high, executable_name: bash, min_cpu_utilization: 0.5 }] }");
    let mut tagger = PriorityTagger::new(&config).unwrap();
    let p = |util| Proc {
        util: (util, 0),
        ..quiet(1)
    };
    assert_eq!(
        priority_of(&run(&mut tagger, batch(&[p(100)])), 1).as_deref(),
        Some("low")
    );
    assert_eq!(
        priority_of(&run(&mut tagger, batch(&[p(1000)])), 1).as_deref(),
        Some("high")
    );
    assert_eq!(
        priority_of(&run(&mut tagger, batch(&[p(100)])), 1).as_deref(),
        Some("low")
    );
}

#[test]
fn priority_cache_notices_an_exec() {
    let config: PriorityConfig = yaml("{ critical: ['^postgres$'] }");
    let mut tagger = PriorityTagger::new(&config).unwrap();
    let p = |name| Proc { name, ..quiet(1) };
    assert_eq!(
        priority_of(&run(&mut tagger, batch(&[p(4)])), 1).as_deref(),
        Some("low")
    );
    // Same pid and start time (same identity), new executable.
    assert_eq!(
        priority_of(&run(&mut tagger, batch(&[p(1)])), 1).as_deref(),
        Some("critical")
    );
}

#[test]
fn priority_replaces_an_existing_tag_in_place() {
    let config: PriorityConfig = yaml("{ default: medium }");
    let mut tagger = PriorityTagger::new(&config).unwrap();
    let tagged = Proc {
        priority: Some(0),
        ..quiet(1)
    };
    let out = run(&mut tagger, batch(&[tagged]));
    assert_eq!(priority_of(&out, 1).as_deref(), Some("medium"));
    let keys: Vec<&str> = out.resources[0]
        .attributes
        .iter()
        .map(|kv| &*kv.key)
        .collect();
    assert_eq!(
        keys.iter()
            .filter(|k| **k == semconv::PHOENIX_PRIORITY)
            .count(),
        1
    );
}

// ---------------------------------------------------------------- attributes

#[test]
fn attribute_actions_apply_in_order() {
    let config: AttributesConfig = yaml(
        r#"
        actions:
          - { action: rename, key: process.owner, to: user }
          - { action: hash, key: process.command_line }
          - { action: truncate, key: process.executable.name, max_length: 3 }
          - { action: insert, key: team, value: payments }
          - { action: insert, key: user, value: nobody }
          - { action: delete, key: process.pid }
          - { action: keep_only, keys: [user, process.command_line, process.executable.name, team] }
        "#,
    );
    let mut p = quiet(1);
    p.name = 2;
    p.priority = Some(1);
    let out = run(&mut AttributeActions::new(&config).unwrap(), batch(&[p]));
    let attrs = &out.resources[0].attributes;
    let keys: Vec<&str> = attrs.iter().map(|kv| &*kv.key).collect();
    assert_eq!(
        keys,
        [
            "process.executable.name",
            "user",
            "process.command_line",
            "phoenix.priority",
            "team"
        ]
    );
    assert_eq!(attrs.get_str("user"), Some("root"));
    assert_eq!(attrs.get_str("team"), Some("payments"));
    assert_eq!(attrs.get_str("process.executable.name"), Some("jav"));
    let hashed = attrs.get_str("process.command_line").unwrap();
    assert_eq!(hashed.len(), 16);
    assert!(hashed.bytes().all(|b| b.is_ascii_hexdigit()));
    // Stable: the same value hashes the same in another processor instance.
    let again = run(
        &mut AttributeActions::new(&config).unwrap(),
        batch(&[Proc {
            name: 2,
            ..quiet(1)
        }]),
    );
    assert_eq!(
        again.resources[0]
            .attributes
            .get_str("process.command_line"),
        Some(hashed)
    );
}

#[test]
fn truncate_respects_character_boundaries() {
    let config: AttributesConfig =
        yaml("{ actions: [{ action: truncate, key: process.owner, max_length: 2 }] }");
    let mut b = batch(&[quiet(1)]);
    b.resources[0].attributes = b.resources[0]
        .attributes
        .with(semconv::PROCESS_OWNER.into(), Value::Str("äöü".into()));
    let out = run(&mut AttributeActions::new(&config).unwrap(), b);
    assert_eq!(
        out.resources[0].attributes.get_str(semconv::PROCESS_OWNER),
        Some("äö")
    );
}

// ---------------------------------------------------------------- aggregate

#[test]
fn aggregate_groups_by_attributes_with_per_metric_functions() {
    let config: AggregateConfig = yaml(
        "{ group_by: [process.executable.name], functions: { process.memory.usage: max, process.thread.count: mean } }",
    );
    let p = |pid, name, memory, threads, age| Proc {
        name,
        memory,
        threads,
        age,
        ..quiet(pid)
    };
    let mut critical = p(9, 1, 5, 5, 5);
    critical.priority = Some(0);
    let input = batch(&[
        p(1, 0, 10, 2, 100),
        p(2, 0, 30, 4, 300),
        p(3, 2, 7, 1, 50),
        critical,
    ]);
    let out = run(&mut Aggregate::new(&config).unwrap(), input.clone());
    assert_eq!(out.resources.len(), 3);
    assert_eq!(
        out.resources[0], input.resources[3],
        "critical passes through first"
    );
    let nginx = by_name(&out, "nginx").unwrap();
    assert_eq!(nginx.identity, None);
    assert_eq!(nginx.attributes.len(), 1);
    assert_eq!(
        nginx.metric(semconv::PROCESS_MEMORY_USAGE).unwrap().total(),
        30.0
    );
    assert_eq!(
        nginx.metric(semconv::PROCESS_THREAD_COUNT).unwrap().total(),
        3.0
    );
    assert_eq!(
        nginx.metric(semconv::PROCESS_UPTIME).unwrap().total(),
        300.0
    );
    assert_eq!(
        nginx.metric(semconv::PHOENIX_PROCESS_COUNT).unwrap().points[0].value,
        Number::Int(2)
    );
    // Counters keep the earliest start of their members.
    let start = nginx.metric(semconv::PROCESS_CPU_TIME).unwrap().points[0].start_time_unix_nano;
    assert_eq!(start, T0 - 300 * SEC);
    assert!(by_name(&out, "java").is_some());
}

/// "Critical and high individually, the rest aggregated by name".
#[test]
fn aggregate_protect_keeps_high_processes_individual_and_groups_the_rest() {
    let config: AggregateConfig = yaml("{ group_by: [process.executable.name], protect: [high] }");
    let tagged = |pid: i64, name: usize, priority: usize| Proc {
        name,
        priority: Some(priority),
        memory: 10 * pid as u32,
        ..quiet(pid)
    };
    // PRIORITIES: 0 critical, 1 high, 2 medium, 3 low; NAMES: 0 nginx, 2 java.
    let input = batch(&[
        tagged(1, 0, 1),
        tagged(2, 0, 3),
        tagged(3, 0, 1),
        tagged(4, 0, 3),
        tagged(5, 2, 3),
        tagged(6, 2, 0),
        Proc {
            name: 2,
            ..quiet(7)
        },
    ]);
    let out = run(&mut Aggregate::new(&config).unwrap(), input.clone());

    // The high and critical processes pass through untouched, in order.
    assert_eq!(
        &out.resources[..3],
        &[
            input.resources[0].clone(),
            input.resources[2].clone(),
            input.resources[5].clone()
        ]
    );
    // The low nginx pair is one group; the low and the untagged java another.
    assert_eq!(out.resources.len(), 5);
    assert_eq!(process_count(&out), 7);
    let groups: Vec<_> = out.resources[3..].iter().collect();
    for group in &groups {
        assert_eq!(group.identity, None);
        assert_eq!(
            group
                .metric(semconv::PHOENIX_PROCESS_COUNT)
                .unwrap()
                .total(),
            2.0
        );
    }
    let nginx = groups
        .iter()
        .find(|g| g.attributes.get_str(semconv::PROCESS_EXECUTABLE_NAME) == Some("nginx"))
        .unwrap();
    assert_eq!(
        nginx.metric(semconv::PROCESS_MEMORY_USAGE).unwrap().total(),
        20.0 + 40.0
    );
    assert_eq!(totals(&out), totals(&input));

    // Without `protect` the high nginx processes join their group.
    let plain = run(
        &mut Aggregate::new(&yaml("{ group_by: [process.executable.name] }")).unwrap(),
        input,
    );
    assert_eq!(plain.resources.len(), 3);
    assert_eq!(plain.resources[0].identity, Some(identity(6)));
}

#[test]
fn rollups_of_rollups_keep_process_counts() {
    let procs: Vec<Proc> = (1..=10)
        .map(|pid| Proc {
            name: pid as usize % 3,
            ..quiet(pid)
        })
        .collect();
    let mut aggregate = Aggregate::new(&AggregateConfig::default()).unwrap();
    let mut topk = TopK::new(&yaml::<TopKConfig>("{ k: 1, by: process.thread.count }")).unwrap();
    let mut b = batch(&procs);
    aggregate.process(&mut b);
    topk.process(&mut b);
    assert_eq!(b.resources.len(), 2);
    assert_eq!(process_count(&b), 10);
}

// ---------------------------------------------------------------- aggregate: track_children

/// A process with usage that differs by pid, so sums show who was folded.
fn busy(pid: i64, name: usize) -> Proc {
    let v = pid as u32;
    Proc {
        name,
        cpu: (v * 1024 + 3, v * 512 + 1),
        util: (v as u16 * 3, v as u16),
        memory: v * 1000,
        io: (v * 7, v * 11),
        threads: (v % 50) as u8 + 1,
        age: v * 10,
        ..quiet(pid)
    }
}

fn with_pid(batch: &Batch, pid: i64) -> Option<&Resource> {
    batch
        .resources
        .iter()
        .find(|r| r.attributes.get(semconv::PROCESS_PID) == Some(&Value::Int(pid)))
}

/// `phoenix.process.count` of the resource of `pid`; None when it is an
/// individual process (no count).
fn count_of(batch: &Batch, pid: i64) -> Option<i64> {
    let m = with_pid(batch, pid)?.metric(semconv::PHOENIX_PROCESS_COUNT)?;
    Some(m.total() as i64)
}

fn children(yaml_text: &str) -> Aggregate {
    Aggregate::new(&yaml::<AggregateConfig>(yaml_text)).unwrap()
}

const NGINX: usize = 0;
const POSTGRES: usize = 1;
const JAVA: usize = 2;
const PYTHON: usize = 3;
const BASH: usize = 4;
const SSHD: usize = 5;

#[test]
fn track_children_folds_nginx_workers_into_their_master() {
    let mut aggregate = children("{ track_children: [{ executable_name: '^(nginx|postgres)$' }] }");
    let input = with_parents(
        batch(&[
            busy(11, NGINX),
            busy(10, NGINX),
            busy(20, SSHD),
            busy(12, NGINX),
            busy(13, NGINX),
        ]),
        &[(10, 1), (11, 10), (12, 10), (13, 10), (20, 1)],
    );
    let out = run(&mut aggregate, input.clone());

    assert_eq!(out.resources.len(), 2, "{out:#?}");
    // The master stays where it was (after its first worker, which went).
    let master = &out.resources[0];
    assert_eq!(master.attributes, input.resources[1].attributes);
    assert_eq!(master.identity, None, "a folded root is a rollup");
    assert_eq!(count_of(&out, 10), Some(4));
    assert_eq!(
        master
            .metric(semconv::PROCESS_MEMORY_USAGE)
            .unwrap()
            .total(),
        f64::from(10_000 + 11_000 + 12_000 + 13_000)
    );
    assert_eq!(
        master.metric(semconv::PROCESS_UPTIME).unwrap().total(),
        130.0,
        "uptime is the oldest member's"
    );
    // Counters keep the earliest start of their members.
    let start = master.metric(semconv::PROCESS_CPU_TIME).unwrap().points[0].start_time_unix_nano;
    assert_eq!(start, T0 - 130 * SEC);
    assert_eq!(
        out.resources[1], input.resources[2],
        "sshd has no matching ancestor"
    );
    assert_eq!(totals(&out), totals(&input));
    assert_eq!(process_count(&out), 5);

    // Workers gone: the master is still its group's root (count 1), so its
    // series and key do not flap with short-lived children.
    let alone = run(
        &mut aggregate,
        with_parents(batch(&[busy(10, NGINX)]), &[(10, 1)]),
    );
    assert_eq!(alone.resources.len(), 1);
    assert_eq!(alone.resources[0].identity, None);
    assert_eq!(count_of(&alone, 10), Some(1));
    assert_eq!(totals(&alone), totals(&batch(&[busy(10, NGINX)])));
}

/// bash /opt/run.sh (100) ─┬─ python3 (101) ── java (102)
///                         ├─ bash -c (106) ── python3 (107)
///                         └─ postgres (103) ─┬─ postgres (104) ── sshd (105)
///                                            └─ java (108)
#[test]
fn track_children_folds_grandchildren_into_the_nearest_matching_ancestor() {
    let mut aggregate = children(
        r#"
        track_children:
          - { executable_name: "^(nginx|postgres)$" }
          - { command_line: "^/usr/bin/bash --worker 100$" }
        "#,
    );
    let procs = [
        busy(100, BASH),
        busy(101, PYTHON),
        busy(102, JAVA),
        busy(103, POSTGRES),
        busy(104, POSTGRES),
        busy(105, SSHD),
        busy(106, BASH),
        busy(107, PYTHON),
        busy(108, JAVA),
        busy(200, JAVA),
    ];
    let input = with_parents(
        batch(&procs),
        &[
            (100, 1),
            (101, 100),
            (102, 101),
            (103, 100),
            (104, 103),
            (105, 104),
            (106, 100),
            (107, 106),
            (108, 103),
            (200, 1),
        ],
    );
    let out = run(&mut aggregate, input.clone());
    assert_eq!(out.resources.len(), 3, "{out:#?}");
    // The script and what it runs, but postgres starts its own group: a
    // matching process under a differently named root is a root.
    assert_eq!(count_of(&out, 100), Some(5));
    assert_eq!(count_of(&out, 103), Some(4));
    assert_eq!(with_pid(&out, 200), Some(&input.resources[9]));
    let memory = |pid| {
        with_pid(&out, pid)
            .unwrap()
            .metric(semconv::PROCESS_MEMORY_USAGE)
            .unwrap()
            .total()
    };
    assert_eq!(memory(100), f64::from(100 + 101 + 102 + 106 + 107) * 1000.0);
    assert_eq!(memory(103), f64::from(103 + 104 + 105 + 108) * 1000.0);
    assert_eq!(totals(&out), totals(&input));
    assert_eq!(process_count(&out), process_count(&input));
}

#[test]
fn track_children_leaves_processes_without_a_matching_ancestor_alone() {
    let mut aggregate = children("{ track_children: [{ executable_name: '^nginx$' }] }");
    // A tree of non-matching processes, one whose parent is not in the
    // batch, one without parent_pid, and one with a string parent_pid.
    let mut input = with_parents(
        batch(&[
            busy(1, BASH),
            busy(2, JAVA),
            busy(3, PYTHON),
            busy(4, SSHD),
            busy(5, JAVA),
        ]),
        &[(2, 1), (3, 2), (4, 999)],
    );
    input.resources[4].attributes = input.resources[4]
        .attributes
        .with(semconv::PROCESS_PARENT_PID.into(), Value::Str("1".into()));
    let out = run(&mut aggregate, input.clone());
    assert_eq!(out, input);
}

/// Parent links from hostile /proc data: self-parents, loops of
/// non-matching processes, loops of matching ones, a loop through a root,
/// duplicate pids, and a chain far deeper than any real tree.
#[test]
fn track_children_survives_parent_loops_and_self_parents() {
    let mut aggregate = children("{ track_children: [{ executable_name: '^nginx$' }] }");
    let mut procs = vec![
        busy(1, BASH), // its own parent
        busy(2, JAVA), // 2 → 3 → 4 → 2
        busy(3, JAVA),
        busy(4, JAVA),
        busy(5, NGINX), // its own parent
        busy(6, NGINX), // 6 ↔ 7, both nginx
        busy(7, NGINX),
        busy(8, SSHD),  // under 6
        busy(9, NGINX), // 9 → 10 → 9
        busy(10, BASH),
        busy(11, NGINX), // parent 12 → 6: joins 6's loop group
        busy(12, PYTHON),
    ];
    let mut links = vec![
        (1, 1),
        (2, 3),
        (3, 4),
        (4, 2),
        (5, 5),
        (6, 7),
        (7, 6),
        (8, 6),
        (9, 10),
        (10, 9),
        (11, 12),
        (12, 6),
    ];
    // A chain of 20 000 under nginx 5.
    for pid in 1000..21_000 {
        procs.push(quiet(pid));
        links.push((pid, if pid == 1000 { 5 } else { pid - 1 }));
    }
    // Two resources claiming pid 30 (a pid reused between two reads): the
    // parent of 31 is ambiguous, so it has none.
    procs.extend([busy(30, NGINX), busy(30, JAVA), busy(31, SSHD)]);
    links.extend([(30, 1), (31, 30)]);
    let input = with_parents(batch(&procs), &links);
    let out = run(&mut aggregate, input.clone());

    assert_eq!(totals(&out), totals(&input));
    assert_eq!(process_count(&out), process_count(&input));
    for pid in 1..=4 {
        assert_eq!(with_pid(&out, pid), with_pid(&input, pid), "pid {pid}");
    }
    assert_eq!(count_of(&out, 5), Some(1 + 20_000));
    // Same-named matching processes in a loop each root their own group.
    assert_eq!(count_of(&out, 6), Some(1 + 3), "itself, 8, 11 and 12");
    assert_eq!(count_of(&out, 7), Some(1));
    // A root is not its own ancestor, even through a loop.
    assert_eq!(count_of(&out, 9), Some(2));
    assert_eq!(count_of(&out, 30), Some(1));
    assert_eq!(with_pid(&out, 31), with_pid(&input, 31));
    // The same answer whichever way the batch is ordered.
    let mut reversed = input.clone();
    reversed.resources.reverse();
    let mut back = run(&mut aggregate, reversed);
    back.resources.reverse();
    assert!(back == out, "the order of the batch changed the outcome");
}

#[test]
fn track_children_never_folds_a_protected_child() {
    let mut aggregate =
        children("{ track_children: [{ executable_name: '^nginx$' }], protect: [high] }");
    let tagged = |pid, name, priority| Proc {
        priority: Some(priority),
        ..busy(pid, name)
    };
    // PRIORITIES: 0 critical, 1 high, 2 medium, 3 low.
    let input = with_parents(
        batch(&[
            busy(10, NGINX),
            tagged(11, NGINX, 0),
            tagged(12, NGINX, 1),
            tagged(13, NGINX, 3),
            tagged(14, JAVA, 0),
            busy(15, PYTHON),
        ]),
        &[(10, 1), (11, 10), (12, 10), (13, 10), (14, 10), (15, 14)],
    );
    let out = run(&mut aggregate, input.clone());
    for (pid, i) in [(11, 1), (12, 2), (14, 4)] {
        assert_eq!(with_pid(&out, pid), Some(&input.resources[i]), "pid {pid}");
    }
    // The low worker and the child of the critical java fold into the master.
    assert_eq!(count_of(&out, 10), Some(3));
    assert_eq!(out.resources.len(), 4);
    assert_eq!(totals(&out), totals(&input));
    assert_eq!(process_count(&out), process_count(&input));
}

#[test]
fn track_children_folds_nothing_into_a_protected_root() {
    let mut aggregate = children("{ track_children: [{ executable_name: '^nginx$' }] }");
    let mut master = busy(10, NGINX);
    master.priority = Some(0);
    let input = with_parents(
        batch(&[master, busy(11, NGINX), busy(12, NGINX), busy(13, JAVA)]),
        &[(10, 1), (11, 10), (12, 10), (13, 12)],
    );
    assert_eq!(run(&mut aggregate, input.clone()), input);
}

/// A descendant that already stands for several processes (an earlier
/// track_children stage) brings its count.
#[test]
fn track_children_adds_the_count_of_a_folded_rollup() {
    let mut workers = children("{ track_children: [{ executable_name: '^nginx$' }] }");
    let mut script =
        children("{ track_children: [{ command_line: '^/usr/bin/bash --worker 1$' }] }");
    let input = with_parents(
        batch(&[
            busy(1, BASH),
            busy(2, NGINX),
            busy(3, NGINX),
            busy(4, NGINX),
        ]),
        &[(1, 0), (2, 1), (3, 2), (4, 2)],
    );
    let mut b = input.clone();
    workers.process(&mut b);
    assert_eq!(count_of(&b, 2), Some(3));
    assert_eq!(count_of(&b, 1), None, "bash is not nginx");
    script.process(&mut b);
    assert_eq!(b.resources.len(), 1);
    assert_eq!(count_of(&b, 1), Some(4));
    assert_eq!(totals(&b), totals(&input));
}

/// The cached regex verdict follows an `exec` (same identity, new name).
#[test]
fn track_children_notices_an_exec() {
    let mut aggregate = children("{ track_children: [{ executable_name: '^nginx$' }] }");
    let links = [(10, 1), (11, 10)];
    let before = run(
        &mut aggregate,
        with_parents(batch(&[busy(10, BASH), busy(11, JAVA)]), &links),
    );
    assert_eq!(before.resources.len(), 2);
    let after = run(
        &mut aggregate,
        with_parents(batch(&[busy(10, NGINX), busy(11, JAVA)]), &links),
    );
    assert_eq!(after.resources.len(), 1);
    assert_eq!(count_of(&after, 10), Some(2));
}

// ---------------------------------------------------------------- sample

#[test]
fn sample_is_stable_per_process_and_close_to_the_fraction() {
    let config: SampleConfig = yaml("{ fraction: 0.3 }");
    let procs: Vec<Proc> = (1..=5000).map(quiet).collect();
    let first = kept(&run(&mut Sample::new(&config).unwrap(), batch(&procs)));
    let share = first.len() as f64 / 5000.0;
    assert!((0.27..0.33).contains(&share), "kept {share}");
    // Another interval, another instance: the same processes.
    let shape = Shape::default();
    let later = shape.batch(&procs, T0 + 60 * SEC);
    assert_eq!(kept(&run(&mut Sample::new(&config).unwrap(), later)), first);
}

#[test]
fn sample_leaves_other_priorities_alone() {
    let config: SampleConfig = yaml("{ fraction: 0, unprioritized: false }");
    let procs: Vec<Proc> = (0..4)
        .map(|i| Proc {
            priority: Some(i),
            ..quiet(i as i64 + 1)
        })
        .chain([quiet(10)])
        .collect();
    let out = run(&mut Sample::new(&config).unwrap(), batch(&procs));
    assert_eq!(
        kept(&out),
        kept(&batch(&[quiet(1), quiet(2), quiet(3), quiet(10)]))
    );
}

// ---------------------------------------------------------------- kubernetes attributes

/// `batch` with pod attributes (as `k8sattributes` adds them) on some processes.
fn with_pods(procs: &[Proc], pods: &[Option<(&str, &str, &str)>]) -> Batch {
    let mut b = batch(procs);
    for (r, pod) in b.resources.iter_mut().zip(pods) {
        if let Some((namespace, pod, deployment)) = pod {
            r.attributes = r.attributes.with_all(&[
                kv(semconv::K8S_NAMESPACE_NAME, namespace),
                kv(semconv::K8S_POD_NAME, pod),
                kv(semconv::K8S_DEPLOYMENT_NAME, deployment),
            ]);
        }
    }
    b
}

fn kv(key: &str, value: &str) -> phoenix_processors::KeyValue {
    phoenix_processors::KeyValue::new(key.into(), Value::Str(value.into()))
}

#[test]
fn priority_rules_match_namespace_and_workload_attributes() {
    let config: PriorityConfig = yaml(
        r#"
        rules:
          - { priority: critical, attributes: { k8s.namespace.name: "^kube-system$" } }
          - { priority: critical, attributes: { k8s.namespace.name: "^shop$", k8s.deployment.name: "^checkout$" } }
          - { priority: high, executable_name: "^bash$", attributes: { k8s.namespace.name: "^shop$" } }
        "#,
    );
    let mut tagger = PriorityTagger::new(&config).unwrap();
    let procs = [quiet(1), quiet(2), quiet(3), quiet(4), quiet(5)];
    let pods = [
        Some(("kube-system", "coredns-x", "coredns")),
        Some(("shop", "checkout-x", "checkout")),
        Some(("shop", "cart-x", "cart")),
        Some(("batch", "etl-x", "etl")),
        None,
    ];
    let out = run(&mut tagger, with_pods(&procs, &pods));
    let got: Vec<_> = (1..=5).map(|pid| priority_of(&out, pid)).collect();
    let want = ["critical", "critical", "high", "low", "low"];
    assert_eq!(got, want.map(|p| Some(p.to_string())));

    // The pod lookup can come late (a miss, then a refresh): the cached
    // decision for the same process follows the new attributes.
    let first = run(&mut tagger, with_pods(&procs, &[None; 5]));
    assert_eq!(priority_of(&first, 1).as_deref(), Some("low"));
    let later = run(&mut tagger, with_pods(&procs, &pods));
    assert_eq!(priority_of(&later, 1).as_deref(), Some("critical"));

    let bad: PriorityConfig =
        yaml("{ rules: [{ priority: high, attributes: { '': x, k: '(' } }] }");
    let fields: Vec<String> = bad.validate().into_iter().map(|p| p.field).collect();
    assert_eq!(fields, ["rules[0].attributes", "rules[0].attributes.k"]);
}

/// The pod template: critical processes individually, the rest one
/// resource per pod, host processes (no pod) one more group.
#[test]
fn aggregate_by_pod_keeps_critical_processes_apart() {
    let config: AggregateConfig = yaml("{ group_by: [k8s.namespace.name, k8s.pod.name] }");
    let mut critical = quiet(4);
    critical.priority = Some(0);
    let procs = [quiet(1), quiet(2), quiet(3), critical, quiet(5)];
    let pods = [
        Some(("shop", "web-1", "web")),
        Some(("shop", "web-1", "web")),
        Some(("shop", "web-2", "web")),
        Some(("shop", "web-2", "web")),
        None,
    ];
    let out = run(
        &mut Aggregate::new(&config).unwrap(),
        with_pods(&procs, &pods),
    );
    assert_eq!(out.resources.len(), 4, "{out:#?}");
    assert_eq!(out.resources[0].identity, Some(identity(4)));
    let count = |pod: Option<&str>| {
        out.resources
            .iter()
            .find(|r| r.identity.is_none() && r.attributes.get_str(semconv::K8S_POD_NAME) == pod)
            .and_then(|r| r.metric(semconv::PHOENIX_PROCESS_COUNT))
            .map(|m| m.points[0].value)
    };
    assert_eq!(count(Some("web-1")), Some(Number::Int(2)));
    assert_eq!(count(Some("web-2")), Some(Number::Int(1)));
    assert_eq!(count(None), Some(Number::Int(1)));
    let web1 = out
        .resources
        .iter()
        .find(|r| r.attributes.get_str(semconv::K8S_POD_NAME) == Some("web-1"))
        .unwrap();
    assert_eq!(
        web1.attributes.get_str(semconv::K8S_NAMESPACE_NAME),
        Some("shop")
    );
}
