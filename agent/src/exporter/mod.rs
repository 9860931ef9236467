//! Exporters: where a pipeline's output leaves the agent.
//!
//! Every exporter is built from its typed config by [`build`] and then only
//! sees [`Exporter::submit`], called once per pipeline per interval from the
//! pipeline loop. `submit` never blocks: network exporters put the batch in
//! a bounded queue drained by their own task (a full queue drops the oldest
//! batch and counts it), local exporters write or store it at once.

pub mod console;
pub mod file;
pub mod otlp;
pub mod prometheus;

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use phoenix_processors::model::Batch;

pub use phoenix_config::exporter::ExporterConfig;

use crate::pipeline::accounting::IntervalReport;
use phoenix_telemetry::registry::{Counter, Gauge, Registry};

/// A pipeline's output for one interval, shared by every exporter it goes to.
pub type ExportBatch = Arc<Batch>;

/// What shutting an exporter down did with what it still held.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct ShutdownReport {
    /// Batches delivered while draining.
    pub flushed: u64,
    /// Batches given up (deadline reached or endpoint failing); also counted
    /// in `phoenix_exporter_dropped_batches_total`.
    pub dropped: u64,
}

pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

pub trait Exporter: Send + Sync {
    /// Hand over one pipeline's output for this interval. Never blocks.
    fn submit(&self, batch: ExportBatch);

    /// Stop accepting batches, deliver what is queued until `deadline`
    /// elapses, and say what was flushed and what was dropped.
    fn shutdown(&self, deadline: Duration) -> BoxFuture<'_, ShutdownReport>;

    /// Called once per interval, after every pipeline of the receiver ran,
    /// with what each pipeline cost and kept. Only exporters that show the
    /// side-by-side comparison (the console) use it.
    fn observe_interval(&self, _report: &IntervalReport) {}
}

/// What building an exporter needs from the agent.
#[derive(Clone)]
pub struct BuildContext {
    /// The component id (`otlp_grpc/primary`), used as the `exporter` label.
    pub id: String,
    pub registry: Registry,
}

/// Build an exporter. Must be called inside the tokio runtime (network
/// exporters spawn their sending task).
pub fn build(config: &ExporterConfig, ctx: &BuildContext) -> anyhow::Result<Arc<dyn Exporter>> {
    Ok(match config {
        ExporterConfig::OtlpGrpc(c) => otlp::grpc::build(c, ctx)?,
        ExporterConfig::OtlpHttp(c) => otlp::http::build(c, ctx)?,
        ExporterConfig::File(c) => file::build(c, ctx)?,
        ExporterConfig::Prometheus(c) => prometheus::build(c, ctx)?,
        ExporterConfig::Console(c) => console::build(c, ctx)?,
    })
}

/// The self-metrics every exporter keeps, labelled with its id.
#[derive(Clone)]
pub struct ExporterMetrics {
    /// Batches delivered.
    pub sent: Arc<Counter>,
    /// Delivery attempts that failed (each retry that fails counts).
    pub failed: Arc<Counter>,
    /// Attempts that were retries.
    pub retried: Arc<Counter>,
    /// Batches given up: queue overflow, non-retryable error, retries exhausted.
    pub dropped: Arc<Counter>,
    /// Batches waiting in the queue.
    pub queue_length: Arc<Gauge>,
    /// Bytes sent on the wire (after compression).
    pub bytes: Arc<Counter>,
}

impl ExporterMetrics {
    pub fn new(ctx: &BuildContext) -> Self {
        let r = &ctx.registry;
        let l = &["exporter"];
        let v = &[ctx.id.as_str()];
        ExporterMetrics {
            sent: r.counter(
                "phoenix_exporter_sent_batches_total",
                "Batches an exporter delivered.",
                l,
                v,
            ),
            failed: r.counter(
                "phoenix_exporter_send_failed_total",
                "Delivery attempts that failed.",
                l,
                v,
            ),
            retried: r.counter(
                "phoenix_exporter_retries_total",
                "Delivery attempts that were retries of a failed one.",
                l,
                v,
            ),
            dropped: r.counter(
                "phoenix_exporter_dropped_batches_total",
                "Batches given up: queue full, permanent error or retries exhausted.",
                l,
                v,
            ),
            queue_length: r.gauge(
                "phoenix_exporter_queue_length",
                "Batches waiting in an exporter's queue.",
                l,
                v,
            ),
            bytes: r.counter(
                "phoenix_exporter_sent_bytes_total",
                "Bytes an exporter put on the wire.",
                l,
                v,
            ),
        }
    }
}
