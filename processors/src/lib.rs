//! Phoenix's metric model and pipeline processors.
//!
//! This crate is pure: no I/O, no async runtime. The agent's receivers produce
//! a [`model::Batch`], processors transform it, exporters encode it.

pub mod model;
pub mod semconv;

pub use model::{
    Attributes, Batch, Interner, KeyValue, Metric, MetricDesc, MetricKind, Number, Point,
    Resource, Str, Temporality, Value,
};
