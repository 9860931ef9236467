//! The Phoenix agent: scrapes `/proc`, runs pipelines, exports.
//!
//! The binary (`main.rs`) is a thin CLI over this library so that benches and
//! tests drive the same code: [`agent::Agent`] is the whole agent, started
//! and stopped in process. Its config schema and loader are the
//! `phoenix-config` crate; its self-metrics registry is `phoenix-telemetry`.

pub mod agent;
pub mod controller;
pub mod exporter;
pub mod k8s;
pub mod opamp;
pub mod pipeline;
pub mod receiver;
pub mod telemetry;
