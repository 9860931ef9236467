//! The agent's own telemetry endpoint: the HTTP server for `/metrics`,
//! `/healthz`, `/readyz` and `/-/reload`. The registry it renders and the
//! agent's own CPU and memory are in the `phoenix-telemetry` crate.

pub mod server;
