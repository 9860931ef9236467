//! `sample`: keep a deterministic fraction of low-priority processes.
//!
//! ```yaml
//! sample/low: { fraction: 0.25, priorities: [low] }
//! ```
//!
//! The decision is a stable hash of the process identity, so a process is
//! either always kept or always dropped for its whole life: its series do
//! not come and go. Dropped processes are dropped, not folded into a rollup,
//! so totals are NOT conserved (put `topk`/`aggregate` first if they must
//! be). Protected processes (critical, and the priorities in `protect`) and
//! rollups (`others`, aggregate groups) are never sampled out; `protect`
//! wins over `priorities` where both list a priority.

use serde::Deserialize;

use super::{Protection, check_fraction, into_result, is_rollup, resource_key};
use crate::hash::mix64;
use crate::model::Batch;
use crate::problem::Problem;
use crate::processor::Processor;
use crate::semconv;

use super::priority::Priority;

fn default_priorities() -> Vec<Priority> {
    vec![Priority::Low]
}

fn default_true() -> bool {
    true
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SampleConfig {
    /// Share of the sampled processes to keep, 0..=1.
    pub fraction: f64,
    /// Priorities subject to sampling (default `[low]`; never `critical`).
    #[serde(default = "default_priorities")]
    pub priorities: Vec<Priority>,
    /// Also sample processes without `phoenix.priority` (default true, so
    /// `sample` works without a `priority` processor before it).
    #[serde(default = "default_true")]
    pub unprioritized: bool,
    /// Priorities to leave alone besides `critical`, which is always
    /// protected whether listed or not (see [`Protection`]).
    #[serde(default)]
    pub protect: Vec<Priority>,
}

impl SampleConfig {
    pub fn validate(&self) -> Vec<Problem> {
        let mut problems = Vec::new();
        check_fraction("fraction", self.fraction, &mut problems);
        if self.priorities.contains(&Priority::Critical) {
            problems.push(Problem::sentence(
                "priorities",
                "must not include critical (critical processes are never sampled out)",
            ));
        }
        problems
    }
}

/// The `sample` processor.
#[derive(Debug)]
pub struct Sample {
    protection: Protection,
    /// Keep when the mixed key is below this (fraction of the u64 range).
    threshold: u64,
    keep_all: bool,
    priorities: Vec<Priority>,
    unprioritized: bool,
}

impl Sample {
    pub fn new(config: &SampleConfig) -> Result<Sample, String> {
        let threshold = (config.fraction.clamp(0.0, 1.0) * u64::MAX as f64) as u64;
        into_result(
            Sample {
                protection: Protection::new(&config.protect),
                threshold,
                keep_all: config.fraction >= 1.0,
                priorities: config.priorities.clone(),
                unprioritized: config.unprioritized,
            },
            config.validate(),
        )
    }
}

impl Processor for Sample {
    fn process(&mut self, batch: &mut Batch) {
        if self.keep_all {
            return;
        }
        batch.resources.retain(|resource| {
            if self.protection.covers(resource) || is_rollup(resource) {
                return true;
            }
            let sampled = match resource.attributes.get_str(semconv::PHOENIX_PRIORITY) {
                Some(p) => Priority::parse(p).is_some_and(|p| self.priorities.contains(&p)),
                None => self.unprioritized,
            };
            !sampled || mix64(resource_key(resource)) < self.threshold
        });
    }
}
