//! `budget`: an adaptive top-k that holds a pipeline's series (one per data
//! point) under `max_series` per host. Each interval it works out the k that
//! fits the budget after the protected resources (critical, and the
//! priorities in `protect`) and the `others` rollup have taken their share,
//! then ranks and folds exactly as `topk` does.
//!
//! ```yaml
//! budget:
//!   max_series: 2000
//!   by: process.memory.usage
//!   min_hold_intervals: 6
//!   protect: [high]
//! ```
//!
//! k moves slowly on purpose: every change of k ends some series and starts
//! others in the backend. It rises only when the budget allows more than
//! `k_hysteresis` above the current k, and falls whenever the budget no
//! longer fits the current k (the budget is a ceiling, so even a small
//! excess is corrected); either way not sooner than `min_hold_intervals`
//! after the previous change. Between changes the series may exceed the
//! budget briefly, e.g. right after protected processes start.

use std::collections::BTreeMap;

use serde::Deserialize;

use super::priority::Priority;
use super::rank::RankSpec;
use super::rollup::SeriesUnion;
use super::topk::{TopKCore, default_hysteresis, default_true};
use super::{Protection, check_fraction, into_result};
use crate::model::{Batch, Resource};
use crate::problem::Problem;
use crate::processor::Processor;

fn default_k_hysteresis() -> f64 {
    0.1
}

fn default_min_hold_intervals() -> u32 {
    6
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BudgetConfig {
    /// Series (data points) allowed per interval for this pipeline.
    pub max_series: usize,
    /// As in `topk` (default `process.cpu.utilization`).
    #[serde(default)]
    pub by: Option<String>,
    /// As in `topk`.
    #[serde(default)]
    pub score: Option<BTreeMap<String, f64>>,
    /// Membership hysteresis, as in `topk` (default 0.2).
    #[serde(default = "default_hysteresis")]
    pub hysteresis: f64,
    /// Fold what is not kept into `others` (default true).
    #[serde(default = "default_true")]
    pub others: bool,
    /// Relative change of the ideal k needed before k rises (default 0.1).
    #[serde(default = "default_k_hysteresis")]
    pub k_hysteresis: f64,
    /// Intervals to wait after a change of k before the next (default 6).
    #[serde(default = "default_min_hold_intervals")]
    pub min_hold_intervals: u32,
    /// Lower bound of k (default 0: everything unprotected may be folded).
    #[serde(default)]
    pub min_k: usize,
    /// Upper bound of k (default none).
    #[serde(default)]
    pub max_k: Option<usize>,
    /// Priorities to leave alone besides `critical`, which is always
    /// protected whether listed or not (see [`Protection`]).
    #[serde(default)]
    pub protect: Vec<Priority>,
}

impl BudgetConfig {
    pub fn validate(&self) -> Vec<Problem> {
        let mut problems = Vec::new();
        if self.max_series == 0 {
            problems.push(Problem::sentence(
                "max_series",
                "must be at least 1 (got 0)",
            ));
        }
        RankSpec::from_config(self.by.as_deref(), self.score.as_ref(), &mut problems);
        check_fraction("hysteresis", self.hysteresis, &mut problems);
        check_fraction("k_hysteresis", self.k_hysteresis, &mut problems);
        if let Some(max_k) = self.max_k {
            if max_k == 0 {
                problems.push(Problem::sentence("max_k", "must be at least 1 (got 0)"));
            }
            if self.min_k > max_k {
                problems.push(Problem::sentence(
                    "min_k",
                    format!("({}) is greater than max_k ({max_k})", self.min_k),
                ));
            }
        }
        problems
    }
}

/// The `budget` processor.
#[derive(Debug)]
pub struct Budget {
    core: TopKCore,
    max_series: usize,
    k_hysteresis: f64,
    min_hold_intervals: u64,
    min_k: usize,
    max_k: usize,
    /// None until the first interval sets it.
    k: Option<usize>,
    intervals_since_change: u64,
    union: SeriesUnion,
}

fn series(resource: &Resource) -> usize {
    resource.metrics.iter().map(|m| m.points.len()).sum()
}

impl Budget {
    pub fn new(config: &BudgetConfig) -> Result<Budget, String> {
        into_result((), config.validate())?;
        Ok(Budget {
            core: TopKCore::new(
                Protection::new(&config.protect),
                RankSpec::checked(config.by.as_deref(), config.score.as_ref())?,
                config.hysteresis,
                config.others,
            ),
            max_series: config.max_series,
            k_hysteresis: config.k_hysteresis,
            min_hold_intervals: u64::from(config.min_hold_intervals),
            min_k: config.min_k,
            max_k: config.max_k.unwrap_or(usize::MAX),
            k: None,
            intervals_since_change: 0,
            union: SeriesUnion::default(),
        })
    }

    /// The k in force (None before the first interval).
    pub fn current_k(&self) -> Option<usize> {
        self.k
    }

    /// The k that fits the budget for this batch, if it can be told (there
    /// are unprotected resources with points).
    fn ideal_k(&mut self, batch: &Batch) -> Option<usize> {
        let protection = self.core.protection();
        let mut protected_series = 0usize;
        let mut widest = 0usize;
        let mut unprotected = 0usize;
        self.union.clear();
        for resource in &batch.resources {
            if protection.covers(resource) {
                protected_series += series(resource);
            } else {
                unprotected += 1;
                widest = widest.max(series(resource));
                if self.core.others_enabled() {
                    self.union.add(resource);
                }
            }
        }
        if widest == 0 {
            return None;
        }
        // Sizing by the widest resource rather than the average keeps the
        // ceiling even if the top ranks happen to carry the most points.
        let others_series = if self.core.others_enabled() && unprotected > 0 {
            self.union.rollup_series()
        } else {
            0
        };
        let available = self
            .max_series
            .saturating_sub(protected_series.saturating_add(others_series));
        Some((available / widest).clamp(self.min_k, self.max_k))
    }
}

impl Processor for Budget {
    fn process(&mut self, batch: &mut Batch) {
        let ideal = self.ideal_k(batch);
        self.intervals_since_change = self.intervals_since_change.saturating_add(1);
        match (self.k, ideal) {
            (None, Some(ideal)) => {
                self.k = Some(ideal);
                self.intervals_since_change = 0;
            }
            (Some(current), Some(ideal))
                if self.intervals_since_change >= self.min_hold_intervals =>
            {
                let rise_needed = current as f64 * self.k_hysteresis;
                let falls = ideal < current;
                let rises = ideal > current && (ideal - current) as f64 > rise_needed;
                if falls || rises {
                    self.k = Some(ideal);
                    self.intervals_since_change = 0;
                }
            }
            _ => {}
        }
        // Before the first batch with rankable resources there is nothing to
        // fold; min_k keeps the (empty) ranking well defined.
        let k = self.k.unwrap_or(self.min_k);
        self.core.run(batch, k);
    }
}
