//! What a candidate loses: the baseline's processes it does not show
//! individually, per executable name, split into those it **dropped**
//! (their CPU and memory are gone from its totals: `filter`, `sample`, ...)
//! and those it **folded** into a rollup (visible only as part of a group:
//! `aggregate`, `topk`'s `others`).
//!
//! A rollup does not say which processes it holds, so the split is made
//! from what the candidate exported:
//! - a process whose executable name a rollup of the candidate carries
//!   (aggregated by name) is folded;
//! - without any rollup, every other missing process was dropped;
//! - with one (`others`, a group by another attribute, or a process that
//!   `track_children` folded differently named children into), the
//!   candidate's deficit against the baseline's totals is what was
//!   dropped: it is given to the missing processes from the busiest down,
//!   as long as it covers them, and the rest were folded.
//!
//! Computed once per candidate and interval, on the pipeline outputs the
//! accounting already holds; nothing on the per-datapoint path.

use std::collections::{BTreeMap, HashSet};

use phoenix_processors::hash::IdSet;
use phoenix_processors::model::{Batch, Resource, Str, Value};
use phoenix_processors::semconv;
use serde::Serialize;

/// Executables reported per candidate and interval, for each kind.
pub const REPORTED: usize = 5;
/// Below this share of both totals a loss is not reported.
const MIN_SHARE: f64 = 0.001;

/// One executable the candidate does not show individually.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ProcessLoss {
    #[serde(serialize_with = "as_str")]
    pub executable: Str,
    /// How many of its processes.
    pub processes: u32,
    /// Their share of the baseline's process CPU and memory totals.
    pub cpu_share: f64,
    pub memory_share: f64,
    /// In a rollup (true) or gone (false).
    pub folded: bool,
}

fn as_str<S: serde::Serializer>(s: &Str, ser: S) -> Result<S::Ok, S::Error> {
    ser.serialize_str(s)
}

/// A resource's CPU (utilization when the batch has it, else CPU time, as
/// the totals count it) and memory.
fn usage(r: &Resource, utilization: bool) -> (f64, f64) {
    let cpu_metric = if utilization {
        semconv::PROCESS_CPU_UTILIZATION
    } else {
        semconv::PROCESS_CPU_TIME
    };
    let cpu = r.metric(cpu_metric).map_or(0.0, |m| m.total());
    let memory = r
        .metric(semconv::PROCESS_MEMORY_USAGE)
        .map_or(0.0, |m| m.total());
    (cpu.max(0.0), memory.max(0.0))
}

/// A resource standing for several processes: no process identity and a
/// process count (the host's own resource has neither attributes nor count).
fn is_rollup(r: &Resource) -> bool {
    r.identity.is_none() && r.metric(semconv::PHOENIX_PROCESS_COUNT).is_some()
}

fn executable(r: &Resource) -> Option<&Str> {
    match r.attributes.get(semconv::PROCESS_EXECUTABLE_NAME) {
        Some(Value::Str(s)) => Some(s),
        _ => None,
    }
}

/// The losses of `candidate` against `baseline` (outputs of one interval),
/// given which processes the candidate shows and both pipelines' totals
/// (`(cpu, memory)`).
pub fn losses(
    baseline: &Batch,
    candidate: &Batch,
    visible: &IdSet,
    base_totals: (f64, f64),
    cand_totals: (f64, f64),
) -> Vec<ProcessLoss> {
    let utilization = baseline
        .resources
        .iter()
        .any(|r| r.metric(semconv::PROCESS_CPU_UTILIZATION).is_some());
    let mut missing: Vec<(f64, f64, &Str)> = baseline
        .resources
        .iter()
        .filter(|r| r.identity.is_some_and(|id| !visible.contains(&id)))
        .filter_map(|r| {
            let (cpu, memory) = usage(r, utilization);
            Some((cpu, memory, executable(r)?))
        })
        .collect();
    if missing.is_empty() {
        return Vec::new();
    }
    let mut folded_names: HashSet<&str> = HashSet::new();
    let mut any_rollup = false;
    for r in candidate.resources.iter().filter(|r| is_rollup(r)) {
        any_rollup = true;
        if let Some(name) = executable(r) {
            folded_names.insert(name);
        }
    }
    let mut cpu_deficit = (base_totals.0 - cand_totals.0).max(0.0);
    let mut memory_deficit = (base_totals.1 - cand_totals.1).max(0.0);
    // The deficit goes to the busiest first; ties by memory, then name, so
    // the split is stable. Without a deficit to share the order does not
    // matter, and thousands of idle processes are not sorted for nothing.
    if any_rollup && (cpu_deficit > 0.0 || memory_deficit > 0.0) {
        missing.sort_unstable_by(|a, b| {
            b.0.total_cmp(&a.0)
                .then(b.1.total_cmp(&a.1))
                .then(a.2.cmp(b.2))
        });
    }
    // (executable, folded) → (processes, cpu, memory)
    let mut by_name: BTreeMap<(&Str, bool), (u32, f64, f64)> = BTreeMap::new();
    for (cpu, memory, name) in missing {
        let folded = if folded_names.contains(&**name) {
            true
        } else if !any_rollup {
            false
        } else {
            // The deficit covers it (half is enough: the totals of two
            // pipelines are not exact to the last digit).
            let dropped = if cpu > 0.0 {
                cpu_deficit >= cpu / 2.0
            } else {
                memory > 0.0 && memory_deficit >= memory / 2.0
            };
            if dropped {
                cpu_deficit = (cpu_deficit - cpu).max(0.0);
                memory_deficit = (memory_deficit - memory).max(0.0);
            }
            !dropped
        };
        let e = by_name.entry((name, folded)).or_default();
        e.0 += 1;
        e.1 += cpu;
        e.2 += memory;
    }
    let share = |v: f64, total: f64| if total > 0.0 { v / total } else { 0.0 };
    let mut all: Vec<ProcessLoss> = by_name
        .into_iter()
        .map(|((name, folded), (processes, cpu, memory))| ProcessLoss {
            executable: name.clone(),
            processes,
            cpu_share: share(cpu, base_totals.0),
            memory_share: share(memory, base_totals.1),
            folded,
        })
        .filter(|l| l.cpu_share >= MIN_SHARE || l.memory_share >= MIN_SHARE)
        .collect();
    let weight = |l: &ProcessLoss| l.cpu_share.max(l.memory_share);
    all.sort_by(|a, b| {
        a.folded
            .cmp(&b.folded)
            .then(weight(b).total_cmp(&weight(a)))
            .then(a.executable.cmp(&b.executable))
    });
    let mut out = Vec::with_capacity(2 * REPORTED);
    for folded in [false, true] {
        out.extend(
            all.iter()
                .filter(|l| l.folded == folded)
                .take(REPORTED)
                .cloned(),
        );
    }
    out
}

#[cfg(test)]
mod tests {
    use super::super::accounting::tests::{batch, process};
    use super::*;

    fn ids(batch: &Batch) -> IdSet {
        batch.resources.iter().filter_map(|r| r.identity).collect()
    }

    /// A rollup as processors make one: no identity, a process count.
    fn rollup(name: Option<&str>, cpu: f64, memory: i64) -> Resource {
        let mut r = process(0, name.unwrap_or("-"), cpu, memory);
        r.identity = None;
        if name.is_none() {
            r.attributes = phoenix_processors::model::Attributes::empty();
        }
        r.metrics.push(phoenix_processors::model::Metric {
            desc: std::sync::Arc::new(phoenix_processors::model::MetricDesc {
                name: semconv::PHOENIX_PROCESS_COUNT.into(),
                description: "".into(),
                unit: "{process}".into(),
                kind: phoenix_processors::model::MetricKind::UP_DOWN_COUNTER,
            }),
            points: smallvec::smallvec![phoenix_processors::model::Point {
                attributes: phoenix_processors::model::Attributes::empty(),
                start_time_unix_nano: 0,
                value: phoenix_processors::model::Number::Int(2),
            }],
        });
        r
    }

    fn found(losses: &[ProcessLoss], name: &str, folded: bool) -> Option<(u32, f64, f64)> {
        losses
            .iter()
            .find(|l| &*l.executable == name && l.folded == folded)
            .map(|l| (l.processes, l.cpu_share, l.memory_share))
    }

    #[test]
    fn a_filter_drops_and_a_rollup_folds() {
        let base = batch(vec![
            process(1, "busy", 0.6, 100),
            process(2, "web", 0.3, 400),
            process(3, "idle", 0.05, 250),
            process(4, "idle", 0.05, 250),
        ]);
        // A filter: the busy one is gone, nothing rolled up.
        let filtered = batch(vec![
            process(2, "web", 0.3, 400),
            process(3, "idle", 0.05, 250),
            process(4, "idle", 0.05, 250),
        ]);
        let l = losses(
            &base,
            &filtered,
            &ids(&filtered),
            (1.0, 1000.0),
            (0.4, 900.0),
        );
        assert_eq!(found(&l, "busy", false), Some((1, 0.6, 0.1)));
        assert_eq!(l.len(), 1);

        // Aggregated by name: folded, whatever the totals say.
        let aggregated = batch(vec![
            process(1, "busy", 0.6, 100),
            process(2, "web", 0.3, 400),
            rollup(Some("idle"), 0.1, 500),
        ]);
        let l = losses(
            &base,
            &aggregated,
            &ids(&aggregated),
            (1.0, 1000.0),
            (1.0, 1000.0),
        );
        assert_eq!(found(&l, "idle", true), Some((2, 0.1, 0.5)));
        assert_eq!(l.len(), 1);

        // topk with `others`, totals conserved: everything missing is folded.
        let topk = batch(vec![process(1, "busy", 0.6, 100), rollup(None, 0.4, 900)]);
        let l = losses(&base, &topk, &ids(&topk), (1.0, 1000.0), (1.0, 1000.0));
        assert!(l.iter().all(|l| l.folded), "{l:?}");
        assert_eq!(found(&l, "web", true).unwrap().0, 1);

        // `others` plus a filter that dropped the busy one: the deficit
        // (0.6) is the busy process, the rest is folded.
        let both = batch(vec![process(2, "web", 0.3, 400), rollup(None, 0.1, 500)]);
        let l = losses(&base, &both, &ids(&both), (1.0, 1000.0), (0.4, 900.0));
        assert_eq!(found(&l, "busy", false), Some((1, 0.6, 0.1)));
        assert_eq!(found(&l, "idle", true), Some((2, 0.1, 0.5)));
        assert_eq!(found(&l, "idle", false), None);

        // track_children: the workers (another name) folded into their
        // parent's rollup, totals conserved: folded, not dropped.
        let children = batch(vec![
            process(1, "busy", 0.6, 100),
            rollup(Some("web"), 0.4, 900),
        ]);
        let l = losses(
            &base,
            &children,
            &ids(&children),
            (1.0, 1000.0),
            (1.0, 1000.0),
        );
        assert_eq!(found(&l, "idle", true), Some((2, 0.1, 0.5)));
        assert!(l.iter().all(|l| l.folded), "{l:?}");

        // The host's resource (no identity, no count) is no rollup.
        let mut with_host = filtered.clone();
        let mut host = process(0, "-", 0.0, 0);
        host.identity = None;
        host.attributes = phoenix_processors::model::Attributes::empty();
        with_host.resources.push(host);
        let l = losses(
            &base,
            &with_host,
            &ids(&with_host),
            (1.0, 1000.0),
            (0.4, 900.0),
        );
        assert_eq!(found(&l, "busy", false), Some((1, 0.6, 0.1)));
    }

    #[test]
    fn small_losses_are_not_reported_and_the_list_is_bounded() {
        let mut resources: Vec<Resource> = (0..20)
            .map(|i| process(i, &format!("p{i:02}"), 0.01 * (i + 1) as f64, 10))
            .collect();
        resources.push(process(100, "speck", 0.000_01, 0));
        let base = batch(resources);
        let empty = batch(Vec::new());
        let l = losses(&base, &empty, &IdSet::default(), (2.1, 210.0), (0.0, 0.0));
        assert_eq!(l.len(), REPORTED);
        assert_eq!(&*l[0].executable, "p19", "the biggest first");
        assert!(found(&l, "speck", false).is_none());
        // Nothing missing, nothing lost.
        assert!(losses(&base, &base, &ids(&base), (2.1, 210.0), (2.1, 210.0)).is_empty());
    }
}
