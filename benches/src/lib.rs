//! Shared code of Phoenix's benchmarks.

pub mod floor;
