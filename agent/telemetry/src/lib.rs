//! Self-telemetry shared by Phoenix's binaries: the metrics registry and its
//! Prometheus text, the process's own CPU and memory, logging set-up and
//! shutdown signals. Small on purpose: the controller, the agent and the
//! simulator link it without linking each other.

pub mod logging;
pub mod process;
pub mod registry;
pub mod signals;
pub mod sys;
