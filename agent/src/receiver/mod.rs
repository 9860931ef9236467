//! Receivers: where metrics enter the agent. Today: `procfs`.

pub mod procfs;
