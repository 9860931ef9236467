//! Processor configs as users write them: YAML through serde_norway, the
//! examples the README shows, and every kind of mistake `validate` must name.

mod common;

use std::collections::BTreeMap;
use std::time::Duration;

use phoenix_processors::processors::{
    AggregateFunction, AttributeAction, InsertValue, MatchType, Priority,
};
use phoenix_processors::{PROCESSOR_TYPES, Problem, ProcessorConfig};

/// Parse a `processors:` section and return each component's config or
/// parse error, keyed by id.
fn section(text: &str) -> BTreeMap<String, Result<ProcessorConfig, String>> {
    let map: BTreeMap<String, serde_norway::Value> = serde_norway::from_str(text).unwrap();
    map.into_iter()
        .map(|(id, value)| {
            let kind = id.split('/').next().unwrap_or_default().to_owned();
            (id, ProcessorConfig::from_kind(&kind, value))
        })
        .collect()
}

fn one(text: &str) -> Result<ProcessorConfig, String> {
    section(text).into_values().next().unwrap()
}

/// Problems reported by parse or validate, as one string to search.
fn problems(text: &str) -> String {
    match one(text) {
        Err(e) => e,
        Ok(c) => {
            let p = c.validate();
            assert!(!p.is_empty(), "expected a problem in {text}");
            // What validate misses, build must not silently accept either.
            assert!(c.build().is_err());
            Problem::join(&p)
        }
    }
}

#[test]
fn readme_examples_parse_validate_and_build() {
    let configs = section(
        r#"
        filter/idle:
          exclude:
            match_type: regexp
            attributes: [{ key: process.executable.name, value: "^(kworker|ksoftirqd).*" }]
          metrics:
            exclude: { match_type: strict, names: [process.memory.virtual] }
          min_cpu_utilization: 0.005
          min_memory: 50MiB
          min_age: 30s
        priority:
          critical: ["^(postgres|mysqld|redis-server|nginx|kubelet|containerd|dockerd)$"]
          high: ["^java$"]
          rules:
            - { priority: critical, executable_name: "^java$", command_line: "kafka\\.Kafka" }
            - { priority: high, min_cpu_utilization: 0.5 }
            - { priority: medium, owner: "^root$", min_memory: 1GiB }
          default: low
        attributes/slim:
          actions:
            - { action: delete, key: process.pid }
            - { action: hash, key: process.command_line }
            - { action: truncate, key: process.executable.path, max_length: 64 }
            - { action: rename, key: process.owner, to: user }
            - { action: insert, key: team, value: payments }
            - { action: keep_only, keys: [process.executable.name, user, team] }
        aggregate/by_name:
          group_by: [process.executable.name]
          functions: { process.memory.usage: max }
        aggregate/workers:
          track_children:
            - { executable_name: "^(nginx|gunicorn|postgres)$" }
            - { command_line: "^/bin/bash /opt/run\\.sh" }
        topk/cpu: { k: 10, by: process.cpu.utilization }
        topk/mixed:
          k: 20
          score: { process.cpu.utilization: 2, process.memory.usage: 1 }
          hysteresis: 0.25
        sample/low: { fraction: 0.25, priorities: [low] }
        budget:
          max_series: 2000
          by: process.memory.usage
          min_hold_intervals: 6
        "#,
    );
    assert_eq!(configs.len(), 9);
    for (id, config) in configs {
        let config = config.unwrap_or_else(|e| panic!("{id}: {e}"));
        assert_eq!(config.validate(), Vec::<Problem>::new(), "{id}");
        assert!(config.build().is_ok(), "{id}");
        assert_eq!(Some(config.kind()), id.split('/').next());
    }
}

#[test]
fn topk_flow_style_parses_with_defaults() {
    let Ok(ProcessorConfig::TopK(c)) = one("topk: { k: 10, by: process.cpu.utilization }") else {
        panic!("not topk");
    };
    assert_eq!(c.k, 10);
    assert_eq!(c.by.as_deref(), Some("process.cpu.utilization"));
    assert_eq!(c.hysteresis, 0.2);
    assert!(c.others);
    assert_eq!(c.score, None);
}

#[test]
fn units_and_enums_parse() {
    let Ok(ProcessorConfig::Filter(f)) = one(
        "filter: { min_memory: 512KiB, min_age: 5m, include: { match_type: regexp, attributes: [{ key: process.pid, value: 42 }] } }",
    ) else {
        panic!("not filter");
    };
    assert_eq!(f.min_memory, Some(512 * 1024));
    assert_eq!(f.min_age, Some(Duration::from_secs(300)));
    let include = f.include.unwrap();
    assert_eq!(include.match_type, MatchType::Regexp);
    assert_eq!(include.attributes[0].value, "42");

    let Ok(ProcessorConfig::Filter(f)) = one("filter: { min_memory: 1048576 }") else {
        panic!("not filter");
    };
    assert_eq!(f.min_memory, Some(1 << 20));

    let Ok(ProcessorConfig::Aggregate(a)) =
        one("aggregate: { functions: { process.uptime: min } }")
    else {
        panic!("not aggregate");
    };
    assert_eq!(a.group_by_keys(), ["process.executable.name"]);
    assert_eq!(a.functions["process.uptime"], AggregateFunction::Min);

    let Ok(ProcessorConfig::Attributes(a)) = one(
        "attributes: { actions: [{ action: insert, key: n, value: 3 }, { action: insert, key: b, value: true }] }",
    ) else {
        panic!("not attributes");
    };
    assert_eq!(
        a.actions,
        [
            AttributeAction::Insert {
                key: "n".into(),
                value: InsertValue::Int(3)
            },
            AttributeAction::Insert {
                key: "b".into(),
                value: InsertValue::Bool(true)
            },
        ]
    );

    let Ok(ProcessorConfig::Sample(s)) = one("sample: { fraction: 1 }") else {
        panic!("not sample");
    };
    assert_eq!(s.priorities, [Priority::Low]);
}

#[test]
fn aggregate_protect_parses() {
    let Ok(ProcessorConfig::Aggregate(a)) =
        one("aggregate: { group_by: [process.executable.name], protect: [high] }")
    else {
        panic!("not aggregate");
    };
    assert_eq!(a.group_by_keys(), ["process.executable.name"]);
    assert_eq!(a.protect, [Priority::High]);
    let config = ProcessorConfig::Aggregate(a);
    assert_eq!(config.validate(), Vec::<Problem>::new());
    assert!(config.build().is_ok());
}

/// Every lossy processor takes `protect`; it defaults to empty (critical
/// alone), and listing critical or a priority twice is accepted.
#[test]
fn every_lossy_processor_takes_protect() {
    let lossy = [
        ("filter", ""),
        ("aggregate", ""),
        ("topk", "k: 3, "),
        ("sample", "fraction: 0.5, "),
        ("budget", "max_series: 100, "),
    ];
    let protect_of = |config: &ProcessorConfig| -> Vec<Priority> {
        match config {
            ProcessorConfig::Filter(c) => c.protect.clone(),
            ProcessorConfig::Aggregate(c) => c.protect.clone(),
            ProcessorConfig::TopK(c) => c.protect.clone(),
            ProcessorConfig::Sample(c) => c.protect.clone(),
            ProcessorConfig::Budget(c) => c.protect.clone(),
            other => panic!("{} is not lossy", other.kind()),
        }
    };
    for (kind, required) in lossy {
        let plain = one(&format!("{kind}: {{ {required} }}")).unwrap();
        assert_eq!(protect_of(&plain), [], "{kind}");
        let text = format!("{kind}: {{ {required}protect: [high, critical, high, medium] }}");
        let config = one(&text).unwrap_or_else(|e| panic!("{text}: {e}"));
        assert!(config.is_lossy(), "{kind}");
        assert_eq!(
            protect_of(&config),
            [
                Priority::High,
                Priority::Critical,
                Priority::High,
                Priority::Medium
            ],
            "{kind}"
        );
        assert_eq!(config.validate(), Vec::<Problem>::new(), "{text}");
        assert!(config.build().is_ok(), "{text}");
    }
}

#[test]
fn null_config_means_defaults_where_there_are_defaults() {
    for kind in ["filter", "priority", "attributes", "aggregate"] {
        let config = one(&format!("{kind}:")).unwrap_or_else(|e| panic!("{kind}: {e}"));
        assert!(config.validate().is_empty(), "{kind}");
        assert!(config.build().is_ok(), "{kind}");
        assert!(one(&format!("{kind}: {{}}")).is_ok(), "{kind}");
    }
    assert!(one("topk:").unwrap_err().contains("missing field `k`"));
    assert!(one("topk: {}").unwrap_err().contains("missing field `k`"));
    assert!(one("sample:").unwrap_err().contains("`fraction`"));
    assert!(one("budget:").unwrap_err().contains("`max_series`"));
}

#[test]
fn bad_configs_are_rejected_with_messages_naming_the_problem() {
    let cases: &[(&str, &[&str])] = &[
        ("topk: { k: 0 }", &["k must be at least 1"]),
        (
            "topk: { k: 5, by: process.cpu.seconds }",
            &[
                "by:",
                "unknown metric \"process.cpu.seconds\"",
                "process.memory.usage",
            ],
        ),
        (
            "budget: { max_series: 100, score: { process.nope: 1 } }",
            &["score:", "unknown metric \"process.nope\""],
        ),
        (
            "topk: { k: 5, by: process.memory.usage, score: { process.memory.usage: 1 } }",
            &["either `by` or `score`"],
        ),
        (
            "topk: { k: 5, score: { process.memory.usage: -1 } }",
            &["weight of process.memory.usage"],
        ),
        (
            "topk: { k: 5, hysteresis: 2 }",
            &["hysteresis must be between 0 and 1"],
        ),
        (
            "sample: { fraction: 1.5 }",
            &["fraction must be between 0 and 1 (got 1.5)"],
        ),
        (
            "sample: { fraction: 0.5, priorities: [critical] }",
            &["must not include critical"],
        ),
        (
            "sample: { fraction: 0.5, priorities: [urgent] }",
            &["unknown variant `urgent`"],
        ),
        (
            "priority: { critical: ['^ok$', '(unclosed'] }",
            &[
                "critical[1]",
                "invalid regex \"(unclosed\"",
                "unclosed group",
            ],
        ),
        (
            "priority: { rules: [{ priority: high, owner: '[z-a]' }] }",
            &["rules[0].owner", "invalid regex"],
        ),
        (
            "priority: { rules: [{ priority: high }] }",
            &["rules[0] has no condition"],
        ),
        (
            "filter: { include: { match_type: regexp, attributes: [{ key: a, value: '*' }] } }",
            &["include.attributes[0].value", "invalid regex"],
        ),
        (
            "filter: { metrics: { exclude: { match_type: regexp, names: ['(x'] } } }",
            &["metrics.exclude.names[0]", "invalid regex"],
        ),
        (
            "filter: { exclude: { attributes: [] } }",
            &["exclude.attributes is empty"],
        ),
        ("filter: { min_memory: 5 lots }", &["unknown unit \"lots\""]),
        ("filter: { min_age: 30 }", &["missing unit"]),
        ("filter: { match: strict }", &["unknown field `match`"]),
        (
            "topk: { k: 10, by: process.cpu.utilization, kk: 3 }",
            &["unknown field `kk`", "expected one of"],
        ),
        (
            "attributes: { actions: [{ action: rename, key: a }] }",
            &["missing field `to`"],
        ),
        (
            "attributes: { actions: [{ action: delete, key: a, to: b }] }",
            &["unknown field `to`"],
        ),
        (
            "attributes: { actions: [{ action: explode, key: a }] }",
            &["unknown variant `explode`"],
        ),
        (
            "attributes: { actions: [{ action: truncate, key: a, max_length: 0 }] }",
            &["actions[0].max_length must be at least 1"],
        ),
        (
            "aggregate: { group_by: [a, a] }",
            &["group_by lists \"a\" twice"],
        ),
        (
            "aggregate: { track_children: [{ executable_name: '^nginx$' }, {}] }",
            &["track_children[1] has no condition"],
        ),
        (
            "aggregate: { track_children: [{ executable_name: '(nginx' }] }",
            &["track_children[0].executable_name: invalid regex \"(nginx\""],
        ),
        (
            "aggregate: { track_children: [{ executable_name: x, command_line: '[' }] }",
            &["track_children[0].command_line: invalid regex"],
        ),
        (
            "aggregate: { track_children: [] }",
            &["track_children is empty"],
        ),
        (
            "aggregate: { group_by: [process.owner], track_children: [{ executable_name: x }] }",
            &["`group_by`", "`track_children`", "not both"],
        ),
        (
            "aggregate: { track_children: [{ name: x }] }",
            &["unknown field `name`"],
        ),
        (
            "aggregate: { protect: [urgent] }",
            &["unknown variant `urgent`"],
        ),
        (
            "topk: { k: 3, protect: high }",
            &["invalid type: string \"high\", expected a sequence"],
        ),
        (
            "aggregate: { functions: { process.memory.usage: median } }",
            &["unknown variant `median`"],
        ),
        (
            "budget: { max_series: 0 }",
            &["max_series must be at least 1"],
        ),
        (
            "budget: { max_series: 10, min_k: 5, max_k: 2 }",
            &["min_k (5) is greater than max_k (2)"],
        ),
        (
            "budget: { max_series: 10, k_hysteresis: -0.1 }",
            &["k_hysteresis must be between 0 and 1"],
        ),
    ];
    for (text, needles) in cases {
        let message = problems(text);
        for needle in *needles {
            assert!(
                message.contains(needle),
                "{text}\n  expected {needle:?} in:\n  {message}"
            );
        }
    }
}

#[test]
fn every_problem_is_reported_at_once() {
    let c = one("topk: { k: 0, by: nope, hysteresis: 3 }").unwrap();
    assert_eq!(c.validate().len(), 3, "{:?}", c.validate());
}

#[test]
fn unknown_type_lists_the_known_ones() {
    let e = one("topn: { k: 3 }").unwrap_err();
    assert!(e.contains("unknown processor type \"topn\""), "{e}");
    for kind in PROCESSOR_TYPES {
        assert!(e.contains(kind), "{e}");
    }
}
