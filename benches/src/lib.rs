//! Shared code of Phoenix's benchmarks.

pub mod floor;
pub mod sim;
pub mod synthetic;
