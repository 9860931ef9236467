//! Receiver configs, one module per receiver type.

pub mod procfs;

use procfs::ProcfsConfig;

/// The typed config of a receiver, chosen by the type part of its id.
#[derive(Debug, Clone, PartialEq)]
pub enum ReceiverConfig {
    Procfs(ProcfsConfig),
}

impl ReceiverConfig {
    pub fn collection_interval(&self) -> std::time::Duration {
        match self {
            ReceiverConfig::Procfs(c) => c.collection_interval,
        }
    }
}
