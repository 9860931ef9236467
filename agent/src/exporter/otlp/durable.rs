//! The sending task of an exporter with a disk queue
//! (`sending_queue.storage`).
//!
//! `submit` still only pushes into the memory queue, so the pipeline loop
//! never waits on the disk. The task runs two loops side by side: one
//! moves batches from the memory queue onto the disk (encoding them once,
//! one fsynced file each, on a blocking thread), the other sends the
//! oldest batch on disk and deletes it once the backend took it (or gave
//! it up for good). During an outage the memory queue stays nearly empty
//! and the disk holds up to `max_megabytes`; at shutdown what was not sent
//! stays on disk for the next start, which replays it before new batches.

use std::io;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use phoenix_config::exporter::otlp::StorageConfig;
use phoenix_telemetry::registry::{Counter, Gauge};

use super::disk::{DiskLog, Lost, Opened};
use super::sender::{LOG_EVERY, LogLimiter, Outcome, Shared, Transport, Worker, until_deadline};
use crate::exporter::BuildContext;
use crate::exporter::ExporterMetrics;
use crate::exporter::file::safe_fs::{self, Dir};

/// How often the task looks again for a directory another holder locks,
/// or after the disk failed a read.
const RETRY_DISK: Duration = Duration::from_millis(500);

pub(crate) struct DiskQueue {
    /// The exporter's id, for logs.
    exporter: String,
    max_bytes: u64,
    /// `None` until the task has locked and read the directory, and again
    /// once it is done with it (releasing the lock for a successor).
    log: Mutex<Option<DiskLog>>,
    /// A batch reached the disk, or the memory side ended.
    ready: tokio::sync::Notify,
    input_done: AtomicBool,
    metrics: ExporterMetrics,
    dropped_disk_full: Arc<Counter>,
    dropped_corrupt: Arc<Counter>,
    batches: Arc<Gauge>,
    bytes: Arc<Gauge>,
    warn_lost: LogLimiter,
    /// A failing disk would otherwise log at every retry.
    warn_io: LogLimiter,
}

impl DiskQueue {
    /// Open `storage.directory` safely (created 0700, no links, no kernel
    /// file systems) for the task to lock and read later.
    pub(crate) fn open_dir(
        storage: &StorageConfig,
        ctx: &BuildContext,
        metrics: &ExporterMetrics,
    ) -> anyhow::Result<(Arc<DiskQueue>, Dir)> {
        let dir = safe_fs::open_dir(&storage.directory)
            .map_err(|e| anyhow::anyhow!("{}: sending_queue.storage.directory: {e}", ctx.id))?;
        let dropped = |reason: &str| {
            ctx.registry.counter(
                "phoenix_exporter_disk_queue_dropped_batches_total",
                "Batches the disk queue lost: disk_full (the oldest, evicted to stay within \
                 max_megabytes) or corrupt (torn or damaged on disk, never replayed).",
                &["exporter", "reason"],
                &[ctx.id.as_str(), reason],
            )
        };
        let gauge =
            |name: &str, help: &str| ctx.registry.gauge(name, help, &["exporter"], &[&ctx.id]);
        let queue = DiskQueue {
            exporter: ctx.id.clone(),
            max_bytes: storage.max_bytes(),
            log: Mutex::new(None),
            ready: tokio::sync::Notify::new(),
            input_done: AtomicBool::new(false),
            metrics: metrics.clone(),
            dropped_disk_full: dropped("disk_full"),
            dropped_corrupt: dropped("corrupt"),
            batches: gauge(
                "phoenix_exporter_disk_queue_batches",
                "Batches waiting in an exporter's disk queue.",
            ),
            bytes: gauge(
                "phoenix_exporter_disk_queue_bytes",
                "Bytes of an exporter's disk queue.",
            ),
            warn_lost: LogLimiter::new(LOG_EVERY),
            warn_io: LogLimiter::new(LOG_EVERY),
        };
        Ok((Arc::new(queue), dir))
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Option<DiskLog>> {
        // Every DiskLog call leaves its index consistent, so a panic in one
        // does not make the log unusable.
        self.log.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Run `f` on the log on a blocking thread (every call may fsync),
    /// then count what it lost, even when it failed half-way.
    async fn with_log<R: Send + 'static>(
        self: &Arc<Self>,
        f: impl FnOnce(&mut DiskLog) -> io::Result<R> + Send + 'static,
    ) -> io::Result<R> {
        let me = self.clone();
        tokio::task::spawn_blocking(move || {
            let mut guard = me.lock();
            let log = guard
                .as_mut()
                .ok_or_else(|| io::Error::other("the disk queue is closed"))?;
            let result = f(log);
            me.update(log);
            result
        })
        .await
        .map_err(io::Error::other)?
    }

    /// Gauges and loss counters after the log changed.
    fn update(&self, log: &mut DiskLog) {
        self.batches.set(log.len() as f64);
        self.bytes.set(log.bytes() as f64);
        self.count_lost(log.take_lost());
    }

    fn count_lost(&self, lost: Lost) {
        if lost.is_empty() {
            return;
        }
        self.dropped_disk_full.add(lost.disk_full);
        self.dropped_corrupt.add(lost.corrupt);
        self.metrics.dropped.add(lost.disk_full + lost.corrupt);
        self.warn_lost.maybe(|suppressed| {
            tracing::warn!(
                exporter = %self.exporter,
                disk_full = lost.disk_full,
                corrupt = lost.corrupt,
                similar_not_logged = suppressed,
                "OTLP disk queue dropped batches (disk_full: the oldest, to stay within \
                 max_megabytes; corrupt: torn or damaged files, skipped and never sent)"
            );
        });
    }

    fn warn_io(&self, what: &str, error: &io::Error) {
        self.warn_io.maybe(|suppressed| {
            tracing::warn!(
                exporter = %self.exporter,
                error = %error,
                similar_not_logged = suppressed,
                "OTLP disk queue: {what}"
            );
        });
    }

    /// Let go of the directory (and its lock); says what stays on disk.
    pub(crate) fn close(&self) {
        if let Some(log) = self.lock().take()
            && log.len() > 0
        {
            {
                tracing::info!(
                    exporter = %self.exporter,
                    batches = log.len(),
                    bytes = log.bytes(),
                    "OTLP disk queue kept unsent batches for the next start"
                );
            }
        }
    }
}

impl Shared {
    /// Move batches from the memory queue onto the disk until the queue is
    /// closed and empty. A batch is `in_flight` until it is on disk.
    async fn persist(&self, disk: &Arc<DiskQueue>) {
        while let Some(batch) = self.queue.pop(&self.in_flight).await {
            let mut request = Vec::new();
            super::encode::encode_request(&batch, &mut request);
            let appended = disk.with_log(move |log| log.append(&request)).await;
            match appended {
                Ok(()) => {
                    self.settle();
                    disk.ready.notify_one();
                }
                Err(e) => self.given_up("cannot write to the disk queue", &e.to_string()),
            }
        }
        disk.input_done.store(true, Ordering::Release);
        disk.ready.notify_one();
    }
}

impl<T: Transport> Worker<T> {
    pub(super) async fn run_durable(mut self, disk: Arc<DiskQueue>, dir: Dir) {
        if !self.open_log(&disk, dir).await {
            // Past the deadline this drops (and counts) what is queued.
            return self.run().await;
        }
        let shared = self.shared.clone();
        tokio::join!(shared.persist(&disk), self.send_from_disk(&disk));
        disk.close();
    }

    /// Lock and read the directory, waiting while a previous exporter on
    /// it shuts down. False when the shutdown deadline came first, or the
    /// disk failed: the exporter then sends from memory only.
    async fn open_log(&self, disk: &Arc<DiskQueue>, mut dir: Dir) -> bool {
        let mut waiting_logged = false;
        loop {
            let max_bytes = disk.max_bytes;
            let opened = tokio::task::spawn_blocking(move || DiskLog::open(dir, max_bytes))
                .await
                .map_err(io::Error::other)
                .and_then(|r| r);
            match opened {
                Ok(Opened::Ready(mut log)) => {
                    disk.update(&mut log);
                    if log.len() > 0 {
                        tracing::info!(
                            exporter = %self.shared.id,
                            batches = log.len(),
                            "OTLP disk queue replays batches from an earlier run first"
                        );
                    }
                    *disk.lock() = Some(log);
                    return true;
                }
                Ok(Opened::Locked(d)) => {
                    if !waiting_logged {
                        waiting_logged = true;
                        tracing::info!(
                            exporter = %self.shared.id,
                            directory = %d.path().display(),
                            "OTLP disk queue directory is locked (a previous exporter \
                             shutting down, or another agent); waiting for it"
                        );
                    }
                    dir = d;
                }
                Err(e) => {
                    tracing::error!(
                        exporter = %self.shared.id,
                        error = %e,
                        "OTLP disk queue cannot be opened; sending from the memory queue only"
                    );
                    return false;
                }
            }
            if !self.before_deadline(tokio::time::sleep(RETRY_DISK)).await {
                return false;
            }
        }
    }

    /// Wait for `fut` unless the shutdown deadline passes first (false).
    async fn before_deadline(&self, fut: impl std::future::Future) -> bool {
        let mut deadline = self.deadline.clone();
        until_deadline(&mut deadline, fut).await.is_some()
    }

    /// Send the oldest batch on disk until the disk is empty and the
    /// memory side is done, or the shutdown deadline passes (what is left
    /// stays on disk).
    async fn send_from_disk(&mut self, disk: &Arc<DiskQueue>) {
        while !self.deadline_passed() {
            let record = match disk.with_log(|log| log.oldest()).await {
                Ok(Some(record)) => record,
                Ok(None) if disk.input_done.load(Ordering::Acquire) => return,
                Ok(None) => {
                    if !self.before_deadline(disk.ready.notified()).await {
                        return;
                    }
                    continue;
                }
                Err(e) => {
                    disk.warn_io("read failed; trying again", &e);
                    if !self.before_deadline(tokio::time::sleep(RETRY_DISK)).await {
                        return;
                    }
                    continue;
                }
            };
            match self.send_request(record.payload).await {
                Outcome::Delivered => self.shared.record_delivered(),
                Outcome::GivenUp(why, detail) => self.shared.record_given_up(why, &detail),
                // Still on disk: sent after the next start.
                Outcome::Interrupted(_) => return,
            }
            let seq = record.seq;
            if let Err(e) = disk.with_log(move |log| log.remove(seq)).await {
                disk.warn_io(
                    "could not delete a sent batch; it is sent again after a restart",
                    &e,
                );
            }
        }
    }
}
