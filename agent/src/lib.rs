//! The Phoenix agent: scrapes `/proc`, runs pipelines, exports.
//!
//! The binary (`main.rs`) is a thin CLI over this library so that benches and
//! tests drive the same code.

pub mod config;
pub mod controller;
pub mod exporter;
pub mod pipeline;
pub mod receiver;
pub mod telemetry;
