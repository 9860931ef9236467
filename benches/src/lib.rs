//! Shared code of Phoenix's benchmarks.

pub mod batch;
pub mod floor;
pub mod hostile_yaml;
pub mod sim;
pub mod sleepers;
pub mod synthetic;
pub mod templates;
