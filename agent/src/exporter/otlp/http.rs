//! STUB: being written.
use std::sync::Arc;
use crate::exporter::{BuildContext, Exporter};
pub fn build(_c: &super::OtlpHttpConfig, _ctx: &BuildContext) -> anyhow::Result<Arc<dyn Exporter>> {
    anyhow::bail!("not implemented yet")
}
