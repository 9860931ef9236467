//! The pipeline runtime: one scrape per receiver per interval, fanned out to
//! every pipeline that lists the receiver, each pipeline's output measured
//! and handed to its exporters; and the reload path that swaps a new
//! topology in without losing an interval.
//!
//! A variant never re-reads `/proc`: pipelines only see the shared, read-only
//! snapshot of their receiver's scrape.

pub mod accounting;
mod gauges;
pub mod losses;
mod service;
mod topology;

pub use service::{
    AppliedConfig, DRAIN_DEADLINE, ReloadError, ReloadOutcome, ReloadRequest, ReloadSource, Service,
};
pub use topology::{BuildSummary, Pipeline, Topology};
