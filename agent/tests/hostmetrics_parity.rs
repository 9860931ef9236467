//! `naming: hostmetrics` against the Collector's own declaration of what its
//! `process` and `processes` scrapers emit (`data/hostmetrics_scrapers.txt`,
//! taken from their metadata.yaml): every metric's name, unit, kind, value
//! type, point attribute and values, the defaults, and the resource
//! attributes, from a real scrape of this machine's `/proc`. The README's
//! mapping table is checked against the receiver's table too.

use std::collections::{BTreeMap, BTreeSet};

use phoenix_agent::receiver::procfs::{Naming, ProcfsConfig, ProcfsReceiver, Toggle};
use phoenix_config::receiver::procfs::METRICS;
use phoenix_processors::{Batch, MetricKind, Number};
use phoenix_telemetry::registry::Registry;

const FACTS: &str = include_str!("data/hostmetrics_scrapers.txt");
const README: &str = include_str!("../../README.md");

/// Metrics Phoenix has and the Collector does not: emitted under their own
/// names in both namings (the README says so).
const PHOENIX_ONLY: &[&str] = &[
    "process.unix.file_descriptor.limit",
    "process.memory.pss",
    "process.memory.uss",
    "process.memory.swap",
];

#[derive(Debug)]
struct Declared {
    scraper: String,
    name: String,
    unit: String,
    kind: String,
    value_type: String,
    enabled: bool,
    attribute: Option<(String, BTreeSet<String>)>,
}

fn declared() -> (Vec<Declared>, Vec<(String, bool)>) {
    let mut metrics = Vec::new();
    let mut resources = Vec::new();
    for line in FACTS.lines() {
        let f: Vec<&str> = line.split_whitespace().collect();
        match f.first() {
            Some(&"metric") => {
                assert!(f.len() == 7 || f.len() == 8, "bad line: {line}");
                let attribute = f.get(7).map(|a| {
                    let (key, values) = a.split_once('=').expect("key=values");
                    (
                        key.to_string(),
                        values.split(',').map(str::to_string).collect(),
                    )
                });
                metrics.push(Declared {
                    scraper: f[1].into(),
                    name: f[2].into(),
                    unit: f[3].into(),
                    kind: f[4].into(),
                    value_type: f[5].into(),
                    enabled: f[6] == "on",
                    attribute,
                });
            }
            Some(&"resource") => resources.push((f[1].to_string(), f[2] == "on")),
            _ => {}
        }
    }
    assert!(metrics.len() >= 15 && resources.len() >= 8, "facts parsed");
    (metrics, resources)
}

/// What a batch says about each metric name.
#[derive(Debug, Default)]
struct Seen {
    unit: String,
    kind: String,
    value_types: BTreeSet<&'static str>,
    attributes: BTreeMap<String, BTreeSet<String>>,
}

fn seen(batch: &Batch) -> BTreeMap<String, Seen> {
    let mut out: BTreeMap<String, Seen> = BTreeMap::new();
    for r in &batch.resources {
        for m in &r.metrics {
            let s = out.entry(m.desc.name.to_string()).or_default();
            s.unit = m.desc.unit.to_string();
            s.kind = match m.desc.kind {
                MetricKind::Gauge => "gauge".into(),
                MetricKind::Sum {
                    monotonic: true, ..
                } => "sum+".into(),
                MetricKind::Sum {
                    monotonic: false, ..
                } => "sum-".into(),
            };
            for p in &m.points {
                s.value_types.insert(match p.value {
                    Number::Int(_) => "int",
                    Number::Double(_) => "double",
                });
                for kv in p.attributes.iter() {
                    s.attributes
                        .entry(kv.key.to_string())
                        .or_default()
                        .insert(kv.value.to_string());
                }
            }
        }
    }
    out
}

fn hostmetrics(every_metric: bool) -> ProcfsConfig {
    let mut config = ProcfsConfig {
        naming: Naming::Hostmetrics,
        ..ProcfsConfig::default()
    };
    if every_metric {
        for m in METRICS {
            config
                .metrics
                .insert(m.name.into(), Toggle { enabled: true });
        }
    }
    config
}

/// Two scrapes (utilization needs a previous one); the second.
fn scrape(config: &ProcfsConfig) -> Batch {
    let mut receiver = ProcfsReceiver::new(config, &Registry::new()).expect("receiver on /proc");
    receiver.scrape();
    std::thread::sleep(std::time::Duration::from_millis(50));
    receiver.scrape()
}

#[test]
fn every_metric_matches_the_collectors_metadata() {
    let (declared, _) = declared();
    let batch = scrape(&hostmetrics(true));
    let seen = seen(&batch);

    for d in declared.iter().filter(|d| d.scraper != "windows") {
        let s = seen
            .get(&d.name)
            .unwrap_or_else(|| panic!("{} not emitted; emitted: {:?}", d.name, seen.keys()));
        assert_eq!(s.unit, d.unit, "unit of {}", d.name);
        assert_eq!(s.kind, d.kind, "kind of {}", d.name);
        assert_eq!(
            s.value_types,
            BTreeSet::from([d.value_type.as_str()]),
            "value type of {}",
            d.name
        );
        match &d.attribute {
            None => assert!(s.attributes.is_empty(), "{} has no point attribute", d.name),
            Some((key, values)) => {
                let keys: Vec<&String> = s.attributes.keys().collect();
                assert_eq!(keys, [key], "point attribute of {}", d.name);
                let emitted = &s.attributes[key];
                assert!(
                    emitted.is_subset(values),
                    "{} {key}: {emitted:?} not all in {values:?}",
                    d.name
                );
            }
        }
    }
    // The states the Collector emits on Linux, all of them: wait included.
    assert_eq!(
        seen["process.cpu.time"].attributes["state"],
        BTreeSet::from(["system".into(), "user".into(), "wait".into()])
    );
    for name in seen.keys() {
        assert!(
            declared.iter().any(|d| &d.name == name) || PHOENIX_ONLY.contains(&name.as_str()),
            "{name} is neither the Collector's nor listed as Phoenix's own"
        );
    }
}

#[test]
fn defaults_and_resource_attributes_match_the_collectors() {
    let (declared, resources) = declared();
    let batch = scrape(&hostmetrics(false));
    let emitted: BTreeSet<String> = seen(&batch).into_keys().collect();
    let on: BTreeSet<String> = declared
        .iter()
        .filter(|d| d.scraper == "process" && d.enabled)
        .map(|d| d.name.clone())
        .collect();
    assert_eq!(emitted, on, "metrics on by default");

    // This test process has every identifying attribute.
    let me = i64::from(std::process::id());
    let mine = batch
        .resources
        .iter()
        .find(|r| r.attributes.get("process.pid") == Some(&phoenix_processors::Value::Int(me)))
        .expect("this process in the scrape");
    let keys: BTreeSet<String> = mine
        .attributes
        .iter()
        .map(|kv| kv.key.to_string())
        .collect();
    let expected: BTreeSet<String> = resources
        .iter()
        .filter(|(_, on)| *on)
        .map(|(n, _)| n.clone())
        .collect();
    assert_eq!(keys, expected, "resource attributes on by default");
    // host.name is common to the batch, as `resourcedetection` would add it.
    let common: Vec<String> = batch
        .common_attributes
        .iter()
        .map(|kv| kv.key.to_string())
        .collect();
    assert_eq!(common, ["host.name"]);

    // The opt-in one, turned on by its Collector name, under that name.
    let mut config = hostmetrics(false);
    config
        .resource_attributes
        .insert("process.cgroup".into(), Toggle { enabled: true });
    let batch = scrape(&config);
    let mine = batch
        .resources
        .iter()
        .find(|r| r.attributes.get("process.pid") == Some(&phoenix_processors::Value::Int(me)))
        .expect("this process in the scrape");
    assert!(mine.attributes.get_str("process.cgroup").is_some());
    assert!(mine.attributes.get("process.linux.cgroup").is_none());
}

/// The README's table of both namings says what the receiver's table says.
#[test]
fn readme_mapping_table_matches_the_receiver() {
    let start = README
        .find("<!-- naming table -->")
        .expect("the README marks its naming table");
    let rows: Vec<Vec<String>> = README[start..]
        .lines()
        .skip(1)
        .take_while(|l| l.starts_with('|'))
        .skip(2)
        .map(|l| {
            l.trim_matches('|')
                .split('|')
                .map(|c| c.trim().trim_matches('`').to_string())
                .collect()
        })
        .collect();
    assert_eq!(rows.len(), METRICS.len(), "one row per metric: {rows:?}");
    for spec in METRICS {
        let (host_name, host_unit, host_attr) = spec.named(Naming::Hostmetrics);
        let row = rows
            .iter()
            .find(|r| r[0] == spec.name)
            .unwrap_or_else(|| panic!("{} has no row", spec.name));
        assert_eq!(row[1], spec.unit, "{} semconv unit", spec.name);
        let attr = spec.attribute.map_or("", |a| a.key);
        assert_eq!(row[2], attr, "{} semconv point attribute", spec.name);
        if spec.hostmetrics.is_some() {
            assert_eq!(row[3], host_name, "{} Collector name", spec.name);
            assert_eq!(row[4], host_unit, "{} Collector unit", spec.name);
            assert_eq!(row[5], host_attr.map_or("", |a| a.key), "{}", spec.name);
        } else {
            assert_eq!(row[3], "—", "{} has no Collector name", spec.name);
        }
    }
}
