//! `file` exporter: one OTLP/JSON `ExportMetricsServiceRequest` per line.
//!
//! The line format is the OTLP/JSON mapping produced by opentelemetry-proto's
//! serde support (camelCase fields, 64-bit integers as strings, enums as
//! numbers), so a line can be replayed to any OTLP/HTTP JSON endpoint or read
//! by the Collector's `otlpjsonfile` receiver.
//!
//! The pipeline thread only pushes an `Arc` into a bounded queue; encoding
//! and disk I/O happen on a dedicated OS thread, because file writes block
//! and must not stall a tokio worker or the pipeline loop. A full queue drops
//! its oldest batch (the newest data is the most useful), counted in
//! `phoenix_exporter_dropped_batches_total`.
//!
//! The agent runs as root and its config can come from a controller, so the
//! file is opened through [`safe_fs`]: no symbolic link anywhere in the path,
//! no kernel-interface file system, and only files this exporter wrote are
//! appended to, rotated or replaced.

pub(crate) mod safe_fs;

use std::collections::VecDeque;
use std::fs::File;
use std::io::{self, Write as _};
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use anyhow::Context as _;
use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest;
use opentelemetry_proto::tonic::common::v1::{AnyValue, KeyValue as PbKeyValue, any_value};
use opentelemetry_proto::tonic::metrics::v1::{DataPointFlags, metric, number_data_point};
use tokio::sync::oneshot;

use phoenix_config::exporter::{FileConfig, FileTarget};
use phoenix_processors::Problem;

use super::{BoxFuture, BuildContext, ExportBatch, Exporter, ExporterMetrics, ShutdownReport};

/// Batches waiting for the writer thread. At a 10 s interval this is over
/// ten minutes of stalled disk per pipeline before anything is dropped.
pub const QUEUE_CAPACITY: usize = 64;

/// At most one log line per problem kind per this interval: a full disk
/// fails every interval, and the counters already say how often.
const LOG_EVERY: Duration = Duration::from_secs(60);

/// Build the exporter: creates the parent directories, opens the file and
/// checks the rotation backups now, so that a config pointing somewhere
/// unwritable or refused is rejected before it replaces the running one.
pub fn build(c: &FileConfig, ctx: &BuildContext) -> anyhow::Result<Arc<dyn Exporter>> {
    Ok(Arc::new(FileExporter::start(c, ctx)?))
}

pub struct FileExporter {
    queue: Arc<Queue>,
    metrics: ExporterMetrics,
    /// Fires when the writer thread has exited; taken by the first shutdown.
    done: Mutex<Option<oneshot::Receiver<()>>>,
}

impl FileExporter {
    pub fn start(c: &FileConfig, ctx: &BuildContext) -> anyhow::Result<FileExporter> {
        let problems = c.validate();
        if !problems.is_empty() {
            anyhow::bail!("file exporter {}: {}", ctx.id, Problem::join(&problems));
        }
        // A relative path is opened from the working directory, as always;
        // the checks apply to where that lands.
        let cwd = if c.path.is_absolute() {
            PathBuf::new()
        } else {
            std::env::current_dir().with_context(|| {
                format!(
                    "file exporter {}: path {:?} is relative and the working directory is unknown",
                    ctx.id, c.path
                )
            })?
        };
        let target = c
            .target(&cwd)
            .map_err(|p| anyhow::anyhow!("file exporter {}: {p}", ctx.id))?;
        let metrics = ExporterMetrics::new(ctx);
        let rotate_at = c
            .rotation
            .as_ref()
            .map(|r| (r.max_megabytes.saturating_mul(1024 * 1024), r.max_backups));
        let mut writer = FileWriter::new(target, rotate_at);
        writer
            .open()
            .and_then(|()| writer.check_rotation())
            .with_context(|| format!("file exporter {}: cannot open {:?}", ctx.id, c.path))?;

        let queue = Arc::new(Queue::new(QUEUE_CAPACITY));
        let (done_tx, done_rx) = oneshot::channel();
        let thread_queue = queue.clone();
        let thread_metrics = metrics.clone();
        let id = ctx.id.clone();
        std::thread::Builder::new()
            .name("phoenix-file-exp".into())
            .spawn(move || {
                writer_loop(&thread_queue, &mut writer, &thread_metrics, &id);
                let _ = done_tx.send(());
            })
            .with_context(|| format!("file exporter {}: cannot start writer thread", ctx.id))?;

        Ok(FileExporter {
            queue,
            metrics,
            done: Mutex::new(Some(done_rx)),
        })
    }
}

impl Exporter for FileExporter {
    fn submit(&self, batch: ExportBatch) {
        let mut state = self.queue.lock();
        if state.closed {
            self.metrics.dropped.inc();
            return;
        }
        if state.batches.len() >= self.queue.capacity {
            state.batches.pop_front();
            self.metrics.dropped.inc();
            if let Some(suppressed) = state.overflow_log.allow() {
                tracing::warn!(
                    queue_capacity = self.queue.capacity,
                    suppressed,
                    "file exporter queue full (disk too slow?): dropped the oldest batch"
                );
            }
        }
        state.batches.push_back(batch);
        self.metrics.queue_length.set(state.batches.len() as f64);
        drop(state);
        self.queue.ready.notify_one();
    }

    fn shutdown(&self, deadline: Duration) -> BoxFuture<'_, ShutdownReport> {
        Box::pin(async move {
            self.queue.close();
            let done = self.done.lock().unwrap_or_else(|e| e.into_inner()).take();
            let Some(done) = done else {
                // Already shut down: nothing left to report.
                return ShutdownReport::default();
            };
            // `Err` (thread gone without signalling) also means it has exited.
            if tokio::time::timeout(deadline, done).await.is_err() {
                // Deadline reached with batches still queued (disk stalled):
                // give them up. The writer finishes at most the batch in hand.
                let mut state = self.queue.lock();
                let abandoned = state.batches.len() as u64;
                state.batches.clear();
                state.abandon = true;
                drop(state);
                self.queue.ready.notify_all();
                self.metrics.dropped.add(abandoned);
                self.metrics.queue_length.set(0.0);
                self.queue
                    .drain_dropped
                    .fetch_add(abandoned, Ordering::Relaxed);
            }
            ShutdownReport {
                flushed: self.queue.drain_flushed.load(Ordering::Relaxed),
                dropped: self.queue.drain_dropped.load(Ordering::Relaxed),
            }
        })
    }
}

impl Drop for FileExporter {
    /// Dropped without `shutdown` (e.g. a failed reload that built it): let
    /// the writer drain and exit instead of waiting forever.
    fn drop(&mut self) {
        self.queue.close();
    }
}

/// The bounded queue between `submit` and the writer thread.
struct Queue {
    capacity: usize,
    state: Mutex<QueueState>,
    ready: Condvar,
    /// Batches written after shutdown began.
    drain_flushed: AtomicU64,
    /// Batches given up after shutdown began (write errors, deadline).
    drain_dropped: AtomicU64,
}

struct QueueState {
    batches: VecDeque<ExportBatch>,
    /// No more batches are accepted; the writer drains and exits.
    closed: bool,
    /// Shutdown's deadline passed; the writer exits without draining.
    abandon: bool,
    overflow_log: LogLimiter,
}

impl Queue {
    fn new(capacity: usize) -> Self {
        Queue {
            capacity,
            state: Mutex::new(QueueState {
                batches: VecDeque::with_capacity(capacity),
                closed: false,
                abandon: false,
                overflow_log: LogLimiter::new(LOG_EVERY),
            }),
            ready: Condvar::new(),
            drain_flushed: AtomicU64::new(0),
            drain_dropped: AtomicU64::new(0),
        }
    }

    /// A poisoned lock only means another thread panicked mid-update of a
    /// queue of `Arc`s, which leaves it consistent: keep going.
    fn lock(&self) -> MutexGuard<'_, QueueState> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn close(&self) {
        self.lock().closed = true;
        self.ready.notify_all();
    }

    /// The next batch to write and whether shutdown had begun when it was
    /// taken; `None` once the queue is closed and empty, or abandoned.
    fn next(&self, metrics: &ExporterMetrics) -> Option<(ExportBatch, bool)> {
        let mut state = self.lock();
        loop {
            if state.abandon {
                return None;
            }
            if let Some(batch) = state.batches.pop_front() {
                metrics.queue_length.set(state.batches.len() as f64);
                return Some((batch, state.closed));
            }
            if state.closed {
                return None;
            }
            state = self.ready.wait(state).unwrap_or_else(|e| e.into_inner());
        }
    }
}

fn writer_loop(queue: &Queue, writer: &mut FileWriter, metrics: &ExporterMetrics, id: &str) {
    while let Some((batch, draining)) = queue.next(metrics) {
        match writer.write_batch(&batch) {
            Ok(bytes) => {
                metrics.sent.inc();
                metrics.bytes.add(bytes as u64);
                if draining {
                    queue.drain_flushed.fetch_add(1, Ordering::Relaxed);
                }
            }
            Err(e) => {
                // Not retried: the next interval brings fresher data, and a
                // full disk would only grow the backlog.
                metrics.failed.inc();
                metrics.dropped.inc();
                if draining {
                    queue.drain_dropped.fetch_add(1, Ordering::Relaxed);
                }
                if let Some(suppressed) = writer.error_log.allow() {
                    tracing::warn!(
                        exporter = id,
                        path = ?writer.target,
                        error = %e,
                        suppressed,
                        "file exporter could not write a batch; it was dropped"
                    );
                }
            }
        }
    }
    if let Err(e) = writer.finish() {
        tracing::warn!(exporter = id, path = ?writer.target, error = %e,
            "file exporter could not flush its file");
    }
}

/// Owns the file on the writer thread: encoding, appending, rotation.
struct FileWriter {
    target: FileTarget,
    /// (rotate when the file would exceed this many bytes, backups kept).
    rotate_at: Option<(u64, u32)>,
    /// `None` after an error, so the next batch reopens (the directory may
    /// have been recreated or the permission fixed meanwhile).
    file: Option<File>,
    /// Current length of the file, to decide rotation without a stat per write.
    size: u64,
    /// The serialized line, reused across batches.
    line: Vec<u8>,
    error_log: LogLimiter,
    rotate_log: LogLimiter,
}

impl FileWriter {
    fn new(target: FileTarget, rotate_at: Option<(u64, u32)>) -> Self {
        FileWriter {
            target,
            rotate_at,
            file: None,
            size: 0,
            line: Vec::new(),
            error_log: LogLimiter::new(LOG_EVERY),
            rotate_log: LogLimiter::new(LOG_EVERY),
        }
    }

    fn open(&mut self) -> io::Result<()> {
        if self.file.is_none()
            && let FileTarget::File(path) = &self.target
        {
            let (file, size) = safe_fs::open_append(path)?;
            self.file = Some(file);
            self.size = size;
        }
        Ok(())
    }

    /// Every file rotation would move or replace is ours: checked when the
    /// exporter is built, so a config naming a foreign backup is refused
    /// then rather than failing to rotate later.
    fn check_rotation(&self) -> io::Result<()> {
        match (&self.target, self.rotate_at) {
            (FileTarget::File(path), Some((_, backups))) => safe_fs::check_rotation(path, backups),
            _ => Ok(()),
        }
    }

    /// Encode and append one batch as one line; the line's length on success.
    fn write_batch(&mut self, batch: &phoenix_processors::model::Batch) -> io::Result<usize> {
        let mut request = super::otlp::encode::to_request(batch);
        replace_non_finite(&mut request);
        self.line.clear();
        serde_json::to_writer(&mut self.line, &request).map_err(io::Error::other)?;
        self.line.push(b'\n');
        let len = self.line.len() as u64;
        if self.target == FileTarget::Discard {
            return Ok(self.line.len());
        }

        self.open()?;
        if let Some((limit, backups)) = self.rotate_at
            && self.size > 0
            && self.size.saturating_add(len) > limit
        {
            if let Err(e) = self.rotate(backups) {
                // Keep appending to the current file rather than lose data.
                if let Some(suppressed) = self.rotate_log.allow() {
                    tracing::warn!(path = ?self.target, error = %e, suppressed,
                        "file exporter could not rotate; still appending to the current file");
                }
            }
            self.open()?;
        }

        let before = self.size;
        let Some(file) = self.file.as_mut() else {
            return Err(io::Error::other("file not open"));
        };
        if let Err(e) = file.write_all(&self.line) {
            // A partial line (disk full mid-write) would corrupt the next
            // one: cut the file back to where this line began.
            let _ = file.set_len(before);
            self.file = None;
            return Err(e);
        }
        self.size = before + len;
        Ok(self.line.len())
    }

    /// Move `path` to `path.1`, `path.1` to `path.2`, ..., dropping the
    /// oldest, once every one of them is known to be ours; with no backups,
    /// truncate the open file, which was ours when opened (no name is
    /// looked up, so nothing else can be hit).
    fn rotate(&mut self, backups: u32) -> io::Result<()> {
        if backups == 0 {
            if let Some(file) = &self.file {
                file.set_len(0)?;
            }
        } else if let FileTarget::File(path) = &self.target {
            safe_fs::rotate(path, backups)?;
            self.file = None;
        }
        self.size = 0;
        Ok(())
    }

    fn finish(&mut self) -> io::Result<()> {
        match self.file.as_mut() {
            // Writes go straight to the kernel (no user-space buffer); make
            // them durable before the agent exits or reloads.
            Some(f) => f.sync_data(),
            None => Ok(()),
        }
    }
}

/// serde_json writes a NaN or infinite f64 as `null`, which no OTLP/JSON
/// reader (including opentelemetry-proto's own deserializer) accepts back.
/// So a non-finite point value becomes "no recorded value" (the OTLP flag
/// for a missing measurement), and a non-finite double attribute becomes
/// its string spelling. Every line then stays readable.
fn replace_non_finite(request: &mut ExportMetricsServiceRequest) {
    fn fix_attributes(attrs: &mut [PbKeyValue]) {
        for kv in attrs {
            if let Some(AnyValue {
                value: Some(v @ any_value::Value::DoubleValue(_)),
            }) = kv.value.as_mut()
                && let any_value::Value::DoubleValue(d) = *v
                && !d.is_finite()
            {
                *v = any_value::Value::StringValue(
                    if d.is_nan() {
                        "NaN"
                    } else if d > 0.0 {
                        "Infinity"
                    } else {
                        "-Infinity"
                    }
                    .to_string(),
                );
            }
        }
    }
    for rm in &mut request.resource_metrics {
        if let Some(r) = rm.resource.as_mut() {
            fix_attributes(&mut r.attributes);
        }
        for sm in &mut rm.scope_metrics {
            for m in &mut sm.metrics {
                let points = match m.data.as_mut() {
                    Some(metric::Data::Gauge(g)) => &mut g.data_points,
                    Some(metric::Data::Sum(s)) => &mut s.data_points,
                    _ => continue,
                };
                for p in points {
                    fix_attributes(&mut p.attributes);
                    if let Some(number_data_point::Value::AsDouble(d)) = p.value
                        && !d.is_finite()
                    {
                        p.value = None;
                        p.flags |= DataPointFlags::NoRecordedValueMask as u32;
                    }
                }
            }
        }
    }
}

/// Lets one log line through per interval and counts the ones held back.
struct LogLimiter {
    every: Duration,
    last: Option<Instant>,
    suppressed: u64,
}

impl LogLimiter {
    fn new(every: Duration) -> Self {
        LogLimiter {
            every,
            last: None,
            suppressed: 0,
        }
    }

    /// `Some(lines suppressed since the last one)` when a line may be logged.
    fn allow(&mut self) -> Option<u64> {
        let now = Instant::now();
        match self.last {
            Some(last) if now.duration_since(last) < self.every => {
                self.suppressed += 1;
                None
            }
            _ => {
                self.last = Some(now);
                Some(std::mem::take(&mut self.suppressed))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use phoenix_processors::model::{
        Attributes, Batch, KeyValue, Metric, MetricDesc, MetricKind, Number, Point, Resource, Value,
    };
    use phoenix_telemetry::registry::Registry;
    use smallvec::smallvec;
    use std::fs;
    use std::path::Path;

    use phoenix_tests::scratch_dir as temp_dir;

    fn at(path: &Path) -> FileTarget {
        FileTarget::File(path.to_path_buf())
    }

    fn backup_path(path: &Path, n: u32) -> PathBuf {
        path.with_file_name(safe_fs::backup_name(path.file_name().expect("a file"), n))
    }

    fn batch(value: f64) -> Batch {
        let desc = Arc::new(MetricDesc {
            name: "process.cpu.utilization".into(),
            description: "CPU".into(),
            unit: "1".into(),
            kind: MetricKind::Gauge,
        });
        Batch {
            time_unix_nano: 1_700_000_000_000_000_000,
            common_attributes: Attributes::new(vec![KeyValue::new(
                "ratio".into(),
                Value::Double(f64::INFINITY),
            )]),
            resources: vec![Resource {
                identity: None,
                attributes: Attributes::new(vec![KeyValue::new(
                    "process.pid".into(),
                    Value::Int(1),
                )]),
                metrics: vec![Metric {
                    desc,
                    points: smallvec![Point {
                        attributes: Attributes::empty(),
                        start_time_unix_nano: 0,
                        value: Number::Double(value),
                    }],
                }],
            }],
        }
    }

    fn ctx() -> BuildContext {
        BuildContext {
            id: "file/test".into(),
            registry: Registry::new(),
        }
    }

    #[test]
    fn full_queue_drops_the_oldest_batch() {
        let ctx = ctx();
        let exporter = FileExporter {
            queue: Arc::new(Queue::new(2)),
            metrics: ExporterMetrics::new(&ctx),
            done: Mutex::new(None),
        };
        for v in [1.0, 2.0, 3.0] {
            exporter.submit(Arc::new(batch(v)));
        }
        let state = exporter.queue.lock();
        let kept: Vec<_> = state
            .batches
            .iter()
            .map(|b| b.resources[0].metrics[0].total())
            .collect();
        assert_eq!(kept, [2.0, 3.0]);
        assert_eq!(exporter.metrics.dropped.get(), 1);
        assert_eq!(exporter.metrics.queue_length.get(), 2.0);
    }

    #[test]
    fn non_finite_values_keep_the_line_readable() {
        let dir = temp_dir("nan");
        let path = dir.join("m.jsonl");
        let mut w = FileWriter::new(at(&path), None);
        w.write_batch(&batch(f64::NAN)).expect("writes");
        let text = fs::read_to_string(&path).expect("reads");
        let req: ExportMetricsServiceRequest = serde_json::from_str(text.trim()).expect("parses");
        let rm = &req.resource_metrics[0];
        let ratio = &rm.resource.as_ref().expect("resource").attributes[0];
        assert_eq!(
            ratio.value.as_ref().and_then(|v| v.value.clone()),
            Some(any_value::Value::StringValue("Infinity".into()))
        );
        let Some(metric::Data::Gauge(g)) = &rm.scope_metrics[0].metrics[0].data else {
            panic!("expected a gauge");
        };
        assert_eq!(g.data_points[0].value, None);
        assert_eq!(g.data_points[0].flags, 1);
        let _ = fs::remove_dir_all(dir);
    }

    #[test]
    fn rotation_keeps_max_backups_and_whole_lines() {
        let dir = temp_dir("rotate");
        let path = dir.join("m.jsonl");
        let one_line = {
            let mut w = FileWriter::new(at(&dir.join("probe.jsonl")), None);
            w.write_batch(&batch(1.0)).expect("writes") as u64
        };
        // Room for two lines per file, two backups.
        let mut w = FileWriter::new(at(&path), Some((one_line * 2 + 1, 2)));
        for v in 0..7 {
            w.write_batch(&batch(v as f64)).expect("writes");
        }
        w.finish().expect("flushes");
        let lines = |p: &Path| {
            fs::read_to_string(p)
                .expect("reads")
                .lines()
                .map(|l| {
                    let r: ExportMetricsServiceRequest = serde_json::from_str(l).expect("parses");
                    let m = &r.resource_metrics[0].scope_metrics[0].metrics[0];
                    let Some(metric::Data::Gauge(g)) = &m.data else {
                        panic!("gauge")
                    };
                    match g.data_points[0].value {
                        Some(number_data_point::Value::AsDouble(d)) => d,
                        other => panic!("unexpected {other:?}"),
                    }
                })
                .collect::<Vec<_>>()
        };
        assert_eq!(lines(&path), [6.0]);
        assert_eq!(lines(&backup_path(&path, 1)), [4.0, 5.0]);
        assert_eq!(lines(&backup_path(&path, 2)), [2.0, 3.0]);
        assert!(!backup_path(&path, 3).exists(), "only two backups kept");
        let _ = fs::remove_dir_all(dir);
    }

    #[test]
    fn a_foreign_backup_appearing_later_stops_rotation_not_writing() {
        let dir = temp_dir("late-backup");
        let path = dir.join("m.jsonl");
        let mut w = FileWriter::new(at(&path), Some((1, 1)));
        w.write_batch(&batch(1.0)).expect("writes");
        let foreign = b"root:x:0:0::/root:/bin/sh\n";
        fs::write(backup_path(&path, 1), foreign).expect("writes the fixture");
        // Every further batch would rotate (limit 1 byte); none may.
        w.write_batch(&batch(2.0)).expect("still appends");
        w.write_batch(&batch(3.0)).expect("still appends");
        assert_eq!(fs::read(backup_path(&path, 1)).expect("reads"), foreign);
        assert_eq!(fs::read_to_string(&path).expect("reads").lines().count(), 3);
        assert!(!backup_path(&path, 2).exists());
        let _ = fs::remove_dir_all(dir);
    }

    #[test]
    fn no_backups_truncates_our_file_in_place() {
        let dir = temp_dir("truncate");
        let path = dir.join("m.jsonl");
        let mut w = FileWriter::new(at(&path), Some((1, 0)));
        let first = w.write_batch(&batch(1.0)).expect("writes");
        let second = w.write_batch(&batch(22.0)).expect("writes");
        assert_ne!(first, second, "tells the lines apart");
        assert_eq!(fs::read(&path).expect("reads").len(), second);
        assert!(!backup_path(&path, 1).exists());
        let _ = fs::remove_dir_all(dir);
    }

    #[test]
    fn kernel_file_systems_are_refused_when_opening_too() {
        // The lexical check is the config's; this is the one at open time,
        // which also catches procfs or sysfs mounted anywhere else.
        for (path, kind) in [("/proc/self/m.jsonl", "procfs"), ("/sys/m.jsonl", "sysfs")] {
            let e = safe_fs::open_append(Path::new(path)).expect_err(path);
            assert_eq!(e.kind(), io::ErrorKind::PermissionDenied);
            assert!(
                e.to_string()
                    .contains(&format!("is on a {kind} file system")),
                "{e}"
            );
        }
    }

    #[test]
    fn every_line_starts_with_the_prefix_that_marks_a_file_as_ours() {
        let dir = temp_dir("prefix");
        let path = dir.join("m.jsonl");
        let mut w = FileWriter::new(at(&path), None);
        let mut empty = batch(1.0);
        empty.resources.clear();
        empty.common_attributes = Attributes::empty();
        w.write_batch(&empty).expect("writes");
        w.write_batch(&batch(1.0)).expect("writes");
        for line in fs::read_to_string(&path).expect("reads").lines() {
            assert!(line.as_bytes().starts_with(safe_fs::LINE_PREFIX), "{line}");
        }
        let _ = fs::remove_dir_all(dir);
    }

    #[test]
    fn log_limiter_lets_one_line_through_per_interval() {
        let mut l = LogLimiter::new(Duration::from_secs(3600));
        assert_eq!(l.allow(), Some(0));
        assert_eq!(l.allow(), None);
        assert_eq!(l.allow(), None);
        // Pretend the last line was logged long ago.
        l.last = Instant::now().checked_sub(Duration::from_secs(7200));
        assert_eq!(l.allow(), Some(2));
    }
}
