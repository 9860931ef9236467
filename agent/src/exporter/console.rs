//! STUB: being written.
use std::sync::Arc;
use serde::Deserialize;
use super::{BuildContext, Exporter};

#[derive(Debug, Clone, PartialEq, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConsoleConfig {}

impl ConsoleConfig {
    pub fn validate(&self) -> Vec<String> {
        Vec::new()
    }
}

pub fn build(_c: &ConsoleConfig, _ctx: &BuildContext) -> anyhow::Result<Arc<dyn Exporter>> {
    anyhow::bail!("not implemented yet")
}
