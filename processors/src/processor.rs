//! The one interface every processor implements.

use crate::model::Batch;

/// A step of a pipeline. The agent builds one per pipeline from its config
/// (see [`crate::registry::ProcessorConfig::build`]) and calls it once per
/// interval, always from one thread at a time.
pub trait Processor: Send {
    /// Transform one interval's batch in place. State (hysteresis, rates) lives in self.
    fn process(&mut self, batch: &mut Batch);
}
