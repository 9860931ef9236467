//! Ranking resources for `topk` and `budget`: by one metric, or by a weighted
//! score of several, with counters turned into per-second rates from one
//! interval to the next.

use std::collections::BTreeMap;

use crate::hash::IdMap;
use crate::model::{Batch, Resource};
use crate::problem::Problem;
use crate::semconv;

/// The metrics a resource can be ranked by.
pub(crate) const RANKABLE: &[&str] = &[
    semconv::PROCESS_CPU_UTILIZATION,
    semconv::PROCESS_CPU_TIME,
    semconv::PROCESS_MEMORY_USAGE,
    semconv::PROCESS_MEMORY_VIRTUAL,
    semconv::PROCESS_DISK_IO,
    semconv::PROCESS_THREAD_COUNT,
    semconv::PROCESS_UNIX_FILE_DESCRIPTOR_COUNT,
    semconv::PROCESS_CONTEXT_SWITCHES,
    semconv::PROCESS_PAGING_FAULTS,
    semconv::PROCESS_UPTIME,
];

/// Ranking by a cumulative counter ranks by its rate: a process that burned
/// a lot of CPU last week but idles now should not hold a top-k slot.
const RATED: &[&str] = &[
    semconv::PROCESS_CPU_TIME,
    semconv::PROCESS_DISK_IO,
    semconv::PROCESS_CONTEXT_SWITCHES,
    semconv::PROCESS_PAGING_FAULTS,
];

#[derive(Debug, Clone, Copy)]
enum Source {
    Value(&'static str),
    Rate(&'static str),
    /// `process.cpu.utilization` when the resource has it, else the rate of
    /// `process.cpu.time` (CPU seconds per second = utilization × CPUs). The
    /// receiver leaves utilization off by default; within one host the two
    /// rank processes identically.
    UtilizationOrCpuRate,
}

#[derive(Debug, Clone, Copy)]
struct Term {
    source: Source,
    weight: f64,
}

/// What to rank by, checked and resolved.
#[derive(Debug, Clone)]
pub(crate) struct RankSpec {
    terms: Vec<Term>,
    /// Score mode: each term is divided by its maximum over the batch so
    /// metrics of different units can be weighted against each other.
    normalise: bool,
}

fn resolve(name: &str) -> Option<Source> {
    let name = *RANKABLE.iter().find(|n| **n == name)?;
    Some(if name == semconv::PROCESS_CPU_UTILIZATION {
        Source::UtilizationOrCpuRate
    } else if RATED.contains(&name) {
        Source::Rate(name)
    } else {
        Source::Value(name)
    })
}

fn unknown_metric(field: &str, name: &str) -> Problem {
    Problem::new(
        field,
        format!(
            "unknown metric {name:?} to rank by (expected one of: {})",
            RANKABLE.join(", ")
        ),
    )
}

impl RankSpec {
    /// `from_config` for builders, whose config was validated already.
    pub(crate) fn checked(
        by: Option<&str>,
        score: Option<&BTreeMap<String, f64>>,
    ) -> Result<RankSpec, String> {
        let mut problems = Vec::new();
        match RankSpec::from_config(by, score, &mut problems) {
            Some(spec) if problems.is_empty() => Ok(spec),
            _ => Err(Problem::join(&problems)),
        }
    }

    /// Resolve `by`/`score` (default: `by: process.cpu.utilization`),
    /// pushing every problem found.
    pub(crate) fn from_config(
        by: Option<&str>,
        score: Option<&BTreeMap<String, f64>>,
        problems: &mut Vec<Problem>,
    ) -> Option<RankSpec> {
        match (by, score) {
            (Some(_), Some(_)) => {
                problems.push(Problem::component("give either `by` or `score`, not both"));
                None
            }
            (_, Some(score)) => {
                let before = problems.len();
                if score.is_empty() {
                    problems.push(Problem::new(
                        "score",
                        "needs at least one metric and its weight",
                    ));
                }
                let mut terms = Vec::with_capacity(score.len());
                for (name, &weight) in score {
                    if !weight.is_finite() || weight < 0.0 {
                        problems.push(Problem::new(
                            "score",
                            format!(
                                "weight of {name} must be a non-negative number (got {weight})"
                            ),
                        ));
                    }
                    match resolve(name) {
                        Some(source) => terms.push(Term { source, weight }),
                        None => problems.push(unknown_metric("score", name)),
                    }
                }
                if !score.is_empty() && score.values().all(|w| *w == 0.0) {
                    problems.push(Problem::new(
                        "score",
                        "every weight is 0, nothing would rank",
                    ));
                }
                (problems.len() == before).then_some(RankSpec {
                    terms,
                    normalise: true,
                })
            }
            (by, None) => {
                let name = by.unwrap_or(semconv::PROCESS_CPU_UTILIZATION);
                match resolve(name) {
                    Some(source) => Some(RankSpec {
                        terms: vec![Term {
                            source,
                            weight: 1.0,
                        }],
                        normalise: false,
                    }),
                    None => {
                        problems.push(unknown_metric("by", name));
                        None
                    }
                }
            }
        }
    }
}

/// A resource in the running for a top-k slot.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Candidate {
    pub idx: usize,
    pub key: u64,
    pub score: f64,
}

/// Highest score first; ties broken by key, then position, so the order is
/// total and the same input always ranks the same way.
pub(crate) fn by_rank(a: &Candidate, b: &Candidate) -> std::cmp::Ordering {
    b.score
        .total_cmp(&a.score)
        .then(a.key.cmp(&b.key))
        .then(a.idx.cmp(&b.idx))
}

/// The previous interval's counter totals of one process.
#[derive(Debug, Clone)]
struct RateEntry {
    generation: u64,
    time: u64,
    /// One slot per term; NaN = not seen yet.
    totals: [f64; RANKABLE.len()],
}

/// Scores candidates; remembers counter totals per process for rates.
#[derive(Debug)]
pub(crate) struct Ranker {
    spec: RankSpec,
    rates: IdMap<RateEntry>,
    generation: u64,
    /// Scratch: term values, candidate-major.
    values: Vec<f64>,
}

const NANOS_PER_SEC: f64 = 1e9;

impl Ranker {
    pub(crate) fn new(spec: RankSpec) -> Ranker {
        Ranker {
            spec,
            rates: IdMap::default(),
            generation: 0,
            values: Vec::new(),
        }
    }

    fn needs_rates(&self) -> bool {
        self.spec
            .terms
            .iter()
            .any(|t| !matches!(t.source, Source::Value(_)))
    }

    /// Fill in `score` of every candidate (whose `idx` points into `batch`).
    pub(crate) fn score(&mut self, batch: &Batch, candidates: &mut [Candidate]) {
        self.generation += 1;
        let now = batch.time_unix_nano;
        let terms = &self.spec.terms;
        let n_terms = terms.len();
        let needs_rates = self.needs_rates();
        self.values.clear();
        for c in candidates.iter() {
            let Some(resource) = batch.resources.get(c.idx) else {
                self.values.extend(std::iter::repeat_n(0.0, n_terms));
                continue;
            };
            let mut entry = if needs_rates {
                Some(self.rates.entry(c.key).or_insert(RateEntry {
                    generation: 0,
                    time: 0,
                    totals: [f64::NAN; RANKABLE.len()],
                }))
            } else {
                None
            };
            for (slot, term) in terms.iter().enumerate() {
                let v = match term.source {
                    Source::Value(name) => resource.metric(name).map_or(0.0, |m| m.total()),
                    Source::Rate(name) => rate(resource, name, entry.as_deref_mut(), slot, now),
                    Source::UtilizationOrCpuRate => {
                        match resource.metric(semconv::PROCESS_CPU_UTILIZATION) {
                            Some(m) => m.total(),
                            None => rate(
                                resource,
                                semconv::PROCESS_CPU_TIME,
                                entry.as_deref_mut(),
                                slot,
                                now,
                            ),
                        }
                    }
                };
                // NaN, infinities and negative values (a counter reset, a
                // bogus reading) must not win or poison a ranking.
                self.values
                    .push(if v.is_finite() && v > 0.0 { v } else { 0.0 });
            }
            if let Some(e) = entry {
                e.generation = self.generation;
                e.time = now;
            }
        }

        if self.spec.normalise {
            let mut maxima = [0.0f64; RANKABLE.len()];
            for row in self.values.chunks_exact(n_terms.max(1)) {
                for (m, v) in maxima.iter_mut().zip(row) {
                    *m = m.max(*v);
                }
            }
            for (c, row) in candidates
                .iter_mut()
                .zip(self.values.chunks_exact(n_terms.max(1)))
            {
                c.score = terms
                    .iter()
                    .zip(row)
                    .zip(&maxima)
                    .map(|((t, v), m)| if *m > 0.0 { t.weight * v / m } else { 0.0 })
                    .sum();
            }
        } else {
            for (c, v) in candidates.iter_mut().zip(&self.values) {
                c.score = *v;
            }
        }

        // Forget processes not seen this interval, now and then rather than
        // every time (a full scan), so the map stays proportional to the
        // live process count.
        if self.rates.len() > 2 * candidates.len() + 64 {
            let generation = self.generation;
            self.rates.retain(|_, e| e.generation == generation);
        }
    }
}

/// Per-second rate of a counter: from the previous interval's total when
/// there is one, otherwise the lifetime average since the point's start time
/// (a process seen for the first time is ranked by what it has done so far,
/// rather than as idle).
fn rate(
    resource: &Resource,
    name: &str,
    entry: Option<&mut RateEntry>,
    slot: usize,
    now: u64,
) -> f64 {
    let Some(metric) = resource.metric(name) else {
        return 0.0;
    };
    let total = metric.total();
    let start = metric
        .points
        .iter()
        .map(|p| p.start_time_unix_nano)
        .filter(|&s| s != 0)
        .min()
        .unwrap_or(0);
    let mut previous = None;
    if let Some(e) = entry
        && let Some(prev_total) = e.totals.get_mut(slot)
    {
        if prev_total.is_finite() && e.time != 0 && now > e.time && total >= *prev_total {
            previous = Some((*prev_total, e.time));
        }
        *prev_total = total;
    }
    match previous {
        Some((prev, then)) => (total - prev) / ((now - then) as f64 / NANOS_PER_SEC),
        None if start != 0 && now > start => total / ((now - start) as f64 / NANOS_PER_SEC),
        None => 0.0,
    }
}
