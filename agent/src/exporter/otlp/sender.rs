//! The exporter both OTLP transports share: a bounded queue filled by
//! `submit` and drained by one sending task that retries with backoff.
//!
//! One task per exporter sends one batch at a time: batches are one per
//! interval, so concurrency would buy nothing but reordering, and a single
//! sender keeps the backend's view of cumulative series in time order.

use std::future::Future;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::sync::watch;
use tokio::task::JoinHandle;

use super::durable::DiskQueue;
use super::queue::{BatchQueue, Pushed};
use super::retry::{Backoff, SendError, XorShift};
use crate::exporter::{
    BoxFuture, BuildContext, ExportBatch, Exporter, ExporterMetrics, ShutdownReport,
};
use phoenix_config::exporter::RetryConfig;
use phoenix_config::exporter::otlp::QueueConfig;
use phoenix_telemetry::registry::Counter;

/// What the server said about an accepted request.
#[derive(Debug, Default, Clone, PartialEq)]
pub(crate) struct Accepted {
    /// OTLP partial success: points the server refused (0 = all taken).
    pub rejected_points: i64,
    /// The server's explanation or warning (may be set with 0 rejected).
    pub message: String,
}

/// One wire protocol: how a batch becomes a request and how it is sent.
pub(crate) trait Transport: Send + Sync + 'static {
    /// The request as it goes on the wire, built once per batch so that
    /// retries do not encode again.
    type Payload: Send + Sync;

    /// The payload for `request`, a protobuf `ExportMetricsServiceRequest`
    /// (fresh, or replayed from the disk queue).
    fn prepare(&self, request: Vec<u8>) -> Result<Self::Payload, String>;

    /// One attempt. Must give up by itself within the configured timeout.
    fn send<'a>(&'a self, payload: &'a Self::Payload)
    -> BoxFuture<'a, Result<Accepted, SendError>>;
}

/// Extra time `shutdown` grants the task beyond the deadline before
/// aborting it. The task honours the deadline itself; this only covers an
/// attempt that does not react to cancellation promptly.
const ABORT_GRACE: Duration = Duration::from_millis(200);

/// Logs a warning the first time and then at most once per interval, with
/// the number of occurrences it did not log, so a permanently failing
/// endpoint does not flood the log at one line per batch.
pub(crate) struct LogLimiter {
    every: Duration,
    last: Mutex<Option<Instant>>,
    suppressed: AtomicU64,
}

impl LogLimiter {
    pub(crate) fn new(every: Duration) -> Self {
        LogLimiter {
            every,
            last: Mutex::new(None),
            suppressed: AtomicU64::new(0),
        }
    }

    /// Calls `log(suppressed_since_last)` when a line is due.
    pub(crate) fn maybe(&self, log: impl FnOnce(u64)) {
        let now = Instant::now();
        let mut last = self.last.lock().unwrap_or_else(|e| e.into_inner());
        match *last {
            Some(t) if now.duration_since(t) < self.every => {
                self.suppressed.fetch_add(1, Ordering::Relaxed);
            }
            _ => {
                *last = Some(now);
                drop(last);
                log(self.suppressed.swap(0, Ordering::Relaxed));
            }
        }
    }
}

pub(super) const LOG_EVERY: Duration = Duration::from_secs(60);

/// State shared by the exporter handle and its sending task.
pub(super) struct Shared {
    pub(super) id: String,
    kind: &'static str,
    pub(super) queue: BatchQueue,
    /// `sending_queue.storage`: the memory queue then only hands batches
    /// over to it.
    pub(super) disk: Option<Arc<DiskQueue>>,
    metrics: ExporterMetrics,
    rejected_points: Arc<Counter>,
    retry: RetryConfig,
    /// `Some(deadline)` once shutdown started: drain until then.
    drain_until: watch::Sender<Option<Instant>>,
    /// A batch popped but not yet delivered or dropped (or, with a disk
    /// queue, not yet on disk). Whoever clears it (the task on an outcome,
    /// or shutdown after aborting the task) counts it, so it is counted
    /// exactly once.
    pub(super) in_flight: AtomicBool,
    /// Outcomes since shutdown began, for its report.
    flushed_at_shutdown: AtomicU64,
    dropped_at_shutdown: AtomicU64,
    warn_overflow: LogLimiter,
    warn_failure: LogLimiter,
    warn_partial: LogLimiter,
    warn_closed: LogLimiter,
}

impl Shared {
    pub(super) fn draining(&self) -> bool {
        self.drain_until.borrow().is_some()
    }

    pub(super) fn count_dropped(&self, n: u64) {
        if n == 0 {
            return;
        }
        self.metrics.dropped.add(n);
        if self.draining() {
            self.dropped_at_shutdown.fetch_add(n, Ordering::Relaxed);
        }
    }

    /// Settles the in-flight batch once: true when this call did.
    pub(super) fn settle(&self) -> bool {
        self.in_flight.swap(false, Ordering::AcqRel)
    }

    fn delivered(&self) {
        if self.settle() {
            self.record_delivered();
        }
    }

    /// Counts a delivery; the in-memory path settles first.
    pub(super) fn record_delivered(&self) {
        self.metrics.sent.inc();
        if self.draining() {
            self.flushed_at_shutdown.fetch_add(1, Ordering::Relaxed);
        }
    }

    pub(super) fn given_up(&self, why: &str, detail: &str) {
        if self.settle() {
            self.record_given_up(why, detail);
        }
    }

    /// Counts and logs a batch given up; the in-memory path settles first.
    pub(super) fn record_given_up(&self, why: &str, detail: &str) {
        self.count_dropped(1);
        self.warn_failure.maybe(|suppressed| {
            tracing::warn!(
                exporter = %self.id,
                transport = self.kind,
                reason = why,
                error = detail,
                similar_not_logged = suppressed,
                "OTLP export failed; batch dropped"
            );
        });
    }
}

/// An OTLP exporter over transport `T`.
pub(crate) struct QueuedExporter {
    shared: Arc<Shared>,
    task: Mutex<Option<JoinHandle<()>>>,
    shut_down: AtomicBool,
}

/// The runtime to spawn on. Checked before anything else is built, since
/// tonic's lazy channel spawns too and would panic without one.
pub(crate) fn runtime(ctx: &BuildContext) -> anyhow::Result<tokio::runtime::Handle> {
    tokio::runtime::Handle::try_current().map_err(|_| {
        anyhow::anyhow!(
            "{}: exporters must be built inside the tokio runtime",
            ctx.id
        )
    })
}

/// Start the sending task on `runtime` and return the exporter.
pub(crate) fn start<T: Transport>(
    runtime: &tokio::runtime::Handle,
    transport: T,
    ctx: &BuildContext,
    kind: &'static str,
    queue: &QueueConfig,
    retry: RetryConfig,
) -> anyhow::Result<Arc<dyn Exporter>> {
    let metrics = ExporterMetrics::new(ctx);
    // Opened (and created) now, so that a bad directory fails the build;
    // locked and read by the task, which may have to wait for a previous
    // exporter on the same directory to let go (a reload).
    let disk = queue
        .storage
        .as_ref()
        .map(|storage| DiskQueue::open_dir(storage, ctx, &metrics))
        .transpose()?;
    let rejected_points = ctx.registry.counter(
        "phoenix_exporter_rejected_points_total",
        "Data points a backend refused in an OTLP partial success response.",
        &["exporter"],
        &[ctx.id.as_str()],
    );
    let shared = Arc::new(Shared {
        id: ctx.id.clone(),
        kind,
        queue: BatchQueue::new(queue.queue_size, metrics.clone()),
        disk: disk.as_ref().map(|(d, _)| d.clone()),
        metrics,
        rejected_points,
        retry,
        drain_until: watch::Sender::new(None),
        in_flight: AtomicBool::new(false),
        flushed_at_shutdown: AtomicU64::new(0),
        dropped_at_shutdown: AtomicU64::new(0),
        warn_overflow: LogLimiter::new(LOG_EVERY),
        warn_failure: LogLimiter::new(LOG_EVERY),
        warn_partial: LogLimiter::new(LOG_EVERY),
        warn_closed: LogLimiter::new(LOG_EVERY),
    });
    let worker = Worker {
        transport,
        shared: shared.clone(),
        deadline: shared.drain_until.subscribe(),
        rng: XorShift::from_entropy(),
    };
    let task = match disk {
        Some((queue, dir)) => runtime.spawn(worker.run_durable(queue, dir)),
        None => runtime.spawn(worker.run()),
    };
    Ok(Arc::new(QueuedExporter {
        shared,
        task: Mutex::new(Some(task)),
        shut_down: AtomicBool::new(false),
    }))
}

impl Exporter for QueuedExporter {
    fn submit(&self, batch: ExportBatch) {
        let s = &self.shared;
        match s.queue.push(batch) {
            Pushed::Queued => {}
            Pushed::DroppedOldest => s.warn_overflow.maybe(|suppressed| {
                tracing::warn!(
                    exporter = %s.id,
                    queue_size = s.queue.capacity(),
                    similar_not_logged = suppressed,
                    "OTLP export queue full (endpoint slow or down); dropped the oldest batch"
                );
            }),
            Pushed::Closed => {
                s.metrics.dropped.inc();
                s.warn_closed.maybe(|suppressed| {
                    tracing::warn!(
                        exporter = %s.id,
                        similar_not_logged = suppressed,
                        "batch submitted after shutdown; dropped"
                    );
                });
            }
        }
    }

    fn shutdown(&self, deadline: Duration) -> BoxFuture<'_, ShutdownReport> {
        Box::pin(async move {
            if self.shut_down.swap(true, Ordering::AcqRel) {
                // Already shut down (or shutting down): it holds nothing more.
                return ShutdownReport::default();
            }
            let now = Instant::now();
            // `Instant + Duration` panics on overflow; a year is "no deadline".
            let until = now
                .checked_add(deadline)
                .unwrap_or_else(|| now + Duration::from_secs(365 * 24 * 3600));
            let s = &self.shared;
            // Order matters: mark draining before closing so that every
            // outcome from here on lands in the report.
            s.drain_until.send_replace(Some(until));
            s.queue.close();
            let task = self.task.lock().unwrap_or_else(|e| e.into_inner()).take();
            if let Some(mut task) = task {
                let hard_stop = until.checked_add(ABORT_GRACE).unwrap_or(until);
                if tokio::time::timeout_at(hard_stop.into(), &mut task)
                    .await
                    .is_err()
                {
                    task.abort();
                    let _ = task.await;
                }
            }
            // Whatever the task did not get to (aborted, or it panicked).
            s.count_dropped(s.queue.take_all() as u64);
            if s.settle() {
                s.count_dropped(1);
            }
            if let Some(disk) = &s.disk {
                disk.close();
            }
            let report = ShutdownReport {
                flushed: s.flushed_at_shutdown.load(Ordering::Relaxed),
                dropped: s.dropped_at_shutdown.load(Ordering::Relaxed),
            };
            tracing::debug!(exporter = %s.id, ?report, "OTLP exporter shut down");
            report
        })
    }
}

impl Drop for QueuedExporter {
    /// Dropped without `shutdown` (e.g. removed by a reload that gave it no
    /// time): stop the task instead of leaking it, and count what it held.
    fn drop(&mut self) {
        let task = self
            .task
            .get_mut()
            .unwrap_or_else(|e| e.into_inner())
            .take();
        if let Some(task) = task {
            self.shared.queue.close();
            task.abort();
            // The task may still be mid-poll on another thread. Emptying the
            // queue first and then settling (see `BatchQueue::pop`) counts
            // each batch once, whichever side gets to it.
            self.shared
                .count_dropped(self.shared.queue.take_all() as u64);
            if self.shared.settle() {
                self.shared.count_dropped(1);
            }
        }
        if let Some(disk) = &self.shared.disk {
            disk.close();
        }
    }
}

pub(super) struct Worker<T> {
    pub(super) transport: T,
    pub(super) shared: Arc<Shared>,
    pub(super) deadline: watch::Receiver<Option<Instant>>,
    rng: XorShift,
}

/// How sending one batch ended.
pub(super) enum Outcome {
    Delivered,
    /// Will not be retried: the reason and the last error.
    GivenUp(&'static str, String),
    /// The shutdown deadline cut the retries short.
    Interrupted(String),
}

const DEADLINE_REACHED: &str = "shutdown deadline reached";

impl<T: Transport> Worker<T> {
    pub(super) async fn run(mut self) {
        while let Some(batch) = self.shared.queue.pop(&self.shared.in_flight).await {
            if self.deadline_passed() {
                self.shared.given_up(DEADLINE_REACHED, "batch still queued");
                continue;
            }
            let mut request = Vec::new();
            super::encode::encode_request(&batch, &mut request);
            match self.send_request(request).await {
                Outcome::Delivered => self.shared.delivered(),
                Outcome::GivenUp(why, detail) => self.shared.given_up(why, &detail),
                Outcome::Interrupted(detail) => self.shared.given_up(DEADLINE_REACHED, &detail),
            }
        }
    }

    pub(super) fn deadline_passed(&self) -> bool {
        self.deadline.borrow().is_some_and(|d| Instant::now() >= d)
    }

    /// Send one encoded request, retrying as configured.
    pub(super) async fn send_request(&mut self, request: Vec<u8>) -> Outcome {
        match self.transport.prepare(request) {
            Ok(payload) => self.deliver(&payload).await,
            Err(e) => Outcome::GivenUp("cannot encode the batch", e),
        }
    }

    async fn deliver(&mut self, payload: &T::Payload) -> Outcome {
        let retry = self.shared.retry.clone();
        let started = Instant::now();
        let mut backoff = Backoff::new(&retry);
        let mut attempt = 0u32;
        loop {
            if attempt > 0 {
                self.shared.metrics.retried.inc();
            }
            attempt += 1;
            let send = self.transport.send(payload);
            let result = match until_deadline(&mut self.deadline, send).await {
                Some(r) => r,
                None => {
                    self.shared.metrics.failed.inc();
                    return Outcome::Interrupted("attempt cut short".into());
                }
            };
            let error = match result {
                Ok(accepted) => {
                    self.partial_success(&accepted);
                    return Outcome::Delivered;
                }
                Err(e) => e,
            };
            self.shared.metrics.failed.inc();
            tracing::debug!(
                exporter = %self.shared.id,
                attempt,
                retryable = error.retryable,
                error = %error.reason,
                "OTLP export attempt failed"
            );
            if !error.retryable {
                return Outcome::GivenUp("permanent error (not retried)", error.reason);
            }
            if !retry.enabled {
                return Outcome::GivenUp("retries disabled", error.reason);
            }
            let backoff_delay = backoff.next_delay(&mut self.rng);
            // The server knows best when it will take data again, within
            // reason: never longer than our own longest wait, so a hostile or
            // broken backend cannot park the exporter while its queue drops.
            let delay = error
                .retry_after
                .map_or(backoff_delay, |d| d.min(retry.max_interval));
            let give_up_after = retry.give_up_after(self.shared.disk.is_some());
            if !give_up_after.is_zero() && started.elapsed().saturating_add(delay) > give_up_after {
                return Outcome::GivenUp(
                    "retries exhausted (retry_on_failure.max_elapsed_time)",
                    error.reason,
                );
            }
            // No point sleeping into a shutdown deadline we cannot retry before.
            let now = Instant::now();
            if self
                .deadline
                .borrow()
                .is_some_and(|d| now.checked_add(delay).is_none_or(|t| t >= d))
            {
                return Outcome::Interrupted(error.reason);
            }
            if until_deadline(&mut self.deadline, tokio::time::sleep(delay))
                .await
                .is_none()
            {
                return Outcome::Interrupted(error.reason);
            }
        }
    }

    fn partial_success(&self, accepted: &Accepted) {
        if accepted.rejected_points <= 0 && accepted.message.is_empty() {
            return;
        }
        let rejected = accepted.rejected_points.max(0) as u64;
        self.shared.rejected_points.add(rejected);
        let s = &self.shared;
        s.warn_partial.maybe(|suppressed| {
            tracing::warn!(
                exporter = %s.id,
                rejected_points = rejected,
                message = %accepted.message,
                similar_not_logged = suppressed,
                "OTLP backend reported a partial success (or a warning)"
            );
        });
    }
}

/// Runs `fut` unless the shutdown deadline passes first (`None`). The
/// deadline may be set while `fut` runs, so it is watched, not read once.
pub(super) async fn until_deadline<F: Future>(
    deadline_rx: &mut watch::Receiver<Option<Instant>>,
    fut: F,
) -> Option<F::Output> {
    let mut fut = std::pin::pin!(fut);
    loop {
        let deadline = *deadline_rx.borrow_and_update();
        let expired = async move {
            match deadline {
                Some(d) => tokio::time::sleep_until(d.into()).await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            out = &mut fut => return Some(out),
            () = expired => return None,
            changed = deadline_rx.changed() => {
                if changed.is_err() {
                    // The exporter is gone; nothing can set a deadline now.
                    return Some(fut.await);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn log_limiter_logs_first_then_counts_suppressed() {
        let l = LogLimiter::new(Duration::from_secs(3600));
        let mut logged = Vec::new();
        for _ in 0..5 {
            l.maybe(|s| logged.push(s));
        }
        assert_eq!(logged, [0], "only the first is logged within the interval");
        assert_eq!(l.suppressed.load(Ordering::Relaxed), 4);
        let l = LogLimiter::new(Duration::ZERO);
        let mut n = 0;
        for _ in 0..3 {
            l.maybe(|_| n += 1);
        }
        assert_eq!(n, 3);
    }
}
