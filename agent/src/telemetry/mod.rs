//! The agent's own telemetry: the self-metrics registry, process stats of
//! the agent itself, and the HTTP server for `/metrics`, `/healthz`, `/readyz`.

pub mod process;
pub mod registry;
pub mod server;
