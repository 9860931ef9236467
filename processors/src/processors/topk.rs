//! `topk`: keep the k highest-ranking unprotected resources individually and
//! fold every other unprotected resource into one `others` resource, so the
//! output's totals equal the input's. Protected resources (critical, and the
//! priorities in `protect`) are kept besides the k and do not count toward it.
//!
//! ```yaml
//! topk/cpu: { k: 10, by: process.cpu.utilization }
//! topk/mixed:
//!   k: 20
//!   score: { process.cpu.utilization: 2, process.memory.usage: 1 }
//!   hysteresis: 0.25
//!   protect: [high]
//! ```
//!
//! Hysteresis: a process already kept stays while its rank is below
//! `k + ceil(k * hysteresis)`; a newcomer enters only at a rank below `k` and
//! only while fewer than k are kept. Two processes trading ranks k and k+1
//! therefore do not swap places every interval (each swap would end one
//! series and start another in the backend).
//!
//! `others` sums every metric per (metric, point attributes), except
//! `process.uptime`, which takes the oldest member's. Its cumulative counters
//! (`process.cpu.time`, ...) are sums over a membership that changes: when a
//! process leaves `others` (it enters the top k, or exits) the sum can drop.
//! Their start time is the earliest member's.

use std::collections::BTreeMap;
use std::sync::Arc;

use serde::Deserialize;

use super::priority::Priority;
use super::rank::{Candidate, RankSpec, Ranker, by_rank};
use super::rollup::{Rollup, process_count_desc};
use super::{Protection, check_fraction, into_result, resource_key};
use crate::hash::{IdSet, mix64};
use crate::model::{Attributes, Batch, KeyValue, MetricDesc, Value};
use crate::problem::Problem;
use crate::processor::Processor;
use crate::semconv;

pub(crate) const DEFAULT_HYSTERESIS: f64 = 0.2;

pub(crate) fn default_hysteresis() -> f64 {
    DEFAULT_HYSTERESIS
}

pub(crate) fn default_true() -> bool {
    true
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TopKConfig {
    /// How many unprotected resources to keep individually (at least 1).
    pub k: usize,
    /// Metric to rank by (default `process.cpu.utilization`, which falls back
    /// to the rate of `process.cpu.time` where utilization is not scraped).
    /// Counters (`process.cpu.time`, `process.disk.io`, ...) rank by rate.
    #[serde(default)]
    pub by: Option<String>,
    /// Weighted score instead of `by`: each metric is divided by its maximum
    /// in the batch, then weighted and summed.
    #[serde(default)]
    pub score: Option<BTreeMap<String, f64>>,
    /// Fraction of k a kept process may fall below rank k before it is
    /// dropped (default 0.2).
    #[serde(default = "default_hysteresis")]
    pub hysteresis: f64,
    /// Fold what is not kept into one `others` resource (default true); when
    /// false it is dropped and totals are no longer conserved.
    #[serde(default = "default_true")]
    pub others: bool,
    /// Priorities to leave alone besides `critical`, which is always
    /// protected whether listed or not (see [`Protection`]).
    #[serde(default)]
    pub protect: Vec<Priority>,
}

impl TopKConfig {
    pub fn validate(&self) -> Vec<Problem> {
        let mut problems = Vec::new();
        if self.k == 0 {
            problems.push(Problem::sentence("k", "must be at least 1 (got 0)"));
        }
        RankSpec::from_config(self.by.as_deref(), self.score.as_ref(), &mut problems);
        check_fraction("hysteresis", self.hysteresis, &mut problems);
        problems
    }
}

/// The selection and folding shared by `topk` (fixed k) and `budget`
/// (k moved by the series budget).
#[derive(Debug)]
pub(crate) struct TopKCore {
    protection: Protection,
    ranker: Ranker,
    hysteresis: f64,
    others: bool,
    /// Keys of the unprotected resources kept last interval.
    members: IdSet,
    others_attributes: Attributes,
    count_desc: Arc<MetricDesc>,
    rollup: Rollup,
    // Scratch, reused every interval.
    candidates: Vec<Candidate>,
    keep: Vec<bool>,
    seen: IdSet,
}

impl TopKCore {
    pub(crate) fn new(
        protection: Protection,
        spec: RankSpec,
        hysteresis: f64,
        others: bool,
    ) -> TopKCore {
        let others_value = Value::Str(semconv::PHOENIX_ROLLUP_OTHERS.into());
        TopKCore {
            protection,
            ranker: Ranker::new(spec),
            hysteresis,
            others,
            members: IdSet::default(),
            others_attributes: Attributes::new(vec![
                KeyValue::new(
                    semconv::PROCESS_EXECUTABLE_NAME.into(),
                    others_value.clone(),
                ),
                KeyValue::new(semconv::PHOENIX_ROLLUP.into(), others_value),
            ]),
            count_desc: process_count_desc(),
            rollup: Rollup::default(),
            candidates: Vec::new(),
            keep: Vec::new(),
            seen: IdSet::default(),
        }
    }

    pub(crate) fn others_enabled(&self) -> bool {
        self.others
    }

    pub(crate) fn protection(&self) -> Protection {
        self.protection
    }

    /// Keep at most `k` unprotected resources (plus every protected one),
    /// fold or drop the rest.
    pub(crate) fn run(&mut self, batch: &mut Batch, k: usize) {
        self.candidates.clear();
        self.keep.clear();
        self.seen.clear();
        for (i, resource) in batch.resources.iter().enumerate() {
            let protected = self.protection.covers(resource);
            self.keep.push(protected);
            if protected {
                continue;
            }
            // Two resources of one batch with the same key (no identity and
            // identical attributes) must still count as two; re-mix until
            // unique, which is deterministic for a given input order.
            let mut key = resource_key(resource);
            while !self.seen.insert(key) {
                key = mix64(key ^ 0x5851_f42d_4c95_7f2d);
            }
            self.candidates.push(Candidate {
                idx: i,
                key,
                score: 0.0,
            });
        }
        self.ranker.score(batch, &mut self.candidates);

        // Only the first k + slack ranks matter: partition, then sort those.
        let slack = (k as f64 * self.hysteresis).ceil() as usize;
        let window = k.saturating_add(slack).min(self.candidates.len());
        if window > 0 && window < self.candidates.len() {
            self.candidates.select_nth_unstable_by(window - 1, by_rank);
        }
        let ranked = &mut self.candidates[..window];
        ranked.sort_unstable_by(by_rank);

        // Incumbents first, in rank order, within the widened window...
        let mut kept = 0;
        for c in ranked.iter() {
            if kept == k {
                break;
            }
            if self.members.contains(&c.key) {
                self.keep[c.idx] = true;
                kept += 1;
            }
        }
        // ...then newcomers, only from the first k ranks, while there is room.
        for c in ranked.iter().take(k) {
            if kept == k {
                break;
            }
            let slot = &mut self.keep[c.idx];
            if !*slot {
                *slot = true;
                kept += 1;
            }
        }
        self.members.clear();
        for c in ranked.iter() {
            if self.keep[c.idx] {
                self.members.insert(c.key);
            }
        }

        let mut i = 0;
        let keep = &self.keep;
        let rollup = &mut self.rollup;
        let others = self.others;
        batch.resources.retain_mut(|resource| {
            let kept = keep.get(i).copied().unwrap_or(true);
            i += 1;
            if !kept && others {
                rollup.add(resource, &|desc| {
                    super::AggregateFunction::default_for(&desc.name)
                });
            }
            kept
        });
        if !self.rollup.is_empty() {
            let others = self
                .rollup
                .finish(self.others_attributes.clone(), &self.count_desc);
            batch.resources.push(others);
        }
    }
}

/// The `topk` processor.
#[derive(Debug)]
pub struct TopK {
    core: TopKCore,
    k: usize,
}

impl TopK {
    pub fn new(config: &TopKConfig) -> Result<TopK, String> {
        let problems = config.validate();
        into_result((), problems)?;
        Ok(TopK {
            core: TopKCore::new(
                Protection::new(&config.protect),
                RankSpec::checked(config.by.as_deref(), config.score.as_ref())?,
                config.hysteresis,
                config.others,
            ),
            k: config.k,
        })
    }
}

impl Processor for TopK {
    fn process(&mut self, batch: &mut Batch) {
        self.core.run(batch, self.k);
    }
}
