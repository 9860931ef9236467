//! Phoenix's metric model and pipeline processors.
//!
//! This crate is pure: no I/O, no async runtime. The agent's receivers produce
//! a [`model::Batch`], processors transform it, exporters encode it.
//!
//! Processors are built from configs through [`registry::ProcessorConfig`]
//! and run through the [`processor::Processor`] trait; each lives in its own
//! module under [`processors`].

pub mod hash;
pub mod model;
pub mod problem;
pub mod processor;
pub mod processors;
pub mod registry;
pub mod semconv;
pub mod time;
mod units;

pub use model::{
    Attributes, Batch, Interner, KeyValue, Metric, MetricDesc, MetricKind, Number, Point, Resource,
    Str, Temporality, Value,
};
pub use problem::Problem;
pub use processor::Processor;
pub use registry::{PROCESSOR_TYPES, ProcessorConfig};
